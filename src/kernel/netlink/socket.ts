// A NETLINK_ROUTE socket bound (at creation) to one network namespace.
//
// Synchronous calls run send/recv on the main thread: rtnetlink does its work
// inside sendmsg, so fast operations (~0.05 ms) cost less than any hop to a
// thread. Slow ones (a link delete waits for an RCU grace period, ~16 ms) go
// through the *Async methods, which run the syscalls on the libuv pool on a
// companion socket of the same netns, so sync and async traffic never read
// each other's replies. Async exchanges on one socket are serialised.
import * as libc from '../libc.ts';
import { withNetns, inNetnsWindow } from '../netns.ts';
import {
  AF_NETLINK,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  SOCK_RAW,
  SOL_NETLINK,
} from './constants.ts';
import { attrStr, parseAttrs, splitMessages, type Parsed } from './message.ts';

const NLM_F_CAPPED = 0x100;
const EINTR = 4;
const EAGAIN = 11;
const ENOBUFS = 105;
const MSG_DONTWAIT = 0x40;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const RECV_SIZE = 1 << 20;
/** Messages per datagram: their acks must fit the default receive buffer (~200 KiB of skbs). */
const CHUNK = 128;
/** A reply lost to an overrun must not hang the process: recv gives up after this. */
const RECV_TIMEOUT_S = 60;

/** A request the kernel refused: errno plus the operation and the kernel's extended-ack text. */
export class NetlinkError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly op: string;
  /** Position of the failed message in a batch. */
  readonly index: number;

  constructor(errno: number, op: string, detail?: string, index = 0) {
    const code = libc.errnoName(errno);
    super(`${op}: ${code}${detail === undefined || detail === '' ? '' : ` (${detail})`}`);
    this.name = 'NetlinkError';
    this.errno = errno;
    this.code = code;
    this.op = op;
    this.index = index;
  }
}

/** One outgoing message with a label for errors, e.g. 'add address 10.0.0.2/24 on 7'. */
export interface Request {
  msg: Buffer;
  op: string;
}

// Sync exchanges never overlap (one JS thread), so they share one buffer.
let sharedBuf: Buffer | undefined;

/** Tracks replies to a set of sequence numbers until each has its ack or DONE. */
class Exchange {
  readonly pending = new Map<number, number>(); // seq -> index in the batch
  readonly errors: (NetlinkError | undefined)[];
  readonly data: Parsed[] = [];
  interrupted = false;
  private readonly reqs: Request[];

  constructor(reqs: Request[], firstSeq: number) {
    this.reqs = reqs;
    this.errors = new Array<NetlinkError | undefined>(reqs.length);
    reqs.forEach((r, i) => {
      r.msg.writeUInt32LE(firstSeq + i, 8);
      r.msg.writeUInt32LE(0, 12);
      this.pending.set(firstSeq + i, i);
    });
  }

  get done(): boolean {
    return this.pending.size === 0;
  }

  feed(msgs: Parsed[]): void {
    for (const m of msgs) {
      const i = this.pending.get(m.seq);
      if (i === undefined) continue; // stale reply of an abandoned exchange
      if (m.flags & NLM_F_DUMP_INTR) this.interrupted = true;
      if (m.type === NLMSG_ERROR || m.type === NLMSG_DONE) {
        const err = m.body.length >= 4 ? -m.body.readInt32LE(0) : 0;
        if (err !== 0) this.errors[i] = new NetlinkError(err, this.reqs[i]?.op ?? '?', extAck(m), i);
        this.pending.delete(m.seq);
      } else {
        this.data.push(m);
      }
    }
  }

  firstError(): NetlinkError | undefined {
    return this.errors.find((e) => e !== undefined);
  }
}

/** The kernel's extended-ack text of an NLMSG_ERROR answer, if it sent one. */
export function extAck(m: Parsed): string | undefined {
  if (m.type !== NLMSG_ERROR || !(m.flags & NLM_F_ACK_TLVS)) return undefined;
  const off = m.flags & NLM_F_CAPPED ? 4 + 16 : 4 + m.body.readUInt32LE(4);
  return attrStr(parseAttrs(m.body, off).get(NLMSGERR_ATTR_MSG));
}

export class NetlinkSocket {
  readonly fd: number;
  /** The netns the socket lives in; undefined = the process's own. */
  readonly netnsPath: string | undefined;
  private seq: number;
  private closed = false;
  private companion: NetlinkSocket | undefined;
  private asyncBuf: Buffer | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  /** Opened without a path inside a withNetns window: its netns has no name to reopen. */
  private openedInWindow = false;

  private constructor(fd: number, netnsPath: string | undefined) {
    this.fd = fd;
    this.netnsPath = netnsPath;
    this.seq = Math.floor(Math.random() * 0x3fffffff) + 1;
  }

  /** A socket in the netns at `netnsPath`, or in the current thread's netns. */
  static open(netnsPath?: string): NetlinkSocket {
    const fd = netnsPath === undefined ? openFd() : withNetns(netnsPath, openFd);
    const s = new NetlinkSocket(fd, netnsPath);
    s.openedInWindow = netnsPath === undefined && inNetnsWindow();
    return s;
  }

  /** One request; waits for its ack. */
  request(msg: Buffer, op = 'netlink request'): void {
    this.batch([{ msg, op }]);
  }

  /** Several requests in one datagram, one ack each; throws the first failure (with its index). */
  batch(reqs: Request[]): void {
    if (reqs.length === 0) return;
    const ex = this.exchange(reqs, NLM_F_ACK);
    const err = ex.firstError();
    if (err !== undefined) throw err;
  }

  /**
   * Several requests in one datagram, each acked; returns every request's
   * failure by position (undefined: done), so a caller can accept some
   * (EEXIST on a retried step) without a round trip per request.
   */
  batchSettled(reqs: Request[]): (NetlinkError | undefined)[] {
    if (reqs.length === 0) return [];
    return this.exchange(reqs, NLM_F_ACK).errors;
  }

  /**
   * Several requests in one datagram, one ack each, as batch(); returns the
   * data messages the gets among them were answered with.
   */
  batchQuery(reqs: Request[]): Parsed[] {
    const ex = this.exchange(reqs, NLM_F_ACK);
    const err = ex.firstError();
    if (err !== undefined) throw err;
    return ex.data;
  }

  /** A request answered by data messages (a get with ACK, or a dump). */
  query(msg: Buffer, op: string): Parsed[] {
    const ex = this.exchange([{ msg, op }], NLM_F_ACK);
    const err = ex.firstError();
    if (err !== undefined) throw err;
    return ex.data;
  }

  /** NLM_F_DUMP request; retried once when the kernel reports the dump was interrupted by a change. */
  dump(msg: Buffer, op: string): Parsed[] {
    for (let attempt = 0; ; attempt++) {
      const ex = this.exchange([{ msg, op }], NLM_F_DUMP);
      const err = ex.firstError();
      if (err !== undefined) throw err;
      if (!ex.interrupted || attempt >= 2) return ex.data;
    }
  }

  requestAsync(msg: Buffer, op = 'netlink request'): Promise<void> {
    return this.batchAsync([{ msg, op }]);
  }

  batchAsync(reqs: Request[]): Promise<void> {
    if (reqs.length === 0) return Promise.resolve();
    const run = async (): Promise<void> => {
      const c = this.companionSocket();
      const ex = c.start(reqs, NLM_F_ACK);
      const buf = (c.asyncBuf ??= Buffer.alloc(RECV_SIZE));
      for (let sent = 0; sent < reqs.length; ) {
        const chunk = reqs.slice(sent, sent + CHUNK);
        const all = Buffer.concat(chunk.map((r) => r.msg));
        await c.callAsync(() => new Promise((res, rej) => {
          libc.send.async(c.fd, all, all.length, 0, (e, n) => (e ? rej(e) : res(n)));
        }), 'send');
        sent += chunk.length;
        while (ex.pending.size > reqs.length - sent) {
          const n = await c.callAsync(() => new Promise((res, rej) => {
            libc.recv.async(c.fd, buf, buf.length, 0, (e, r) => (e ? rej(e) : res(r)));
          }), 'recv');
          if (n > 0) ex.feed(splitMessages(buf, n));
        }
      }
      const err = ex.firstError();
      if (err !== undefined) throw err;
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.close(this.fd);
    this.companion?.close();
  }

  private companionSocket(): NetlinkSocket {
    if (this.closed) throw new Error('netlink socket is closed');
    if (this.companion === undefined) {
      if (this.openedInWindow || (this.netnsPath === undefined && inNetnsWindow())) {
        throw new Error('async netlink calls need a socket opened with a netns path (or outside withNetns)');
      }
      this.companion = NetlinkSocket.open(this.netnsPath);
    }
    return this.companion;
  }

  private async callAsync(f: () => Promise<number>, what: string): Promise<number> {
    for (;;) {
      const n = await f();
      if (n >= 0) return n;
      const err = libc.errno();
      if (err === EINTR) continue;
      if (err === ENOBUFS) this.drain(this.asyncBuf ?? Buffer.alloc(RECV_SIZE));
      throw libc.sysError(err === EAGAIN ? `netlink ${what} timed out` : `netlink ${what}`, err);
    }
  }

  private start(reqs: Request[], extraFlags: number): Exchange {
    for (const r of reqs) r.msg.writeUInt16LE(r.msg.readUInt16LE(6) | NLM_F_REQUEST | extraFlags, 6);
    const ex = new Exchange(reqs, this.seq);
    this.seq = (this.seq + reqs.length) & 0x7fffffff || 1;
    return ex;
  }

  private exchange(reqs: Request[], extraFlags: number): Exchange {
    if (this.closed) throw new Error('netlink socket is closed');
    const ex = this.start(reqs, extraFlags);
    const buf = (sharedBuf ??= Buffer.alloc(RECV_SIZE));
    const what = reqs[0]?.op ?? '';
    for (let sent = 0; sent < reqs.length; ) {
      const chunk = reqs.slice(sent, sent + CHUNK);
      const all = chunk.length === 1 ? chunk[0]!.msg : Buffer.concat(chunk.map((r) => r.msg));
      for (;;) {
        if (libc.send(this.fd, all, all.length, 0) >= 0) break;
        if (libc.errno() !== EINTR) throw libc.sysError(`netlink send (${what})`);
      }
      sent += chunk.length;
      // Acks come in order: wait for this chunk's before sending the next.
      while (ex.pending.size > reqs.length - sent) {
        const n = libc.recv(this.fd, buf, buf.length, 0);
        if (n < 0) {
          const err = libc.errno();
          if (err === EINTR) continue;
          if (err === ENOBUFS) this.drain(buf);
          throw libc.sysError(err === EAGAIN ? `netlink recv timed out (${what})` : `netlink recv (${what})`, err);
        }
        ex.feed(splitMessages(buf, n));
      }
    }
    return ex;
  }

  /** After an overrun, drops what is queued so later replies have room. */
  private drain(buf: Buffer): void {
    while (libc.recv(this.fd, buf, buf.length, MSG_DONTWAIT) > 0);
  }
}

/**
 * A raw netlink socket of `protocol`: extended acks (the kernel's reason),
 * capped acks (no echoed request) and a receive timeout. `bufBytes` forces
 * both buffer sizes past net.core.{r,w}mem_max (needs CAP_NET_ADMIN).
 */
export function openNetlinkFd(protocol: number, what: string, bufBytes?: number): number {
  const fd = libc.socket(AF_NETLINK, SOCK_RAW | libc.SOCK_CLOEXEC, protocol);
  if (fd < 0) throw libc.sysError(`socket(AF_NETLINK, ${what})`);
  const int = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return b;
  };
  libc.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, int(1), 4);
  libc.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, int(1), 4);
  if (bufBytes !== undefined) {
    libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, int(bufBytes), 4);
    libc.setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, int(bufBytes), 4);
  }
  const tv = Buffer.alloc(16); // struct timeval
  tv.writeBigInt64LE(BigInt(RECV_TIMEOUT_S), 0);
  libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
  return fd;
}

function openFd(): number {
  return openNetlinkFd(NETLINK_ROUTE, 'NETLINK_ROUTE');
}

/** Runs fn with a short-lived socket (for one-off calls; keep sockets in hot paths). */
export function withSocket<T>(netnsPath: string | undefined, fn: (s: NetlinkSocket) => T): T {
  const s = NetlinkSocket.open(netnsPath);
  try {
    return fn(s);
  } finally {
    s.close();
  }
}
