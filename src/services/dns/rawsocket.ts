// Bound socket fds made with libc, for listening inside another network
// namespace: Node's dgram/net resolve and bind on a later tick, after a setns
// window has closed, so the fd must be created and bound synchronously inside
// the window and only then handed to Node ({fd}).
import koffi from 'koffi';
import { familyOf, parseIP } from '../../lib/ip.ts';
import { KnitError } from '../../lib/errors.ts';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const IPPROTO_IP = 0;
const IPPROTO_IPV6 = 41;
const IP_FREEBIND = 15;
const IPV6_V6ONLY = 26;
const IPV6_FREEBIND = 78;

interface Libc {
  socket: (domain: number, type: number, proto: number) => number;
  setsockopt: (fd: number, level: number, name: number, val: Buffer, len: number) => number;
  bind: (fd: number, addr: Buffer, len: number) => number;
  getsockname: (fd: number, addr: Buffer, len: Buffer) => number;
  close: (fd: number) => number;
  strerror: (errnum: number) => string;
}

let libc: Libc | undefined;

function load(): Libc {
  if (libc !== undefined) return libc;
  const lib = koffi.load('libc.so.6');
  libc = {
    socket: lib.func('int socket(int, int, int)') as Libc['socket'],
    setsockopt: lib.func('int setsockopt(int, int, int, void *, uint32_t)') as Libc['setsockopt'],
    bind: lib.func('int bind(int, void *, uint32_t)') as Libc['bind'],
    getsockname: lib.func('int getsockname(int, void *, void *)') as Libc['getsockname'],
    close: lib.func('int close(int)') as Libc['close'],
    strerror: lib.func('const char *strerror(int)') as Libc['strerror'],
  };
  return libc;
}

function sockaddr(ip: string, port: number): Buffer {
  const { family, addr } = parseIP(ip);
  if (family === 4) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    b.writeUInt32BE(Number(addr), 4);
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  let v = addr;
  for (let i = 23; i >= 8; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

/**
 * A socket bound to ip:port in the calling thread's network namespace.
 * FREEBIND lets it bind an address that is still tentative (IPv6 DAD) or not
 * yet assigned, so the DNS server can start before the gateway address settles.
 */
export function boundSocketFd(kind: 'udp' | 'tcp', ip: string, port: number): number {
  const c = load();
  const family = familyOf(ip) === 6 ? AF_INET6 : AF_INET;
  const fd = c.socket(family, (kind === 'udp' ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
  if (fd < 0) throw sysError(c, `socket() for ${kind} ${ip}:${port}`);
  const one = Buffer.alloc(4);
  one.writeInt32LE(1, 0);
  try {
    if (kind === 'tcp' && c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4) < 0) throw sysError(c, 'SO_REUSEADDR');
    if (family === AF_INET6) {
      if (c.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, one, 4) < 0) throw sysError(c, 'IPV6_V6ONLY');
      if (c.setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, one, 4) < 0) throw sysError(c, 'IPV6_FREEBIND');
    } else if (c.setsockopt(fd, IPPROTO_IP, IP_FREEBIND, one, 4) < 0) {
      throw sysError(c, 'IP_FREEBIND');
    }
    const sa = sockaddr(ip, port);
    if (c.bind(fd, sa, sa.length) < 0) throw sysError(c, `bind ${kind} ${ip}:${port}`);
  } catch (err) {
    c.close(fd);
    throw err;
  }
  return fd;
}

/** The local port an fd is bound to (to learn the port picked for port 0). */
export function boundPort(fd: number): number {
  const c = load();
  const sa = Buffer.alloc(28);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(sa.length, 0);
  if (c.getsockname(fd, sa, len) < 0) throw sysError(c, 'getsockname');
  return sa.readUInt16BE(2);
}

/** Closes an fd that never reached Node (after a failure). */
export function closeFd(fd: number): void {
  load().close(fd);
}

function sysError(c: Libc, what: string): KnitError {
  const errno = koffi.errno();
  const code = errno === 98 ? 'conflict' : errno === 99 ? 'invalid' : 'internal';
  return new KnitError(code, `${what}: ${c.strerror(errno)} (errno ${errno})`);
}
