// A tiny JSON client for the daemon's API over its unix socket: one HTTP/1.1
// request per connection, the reply read until the daemon closes it.
import type { ErrorBody } from '../model/api.ts';

// On Node, node:net through getBuiltinModule, not `import` and not node:http:
// an ESM import of a builtin evaluates every lazy export (node:http pulls in
// undici, tls, http2, zlib: ~75 modules), and the CLI sends one request per
// connection (Connection: close), which needs no more HTTP than below; node:http
// cost ~7 ms of every command's start (38 -> 31 ms, measured interleaved).
// On Bun (the compiled CNI plugins), Bun.connect on the main thread's own event
// loop: loading node:net costs ~9 ms of the plugin's start, and fetch() starts
// Bun's "HTTP Client" thread and hands the reply back across threads
// (~1.5 ms of an ADD, measured interleaved).
interface BunSocket {
  write(data: Uint8Array): number;
  end(): void;
}
interface BunSocketHandlers {
  open(s: BunSocket): void;
  data(s: BunSocket, d: Uint8Array): void;
  drain(s: BunSocket): void;
  close(s: BunSocket): void;
  error(s: BunSocket, err: Error): void;
  connectError(s: BunSocket, err: Error): void;
}
interface BunNet {
  connect(opts: { unix: string; socket: BunSocketHandlers }): Promise<BunSocket>;
}
const bun = (globalThis as { Bun?: BunNet }).Bun;

/** A failure the CLI reports as one line with exit status 1. */
export class ClientError extends Error {
  /** The daemon's error code when it answered, undefined when it could not be reached. */
  readonly code: string | undefined;
  readonly status: number | undefined;
  /** The request field the daemon's error names, if any. */
  readonly field: string | undefined;

  constructor(message: string, code?: string, status?: number, field?: string) {
    super(message);
    this.name = 'ClientError';
    this.code = code;
    this.status = status;
    this.field = field;
  }
}

export class Client {
  readonly socketPath: string;

  constructor(socketPath: string) {
    this.socketPath = socketPath;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('POST', path, body);
  }

  delete(path: string): Promise<void> {
    return this.call<void>('DELETE', path);
  }

  call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body));
    const head =
      `${method} ${path} HTTP/1.1\r\nHost: knit\r\nAccept: application/json\r\nConnection: close\r\n` +
      (body === undefined && method !== 'POST' ? '' : `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n`) +
      '\r\n';
    const request = Buffer.concat([Buffer.from(head, 'latin1'), payload]);
    const exchange = bun !== undefined ? this.exchangeBun(bun, request) : this.exchangeNet(request);
    return exchange.then((raw) => {
      let res: HttpResponse;
      try {
        res = parseResponse(raw);
      } catch (err) {
        throw new ClientError(`the daemon at ${this.socketPath} sent no valid HTTP reply to ${method} ${path}: ${err instanceof Error ? err.message : String(err)}`);
      }
      return this.settle<T>(res.status, res.statusText, res.body.toString('utf8'), method, path);
    });
  }

  /** Sends the request and resolves with the raw reply, read until the daemon closes the connection. */
  private exchangeNet(request: Buffer): Promise<Buffer> {
    const { connect } = process.getBuiltinModule('node:net');
    return new Promise<Buffer>((resolve, reject) => {
      const sock = connect(this.socketPath);
      const chunks: Buffer[] = [];
      let failed = false;
      sock.on('connect', () => sock.write(request));
      sock.on('data', (c: Buffer) => chunks.push(c));
      sock.on('error', (err) => {
        failed = true;
        reject(this.unreachable(err));
      });
      sock.on('close', () => {
        if (!failed) resolve(Buffer.concat(chunks));
      });
    });
  }

  /**
   * The same on Bun's sockets. The reply is whole once its Content-Length is
   * in (the daemon always sends one): the plugin does not wait for the close.
   */
  private exchangeBun(b: BunNet, request: Buffer): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let unsent: Buffer = request;
      let settled = false;
      const finish = (s: BunSocket | undefined, err?: Error) => {
        if (settled) return;
        settled = true;
        s?.end();
        if (err !== undefined) reject(this.unreachable(err));
        else resolve(Buffer.concat(chunks));
      };
      const send = (s: BunSocket) => {
        // A unix socket takes a request whole; a partial write resumes on drain.
        const n = s.write(unsent);
        unsent = unsent.subarray(Math.max(n, 0));
      };
      b.connect({
        unix: this.socketPath,
        socket: {
          open: send,
          drain: (s) => {
            if (unsent.length > 0) send(s);
          },
          data: (s, d) => {
            chunks.push(Buffer.from(d));
            if (replyComplete(chunks)) finish(s);
          },
          close: (s) => finish(s),
          error: (s, err) => finish(s, err),
          connectError: (s, err) => finish(s, err),
        },
      }).catch((err: unknown) => finish(undefined, err instanceof Error ? err : new Error(String(err))));
    });
  }

  /** The reply's JSON for a 2xx, else the daemon's error as a ClientError. */
  private settle<T>(status: number, statusText: string, text: string, method: string, path: string): T {
    if (status < 200 || status >= 300) throw errorFromReply(status, statusText, text, method, path);
    if (text.length === 0) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ClientError(`the daemon sent a reply that is not JSON for ${method} ${path}: ${firstLine(text)}`);
    }
  }

  private unreachable(err: Error): ClientError {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') {
      return new ClientError(
        `cannot reach the Knit daemon at ${this.socketPath}: is it running? start it with \`knit daemon\``,
      );
    }
    if (code === 'EACCES' || code === 'EPERM') {
      return new ClientError(`permission denied on ${this.socketPath}: run knit as root (the socket is mode 0660, owner root)`);
    }
    return new ClientError(`talking to the Knit daemon at ${this.socketPath} failed: ${err.message}`);
  }
}

export interface HttpResponse {
  status: number;
  statusText: string;
  headers: Map<string, string>;
  body: Buffer;
}

// The reply's head is read with string operations, not regular expressions:
// each expression a compiled Bun plugin runs costs ~10-15 page faults (JSC
// compiles it on first use), ~50 a call for the four this needed.

/** A reply's status line and headers (names lowercased); undefined when it is not HTTP/1.x. */
interface ReplyHead {
  status: number;
  statusText: string;
  headers: Map<string, string>;
}

function parseHead(text: string): ReplyHead | undefined {
  const lines = text.split('\r\n');
  const first = lines[0] ?? '';
  if (!(first.startsWith('HTTP/1.1 ') || first.startsWith('HTTP/1.0 ')) || !isDigits(first.slice(9, 12))) return undefined;
  if (first.length > 12 && first[12] !== ' ') return undefined;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { status: Number(first.slice(9, 12)), statusText: first.slice(13), headers };
}

function isDigits(s: string): boolean {
  if (s === '') return false;
  for (const c of s) if (c < '0' || c > '9') return false;
  return true;
}

/**
 * True once the chunks hold a reply's headers and all of its Content-Length
 * (or a status that has no body); false while more may come, and for a reply
 * without a length, which ends with the connection.
 */
export function replyComplete(chunks: readonly Buffer[]): boolean {
  const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const head = parseHead(raw.subarray(0, end).toString('latin1'));
  if (head === undefined) return false;
  if (head.status === 204 || head.status === 304) return true;
  if (head.headers.has('transfer-encoding')) return false;
  const len = head.headers.get('content-length');
  return len !== undefined && isDigits(len) && raw.length - (end + 4) >= Number(len);
}

/** A whole HTTP/1.1 response, read until the server closed the connection. */
export function parseResponse(raw: Buffer): HttpResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(raw.length === 0 ? 'the connection closed without a reply' : 'the reply has no end of headers');
  const text = raw.subarray(0, end).toString('latin1');
  const head = parseHead(text);
  if (head === undefined) throw new Error(`bad status line '${text.split('\r\n')[0]}'`);
  const { headers } = head;
  let body = raw.subarray(end + 4);
  const te = headers.get('transfer-encoding');
  if (te !== undefined && te.toLowerCase().split(',').some((t) => t.trim() === 'chunked')) body = dechunk(body);
  else {
    const len = headers.get('content-length');
    if (len !== undefined) {
      const n = Number(len);
      if (!Number.isInteger(n) || n < 0 || n > body.length) throw new Error(`content-length ${len} but ${body.length} bytes came`);
      body = body.subarray(0, n);
    }
  }
  return { status: head.status, statusText: head.statusText, headers, body };
}

function dechunk(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) throw new Error('a chunk size line is cut off');
    const size = parseInt(data.subarray(at, eol).toString('latin1').split(';')[0] ?? '', 16);
    if (Number.isNaN(size)) throw new Error('a chunk size is not hexadecimal');
    if (size === 0) return Buffer.concat(parts);
    if (eol + 2 + size > data.length) throw new Error('a chunk is cut off');
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

function errorFromReply(status: number, statusText: string, text: string, method: string, path: string): ClientError {
  try {
    const body = JSON.parse(text) as Partial<ErrorBody>;
    const e = body.error;
    if (e !== undefined && typeof e.message === 'string') return new ClientError(oneLine(e.message), e.code, status, e.field);
  } catch {
    // not an ErrorBody: fall through
  }
  const detail = text.trim().length > 0 ? `: ${firstLine(text)}` : '';
  return new ClientError(`the daemon answered ${status} ${statusText} to ${method} ${path}${detail}`, undefined, status);
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, '; ').trim();
}

function firstLine(s: string): string {
  const line = s.trim().split('\n')[0] ?? '';
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/** Path segment for a name typed by the user. */
export function seg(name: string): string {
  return encodeURIComponent(name);
}
