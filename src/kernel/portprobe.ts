// Is a local port free? Bind (and for TCP listen) a socket for an instant,
// synchronously, so the answer is about the calling thread's netns, also
// inside a withNetns window (Node's net/dgram bind later, on another tick).
import koffi from 'koffi';
import * as libc from './libc.ts';
import { parseIP } from '../lib/ip.ts';

const so = koffi.load('libc.so.6');
const bindFn = so.func('int bind(int fd, const void *addr, uint32_t len)') as (
  fd: number,
  addr: Buffer,
  len: number,
) => number;
const listenFn = so.func('int listen(int fd, int backlog)') as (fd: number, backlog: number) => number;

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;

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
  b.writeBigUInt64BE(addr >> 64n, 8);
  b.writeBigUInt64BE(addr & 0xffff_ffff_ffff_ffffn, 16);
  return b;
}

function intOpt(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v, 0);
  return b;
}

/**
 * Binds proto/ip:port for an instant. Returns undefined when it could, else
 * the errno name (EADDRINUSE, EADDRNOTAVAIL, EAFNOSUPPORT, ...). TCP sets
 * SO_REUSEADDR as servers do, so TIME_WAIT leftovers do not count as taken;
 * an IPv6 socket is v6-only so that :: and 0.0.0.0 are asked separately.
 */
export function probeBind(proto: 'tcp' | 'udp', ip: string, port: number): string | undefined {
  const buf = sockaddr(ip, port);
  const v6 = buf.length === 28;
  const fd = libc.socket(v6 ? AF_INET6 : AF_INET, (proto === 'tcp' ? SOCK_STREAM : SOCK_DGRAM) | libc.SOCK_CLOEXEC, 0);
  if (fd < 0) return libc.errnoName(libc.errno());
  try {
    if (proto === 'tcp') libc.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, intOpt(1), 4);
    if (v6) libc.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, intOpt(1), 4);
    if (bindFn(fd, buf, buf.length) !== 0) return libc.errnoName(libc.errno());
    if (proto === 'tcp' && listenFn(fd, 1) !== 0) return libc.errnoName(libc.errno());
    return undefined;
  } finally {
    libc.close(fd);
  }
}
