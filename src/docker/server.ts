// The plugin's HTTP transport: dockerd POSTs /<Interface>.<Method> on a unix
// socket, with an empty body for argument-less calls and no content type.
// Every handled call answers 200; a failure is the error field in the body
// (Err for the network driver, Error for IPAM), which dockerd prints as
// `remote: <message>`. Unknown paths answer 404, which dockerd understands.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { PLUGIN_CONTENT_TYPE } from './translate.ts';
import type { Timings } from '../agent/metrics.ts';

// Not `import`: an ESM import of node:http loads undici, http2, tls and zlib (see agent/daemon.ts).
const { createServer } = process.getBuiltinModule('node:http');

export type Handler = (body: unknown) => unknown;

export interface Route {
  handle: Handler;
  /** Shapes a thrown error into the interface's error body. */
  error: (err: unknown) => Record<string, string>;
}

/** Largest body accepted: port maps of big ranges stay far below this. */
const MAX_BODY = 4 << 20;

/** With timings, each implemented call's time (arrival to reply) is recorded under its path. */
export function pluginHandler(routes: Map<string, Route>, log: (m: string) => void, timings?: Timings): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const t0 = performance.now();
    const route = routes.get(req.url ?? '');
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on('end', () => {
      if (!route) return reply(res, 404, { Err: `${req.url} is not a call Knit's plugin implements` });
      // Only paths in the route table get a key, so the set of keys stays fixed.
      const done = (status: number, out: unknown) => {
        reply(res, status, out);
        timings?.record(req.url as string, performance.now() - t0);
      };
      let body: unknown = {};
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (size > MAX_BODY) return done(200, route.error(new Error(`request body over ${MAX_BODY} bytes`)));
      if (text !== '') {
        try {
          body = JSON.parse(text) as unknown;
        } catch {
          return done(200, route.error(new Error(`${req.url}: body is not JSON`)));
        }
      }
      Promise.resolve()
        .then(() => route.handle(body))
        .then(
          (out) => done(200, out ?? {}),
          (err: unknown) => {
            const shaped = route.error(err);
            log(`docker ${req.url}: ${Object.values(shaped)[0] ?? ''}`);
            done(200, shaped);
          },
        );
    });
  };
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': PLUGIN_CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Listens on the plugin socket (the directory is root-only, as dockerd's own). */
export async function listenPlugin(handler: ReturnType<typeof pluginHandler>, socketPath: string): Promise<Server> {
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o700 });
  rmSync(socketPath, { force: true }); // a socket left by a killed daemon
  const server = createServer(handler);
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return server;
}
