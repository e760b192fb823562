// A tiny JSON client for the daemon's API over its unix socket: one HTTP/1.1
// request per connection, the reply read until the daemon closes it.
import type { ErrorBody } from '../model/api.ts';

// On Node, node:net through getBuiltinModule, not `import` and not node:http:
// an ESM import of a builtin evaluates every lazy export (node:http pulls in
// undici, tls, http2, zlib: ~75 modules), and the CLI sends one request per
// connection (Connection: close), which needs no more HTTP than below; node:http
// cost ~7 ms of every command's start (38 -> 31 ms, measured interleaved).
// On Bun (the compiled CNI plugins), fetch() speaks HTTP over a unix socket
// natively, while loading node:net alone costs ~9 ms of the plugin's start.
const onBun = typeof (globalThis as { Bun?: unknown }).Bun === 'object';

/** A failure the CLI reports as one line with exit status 1. */
export class ClientError extends Error {
  /** The daemon's error code when it answered, undefined when it could not be reached. */
  readonly code: string | undefined;
  readonly status: number | undefined;

  constructor(message: string, code?: string, status?: number) {
    super(message);
    this.name = 'ClientError';
    this.code = code;
    this.status = status;
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
    return onBun ? this.callFetch<T>(method, path, body) : this.callNet<T>(method, path, body);
  }

  private async callFetch<T>(method: string, path: string, body?: unknown): Promise<T> {
    const init = {
      method,
      headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      unix: this.socketPath, // Bun's extension of RequestInit
    };
    let res: Response;
    let text: string;
    try {
      res = await fetch(`http://knit${path}`, init);
      text = await res.text();
    } catch (err) {
      throw this.unreachable(err instanceof Error ? err : new Error(String(err)));
    }
    return this.settle<T>(res.status, res.statusText, text, method, path);
  }

  private callNet<T>(method: string, path: string, body?: unknown): Promise<T> {
    const { connect } = process.getBuiltinModule('node:net');
    const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body));
    const head =
      `${method} ${path} HTTP/1.1\r\nHost: knit\r\nAccept: application/json\r\nConnection: close\r\n` +
      (body === undefined && method !== 'POST' ? '' : `Content-Type: application/json\r\nContent-Length: ${payload.length}\r\n`) +
      '\r\n';
    return new Promise<T>((resolve, reject) => {
      const sock = connect(this.socketPath);
      const chunks: Buffer[] = [];
      let failed = false;
      sock.on('connect', () => sock.write(Buffer.concat([Buffer.from(head, 'latin1'), payload])));
      sock.on('data', (c: Buffer) => chunks.push(c));
      sock.on('error', (err) => {
        failed = true;
        reject(this.unreachable(err));
      });
      sock.on('close', () => {
        if (failed) return;
        let res: HttpResponse;
        try {
          res = parseResponse(Buffer.concat(chunks));
        } catch (err) {
          reject(new ClientError(`the daemon at ${this.socketPath} sent no valid HTTP reply to ${method} ${path}: ${err instanceof Error ? err.message : String(err)}`));
          return;
        }
        try {
          resolve(this.settle<T>(res.status, res.statusText, res.body.toString('utf8'), method, path));
        } catch (err) {
          reject(err);
        }
      });
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

/** A whole HTTP/1.1 response, read until the server closed the connection. */
export function parseResponse(raw: Buffer): HttpResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(raw.length === 0 ? 'the connection closed without a reply' : 'the reply has no end of headers');
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0] ?? '');
  if (m === null) throw new Error(`bad status line '${lines[0]}'`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  let body = raw.subarray(end + 4);
  if (/\bchunked\b/i.test(headers.get('transfer-encoding') ?? '')) body = dechunk(body);
  else {
    const len = headers.get('content-length');
    if (len !== undefined) {
      const n = Number(len);
      if (!Number.isInteger(n) || n < 0 || n > body.length) throw new Error(`content-length ${len} but ${body.length} bytes came`);
      body = body.subarray(0, n);
    }
  }
  return { status: Number(m[1]), statusText: m[2] ?? '', headers, body };
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
    if (e !== undefined && typeof e.message === 'string') return new ClientError(oneLine(e.message), e.code, status);
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
