// A stand-in for the daemon in CLI tests: node:http on a temp unix socket
// answering canned JSON per "METHOD /path", and recording every request.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Reply {
  status: number;
  body?: unknown;
  /** Sent as is instead of JSON (for replies that are not ErrorBody). */
  raw?: string;
  /** Stream the JSON in pieces (Transfer-Encoding: chunked) instead of one Content-Length body. */
  chunked?: boolean;
}

export interface Seen {
  method: string;
  path: string;
  body: unknown;
}

export interface FakeApi {
  socket: string;
  seen: Seen[];
  routes: Map<string, Reply>;
  close(): Promise<void>;
}

export async function startFakeApi(routes: Record<string, Reply> = {}): Promise<FakeApi> {
  const dir = mkdtempSync(join(tmpdir(), 'knit-cli-'));
  const socket = join(dir, 'knit.sock');
  const seen: Seen[] = [];
  const table = new Map(Object.entries(routes));
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const key = `${req.method} ${req.url}`;
      seen.push({ method: req.method ?? '', path: req.url ?? '', body: text === '' ? undefined : JSON.parse(text) });
      const reply = table.get(key) ?? {
        status: 404,
        body: { error: { code: 'not-found', message: `fake api: no route ${key}` } },
      };
      if (reply.raw !== undefined) {
        res.writeHead(reply.status, { 'content-type': 'text/plain' });
        res.end(reply.raw);
      } else if (reply.body === undefined) {
        res.writeHead(reply.status);
        res.end();
      } else if (reply.chunked === true) {
        res.writeHead(reply.status, { 'content-type': 'application/json' });
        const text = JSON.stringify(reply.body);
        for (let i = 0; i < text.length; i += 4096) res.write(text.slice(i, i + 4096));
        res.end();
      } else {
        res.writeHead(reply.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply.body));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return {
    socket,
    seen,
    routes: table,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        });
      }),
  };
}

/** Collects what a command writes, in place of process.stdout/stderr. */
export function captureIo(): { io: { stdout: { write(s: string): boolean }; stderr: { write(s: string): boolean } }; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: {
      stdout: { write: (s: string) => ((out += s), true) },
      stderr: { write: (s: string) => ((err += s), true) },
    },
    out: () => out,
    err: () => err,
  };
}
