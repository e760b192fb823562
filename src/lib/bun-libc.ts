// Blocking libc calls for the compiled CNI plugins on Bun (bun:ffi): reading
// stdin, and one request and reply over the daemon's unix socket. A plugin
// does one thing at a time, so a blocking call waits no longer than the work
// it waits for, while Bun's event loop adds its own latency: measured
// against an instantly answering server, the first read of stdin took
// 0.5-0.8 ms through Bun.stdin and 0.03 ms through read(2); a connect,
// request and reply 1.6 ms through Bun.connect and 0.5 ms through the calls
// below. Undefined wherever bun:ffi or glibc is not to be had (Node, musl):
// callers then keep the event-loop way.

interface FfiSymbols {
  socket(domain: number, type: number, protocol: number): number;
  connect(fd: number, addr: unknown, len: number): number;
  read(fd: number, buf: unknown, n: number): number | bigint;
  write(fd: number, buf: unknown, n: number): number | bigint;
  close(fd: number): number;
  __errno_location(): unknown;
}
interface BunFfi {
  dlopen(lib: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: FfiSymbols };
  ptr(view: Uint8Array, byteOffset?: number): unknown;
  read: { i32(p: unknown, offset?: number): number };
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0x80000;
const EINTR = 4;
const SUN_PATH = 108;
const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 111: 'ECONNREFUSED', 104: 'ECONNRESET', 32: 'EPIPE' };

/** A libc call that failed: the errno and its name, as Node's errors carry them. */
export class LibcError extends Error {
  readonly errno: number;
  readonly code: string;

  constructor(what: string, errno: number) {
    const code = ERRNO_NAMES[errno] ?? `errno ${errno}`;
    super(`${what}: ${code}`);
    this.errno = errno;
    this.code = code;
  }
}

export interface BlockingIO {
  /** Everything until end of file. */
  readAll(fd: number): Buffer;
  /** Connects to the unix socket at path, sends request, and reads until `complete` says the reply is whole, or EOF. */
  exchange(path: string, request: Buffer, complete: (chunks: Buffer[]) => boolean): Buffer;
}

let cached: BlockingIO | null | undefined;

export function blockingIO(): BlockingIO | undefined {
  if (cached === undefined) cached = load() ?? null;
  return cached ?? undefined;
}

function load(): BlockingIO | undefined {
  if ((globalThis as { Bun?: unknown }).Bun === undefined) return undefined;
  let ffi: BunFfi;
  let c: FfiSymbols;
  try {
    ffi = require('bun:ffi') as BunFfi;
    c = ffi.dlopen('libc.so.6', {
      socket: { args: ['i32', 'i32', 'i32'], returns: 'i32' },
      connect: { args: ['i32', 'ptr', 'u32'], returns: 'i32' },
      read: { args: ['i32', 'ptr', 'u64'], returns: 'i64' },
      write: { args: ['i32', 'ptr', 'u64'], returns: 'i64' },
      close: { args: ['i32'], returns: 'i32' },
      __errno_location: { args: [], returns: 'ptr' },
    }).symbols;
  } catch {
    return undefined;
  }
  const errno = (): number => ffi.read.i32(c.__errno_location());

  /** read(2) into buf at off, retried on EINTR; 0 at end of file. */
  const readSome = (fd: number, buf: Uint8Array, off: number, what: string): number => {
    for (;;) {
      const n = Number(c.read(fd, ffi.ptr(buf, off), buf.length - off));
      if (n >= 0) return n;
      const e = errno();
      if (e !== EINTR) throw new LibcError(what, e);
    }
  };

  return {
    readAll(fd) {
      const chunks: Buffer[] = [];
      const buf = Buffer.alloc(64 << 10);
      for (let n = readSome(fd, buf, 0, 'read'); n > 0; n = readSome(fd, buf, 0, 'read')) chunks.push(Buffer.from(buf.subarray(0, n)));
      return Buffer.concat(chunks);
    },

    exchange(path, request, complete) {
      const addr = Buffer.alloc(2 + SUN_PATH);
      addr.writeUInt16LE(AF_UNIX, 0);
      if (addr.write(path, 2, 'utf8') >= SUN_PATH) throw new LibcError(`connect ${path} (path too long)`, 36);
      const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw new LibcError('socket', errno());
      try {
        while (c.connect(fd, ffi.ptr(addr), addr.length) !== 0) {
          const e = errno();
          if (e !== EINTR) throw new LibcError(`connect ${path}`, e);
        }
        for (let off = 0; off < request.length; ) {
          const n = Number(c.write(fd, ffi.ptr(request, off), request.length - off));
          if (n >= 0) off += n;
          else if (errno() !== EINTR) throw new LibcError(`write to ${path}`, errno());
        }
        const chunks: Buffer[] = [];
        const buf = Buffer.alloc(64 << 10);
        for (let n = readSome(fd, buf, 0, `read from ${path}`); n > 0; n = readSome(fd, buf, 0, `read from ${path}`)) {
          chunks.push(Buffer.from(buf.subarray(0, n)));
          if (complete(chunks)) break;
        }
        return Buffer.concat(chunks);
      } finally {
        c.close(fd);
      }
    },
  };
}
