// A NETLINK_NETFILTER socket bound (at creation) to one network namespace,
// for nf_tables transactions: BATCH_BEGIN, the messages, BATCH_END in one
// datagram, which the kernel applies all or nothing.
//
// Only the last message of a batch asks for an ack. The kernel answers every
// failed message whatever its flags, and delivers all of a batch's answers
// together, in order, once the batch is done: so the last message's answer
// (or an error on BATCH_BEGIN, for a failed commit) ends the exchange and
// nothing else is left queued. Asking every message for an ack would queue
// one skb each, overrunning the receive buffer for big batches.
// (include/uapi/linux/netfilter/nfnetlink.h; net/netfilter/nfnetlink.c)
import * as libc from '../libc.ts';
import { withNetns } from '../netns.ts';
import {
  AF_UNSPEC,
  NLM_F_ACK,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
} from './constants.ts';
import { message, splitMessages, type Parsed } from './message.ts';
import { extAck, NetlinkError, openNetlinkFd, type Request } from './socket.ts';

export const NETLINK_NETFILTER = 12;
export const NFNETLINK_V0 = 0;
export const NFNL_SUBSYS_NFTABLES = 10;
export const NFNL_MSG_BATCH_BEGIN = 16; // NLMSG_MIN_TYPE
export const NFNL_MSG_BATCH_END = 17;

const EINTR = 4;
const EAGAIN = 11;
const ENOBUFS = 105;
const MSG_DONTWAIT = 0x40;
const RECV_SIZE = 1 << 20;
/** Room for one failure answer per message of the biggest batch (MAX_BATCH), ~1 KiB of skb each. */
const SOCK_BUF = 4 << 20;
/** Messages per transaction; callers split bigger changes (see NfnetlinkSocket.transaction). */
export const MAX_BATCH = 1024;

/** struct nfgenmsg: family, version, resource id (big-endian). */
export function nfgenmsg(family: number, resId = 0): Buffer {
  const b = Buffer.alloc(4);
  b[0] = family;
  b[1] = NFNETLINK_V0;
  b.writeUInt16BE(resId, 2);
  return b;
}

/** An nfnetlink message of `subsys` (type = subsys << 8 | msg); the socket fills in seq and flags it owns. */
export function nfMessage(subsys: number, msg: number, flags: number, family: number, attrs: Buffer[]): Buffer {
  return message((subsys << 8) | msg, flags, nfgenmsg(family), attrs);
}

let sharedBuf: Buffer | undefined;

export class NfnetlinkSocket {
  readonly fd: number;
  readonly netnsPath: string | undefined;
  #seq: number;
  #closed = false;

  private constructor(fd: number, netnsPath: string | undefined) {
    this.fd = fd;
    this.netnsPath = netnsPath;
    this.#seq = Math.floor(Math.random() * 0x3fffffff) + 1;
  }

  /** A socket in the netns at `netnsPath`, or in the current thread's netns. */
  static open(netnsPath?: string): NfnetlinkSocket {
    const fd = netnsPath === undefined ? openFd() : withNetns(netnsPath, openFd);
    return new NfnetlinkSocket(fd, netnsPath);
  }

  /**
   * One all-or-nothing batch of `subsys` messages (at most MAX_BATCH).
   * Returns each message's failure by position, undefined where it was
   * accepted; any failure means the kernel applied none of them. A failed
   * commit (nothing to pin on one message) throws.
   */
  transaction(subsys: number, reqs: Request[]): (NetlinkError | undefined)[] {
    if (this.#closed) throw new Error('nfnetlink socket is closed');
    if (reqs.length === 0) return [];
    if (reqs.length > MAX_BATCH) throw new RangeError(`nfnetlink batch of ${reqs.length} messages (at most ${MAX_BATCH})`);
    const begin = this.#next(reqs.length + 2);
    const what = reqs[0]?.op ?? 'nfnetlink batch';
    const parts: Buffer[] = [message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, nfgenmsg(AF_UNSPEC, subsys))];
    parts[0]!.writeUInt32LE(begin, 8);
    reqs.forEach((r, i) => {
      const last = i === reqs.length - 1;
      r.msg.writeUInt16LE(r.msg.readUInt16LE(6) | NLM_F_REQUEST | (last ? NLM_F_ACK : 0), 6);
      r.msg.writeUInt32LE(begin + 1 + i, 8);
      r.msg.writeUInt32LE(0, 12);
      parts.push(r.msg);
    });
    const end = message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, nfgenmsg(AF_UNSPEC, subsys));
    end.writeUInt32LE(begin + reqs.length + 1, 8);
    parts.push(end);
    const all = Buffer.concat(parts);
    this.#send(all, what);

    const errors = new Array<NetlinkError | undefined>(reqs.length);
    const lastSeq = begin + reqs.length;
    let batchError: NetlinkError | undefined;
    for (let done = false; !done; ) {
      for (const m of this.#recv(what)) {
        if (m.type !== NLMSG_ERROR) continue;
        const errno = m.body.length >= 4 ? -m.body.readInt32LE(0) : 0;
        if (m.seq === begin) {
          // The batch as a whole: refused (EPERM, ENOMEM) or its commit failed.
          batchError = new NetlinkError(errno || 22, `${what} (batch)`, extAck(m), -1);
          done = true;
        } else if (m.seq > begin && m.seq <= lastSeq) {
          const i = m.seq - begin - 1;
          if (errno !== 0) errors[i] = new NetlinkError(errno, reqs[i]?.op ?? '?', extAck(m), i);
          if (m.seq === lastSeq) done = true;
        }
      }
    }
    if (batchError !== undefined && errors.every((e) => e === undefined)) throw batchError;
    return errors;
  }

  /** A request answered by data messages (a get), outside any batch. */
  query(msg: Buffer, op: string): Parsed[] {
    if (this.#closed) throw new Error('nfnetlink socket is closed');
    const seq = this.#next(1);
    msg.writeUInt16LE(msg.readUInt16LE(6) | NLM_F_REQUEST | NLM_F_ACK, 6);
    msg.writeUInt32LE(seq, 8);
    msg.writeUInt32LE(0, 12);
    this.#send(msg, op);
    const data: Parsed[] = [];
    for (;;) {
      for (const m of this.#recv(op)) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR || m.type === NLMSG_DONE) {
          const errno = m.body.length >= 4 ? -m.body.readInt32LE(0) : 0;
          if (errno !== 0) throw new NetlinkError(errno, op, extAck(m));
          return data;
        }
        data.push(m);
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    libc.close(this.fd);
  }

  /** n contiguous sequence numbers (a batch's must not wrap). */
  #next(n: number): number {
    if (this.#seq + n > 0x3fffffff) this.#seq = 1;
    const s = this.#seq;
    this.#seq += n;
    return s;
  }

  #send(buf: Buffer, what: string): void {
    for (;;) {
      if (libc.send(this.fd, buf, buf.length, 0) >= 0) return;
      if (libc.errno() !== EINTR) throw libc.sysError(`nfnetlink send (${what})`);
    }
  }

  #recv(what: string): Parsed[] {
    const buf = (sharedBuf ??= Buffer.alloc(RECV_SIZE));
    for (;;) {
      const n = libc.recv(this.fd, buf, buf.length, 0);
      if (n >= 0) return splitMessages(buf, n);
      const err = libc.errno();
      if (err === EINTR) continue;
      if (err === ENOBUFS) while (libc.recv(this.fd, buf, buf.length, MSG_DONTWAIT) > 0);
      throw libc.sysError(err === EAGAIN ? `nfnetlink recv timed out (${what})` : `nfnetlink recv (${what})`, err);
    }
  }
}

function openFd(): number {
  // Forced buffers: room for one failure answer per message of the biggest batch.
  return openNetlinkFd(NETLINK_NETFILTER, 'NETLINK_NETFILTER', SOCK_BUF);
}
