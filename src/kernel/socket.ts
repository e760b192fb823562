// IP sockets made with libc, synchronously, in the calling thread's network
// namespace. Node's net/dgram resolve and bind on a later tick, after a
// withNetns window has closed; an fd made and bound here is handed to Node
// ({fd}) or, for a probe, closed at once.
import * as libc from './libc.ts';
import { KnitError } from '../lib/errors.ts';
import { parseIP } from '../lib/ip.ts';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_PEERCRED = 17;
const IPPROTO_IP = 0;
const IPPROTO_IPV6 = 41;
const IP_FREEBIND = 15;
const IPV6_V6ONLY = 26;
const IPV6_FREEBIND = 78;

export type SocketKind = 'tcp' | 'udp';

/** struct sockaddr_in / sockaddr_in6 for ip:port. */
export function sockaddr(ip: string, port: number): Buffer {
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
  b.writeBigUInt64BE(addr >> 64n, 8);
  b.writeBigUInt64BE(addr & 0xffff_ffff_ffff_ffffn, 16);
  return b;
}

function setInt(fd: number, level: number, name: number, what: string): void {
  const one = Buffer.alloc(4);
  one.writeInt32LE(1, 0);
  if (libc.setsockopt(fd, level, name, one, 4) < 0) throw libc.sysError(what);
}

/**
 * A socket of `kind` bound to ip:port. TCP sets SO_REUSEADDR as servers do;
 * IPv6 sockets are v6-only so that :: and 0.0.0.0 stay separate. `freebind`
 * allows an address that is still tentative (IPv6 DAD) or not yet assigned.
 * Throws with errno's name in `code` (EADDRINUSE, EADDRNOTAVAIL, ...).
 */
export function bindSocket(kind: SocketKind, ip: string, port: number, opts: { freebind?: boolean } = {}): number {
  const sa = sockaddr(ip, port);
  const v6 = sa.length === 28;
  const fd = libc.socket(v6 ? AF_INET6 : AF_INET, (kind === 'tcp' ? SOCK_STREAM : SOCK_DGRAM) | libc.SOCK_CLOEXEC, 0);
  if (fd < 0) throw libc.sysError(`socket() for ${kind} ${ip}:${port}`);
  try {
    if (kind === 'tcp') setInt(fd, SOL_SOCKET, SO_REUSEADDR, 'SO_REUSEADDR');
    if (v6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 'IPV6_V6ONLY');
    if (opts.freebind) {
      if (v6) setInt(fd, IPPROTO_IPV6, IPV6_FREEBIND, 'IPV6_FREEBIND');
      else setInt(fd, IPPROTO_IP, IP_FREEBIND, 'IP_FREEBIND');
    }
    if (libc.bindAddr(fd, sa, sa.length) < 0) throw libc.sysError(`bind ${kind} ${ip}:${port}`);
  } catch (err) {
    libc.close(fd);
    throw err;
  }
  return fd;
}

/** The local port an fd is bound to (to learn the port picked for port 0). */
export function boundPort(fd: number): number {
  const sa = Buffer.alloc(28);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(sa.length, 0);
  if (libc.getsockname(fd, sa, len) < 0) throw libc.sysError('getsockname');
  return sa.readUInt16BE(2);
}

/**
 * Binds proto/ip:port for an instant (and listens, for TCP). Returns
 * undefined when it could, else the errno name (EADDRINUSE, EADDRNOTAVAIL…).
 */
export function probeBind(kind: SocketKind, ip: string, port: number): string | undefined {
  let fd: number;
  try {
    fd = bindSocket(kind, ip, port);
  } catch (err) {
    return (err as { code?: string }).code ?? 'EINVAL';
  }
  try {
    if (kind === 'tcp' && libc.listen(fd, 1) !== 0) return libc.errnoName(libc.errno());
    return undefined;
  } finally {
    libc.close(fd);
  }
}

/** A KnitError for a failed bind: a taken address is a conflict, a foreign one invalid. */
export function bindError(err: unknown): KnitError {
  const code = (err as { code?: string }).code;
  const kind = code === 'EADDRINUSE' ? 'conflict' : code === 'EADDRNOTAVAIL' ? 'invalid' : 'internal';
  return new KnitError(kind, (err as Error).message, { cause: err });
}

/**
 * The process at the other end of a connected unix socket, as the kernel
 * recorded it at connect (SO_PEERCRED): its pid in this process's pid
 * namespace (undefined when not visible there) and its uid; undefined when
 * fd is not such a socket.
 */
export function peerCred(fd: number): { pid: number | undefined; uid: number } | undefined {
  const cred = Buffer.alloc(12); // struct ucred: pid, uid, gid
  const len = Buffer.alloc(4);
  len.writeUInt32LE(cred.length, 0);
  if (libc.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) < 0) return undefined;
  const pid = cred.readInt32LE(0);
  return { pid: pid > 0 ? pid : undefined, uid: cred.readUInt32LE(4) };
}
