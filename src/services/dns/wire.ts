// The few pieces of the DNS wire format Knit writes itself: reading a query's
// header and question, and writing authoritative answers. Replies copy the
// question bytes verbatim, so types and classes Knit never heard of echo back
// intact and answer names can point at offset 12 (0xC00C).

export const TYPE_A = 1;
export const TYPE_PTR = 12;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const TYPE_ANY = 255;
export const CLASS_IN = 1;
export const CLASS_ANY = 255;

export const NOERROR = 0;
export const FORMERR = 1;
export const SERVFAIL = 2;
export const NXDOMAIN = 3;
export const NOTIMP = 4;
export const REFUSED = 5;
/** Extended RCODE 16: the upper 8 bits (1) travel in the OPT record. */
export const BADVERS_HIGH = 1;

export const HEADER = 12;
const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const CD = 0x0010;
const OPCODE_MASK = 0x7800;

/** The payload size Knit advertises in its own OPT records (the DNS flag day 2020 value). */
export const OUR_UDP_SIZE = 1232;
/** Classic DNS limit for UDP messages without EDNS. */
export const CLASSIC_UDP_SIZE = 512;

export interface Question {
  /** Lower case, no trailing dot; '' for the root. */
  name: string;
  /** False when a label holds a '.' or the name is otherwise not one Knit could own. */
  plain: boolean;
  qtype: number;
  qclass: number;
  /** Offset just past the question: header + question are msg[0, end). */
  end: number;
}

export function opcodeOf(msg: Buffer): number {
  return (msg.readUInt16BE(2) & OPCODE_MASK) >> 11;
}

export function isResponse(msg: Buffer): boolean {
  return (msg[2]! & 0x80) !== 0;
}

export function questionCount(msg: Buffer): number {
  return msg.readUInt16BE(4);
}

/** Whether any answer, authority or additional record follows the question (EDNS's OPT, say). */
export function hasRecords(msg: Buffer): boolean {
  return msg.readUInt32BE(6) !== 0 || msg.readUInt16BE(10) !== 0;
}

/**
 * Reads the first question. Undefined when it runs past the message, uses a
 * compression pointer (legal but never sent by real stubs in a question), or
 * has an over-long label or name.
 */
export function readQuestion(msg: Buffer): Question | undefined {
  // The name is assembled in a scratch buffer, lower-cased there, and becomes
  // one string: per-label strings would be garbage on every query.
  let off = HEADER;
  let n = 0;
  let plain = true;
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off]!;
    off += 1;
    if (len === 0) break;
    if (len > 63 || off + len > msg.length) return undefined;
    if (n !== 0) nameScratch[n++] = 0x2e;
    if (n + len > 253) return undefined;
    for (let i = off, last = off + len; i < last; i++) {
      let c = msg[i]!;
      if (c === 0x2e) plain = false;
      else if (c >= 0x41 && c <= 0x5a) c |= 0x20; // DNS case-folds ASCII only (RFC 4343)
      nameScratch[n++] = c;
    }
    off += len;
  }
  if (off + 4 > msg.length) return undefined;
  return {
    name: n === 0 ? '' : nameScratch.toString('latin1', 0, n),
    plain,
    qtype: msg.readUInt16BE(off),
    qclass: msg.readUInt16BE(off + 2),
    end: off + 4,
  };
}

const nameScratch = Buffer.allocUnsafe(256);

/** A reply with no sections: for FORMERR/NOTIMP when the question cannot be trusted. */
export function headerOnly(query: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(HEADER);
  out.writeUInt16BE(query.readUInt16BE(0), 0);
  const qflags = query.readUInt16BE(2);
  out.writeUInt16BE(QR | (qflags & (OPCODE_MASK | RD)) | RA | (rcode & 0xf), 2);
  return out;
}

/** One answer record: its name is the question's (a pointer to offset 12), its TTL the reply's. */
export interface Answer {
  readonly type: number;
  readonly rdata: Buffer;
}

export interface Edns {
  /** The requester's payload size (already at least 512). */
  size: number;
  version: number;
  dnssecOk: boolean;
}

export interface ReplyOptions {
  rcode: number;
  answers: readonly Answer[];
  /** TTL of every answer (0 when there are none). */
  ttl?: number;
  /** Largest reply the transport allows; answers that do not fit are dropped and TC set. */
  limit: number;
  /** Present when the query carried an OPT record: the reply carries one too. */
  edns: Edns | undefined;
  /** Upper 8 bits of an extended RCODE (BADVERS). */
  extendedRcode?: number;
  /** Authoritative answer (Knit's own names); false for relay failures. Default true. */
  authoritative?: boolean;
}

const OPT_SIZE = 11;

/** An authoritative reply: header, the query's question verbatim, answers, OPT. */
export function buildReply(query: Buffer, q: Question, opts: ReplyOptions): Buffer {
  const qlen = q.end - HEADER;
  const ttl = opts.ttl ?? 0;
  const optLen = opts.edns === undefined ? 0 : OPT_SIZE;
  let size = HEADER + qlen + optLen;
  let fit = 0;
  let truncated = false;
  for (const a of opts.answers) {
    const len = 12 + a.rdata.length; // pointer(2) type(2) class(2) ttl(4) rdlength(2)
    if (size + len > opts.limit) {
      truncated = true;
      break;
    }
    size += len;
    fit += 1;
  }
  const out = Buffer.allocUnsafe(size);
  out.writeUInt16BE(query.readUInt16BE(0), 0);
  const qflags = query.readUInt16BE(2);
  out.writeUInt16BE(QR | (opts.authoritative === false ? 0 : AA) | (truncated ? TC : 0) | (qflags & (RD | CD)) | RA | (opts.rcode & 0xf), 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(fit, 6);
  out.writeUInt16BE(0, 8);
  out.writeUInt16BE(optLen === 0 ? 0 : 1, 10);
  query.copy(out, HEADER, HEADER, q.end);
  let off = q.end;
  for (let i = 0; i < fit; i++) {
    const a = opts.answers[i]!;
    out.writeUInt16BE(0xc00c, off);
    out.writeUInt16BE(a.type, off + 2);
    out.writeUInt16BE(CLASS_IN, off + 4);
    out.writeUInt32BE(ttl, off + 6);
    out.writeUInt16BE(a.rdata.length, off + 10);
    a.rdata.copy(out, off + 12);
    off += 12 + a.rdata.length;
  }
  if (opts.edns !== undefined) {
    out[off] = 0; // root name
    out.writeUInt16BE(TYPE_OPT, off + 1);
    out.writeUInt16BE(OUR_UDP_SIZE, off + 3);
    out[off + 5] = opts.extendedRcode ?? 0;
    out[off + 6] = 0; // version
    out.writeUInt16BE(opts.edns.dnssecOk ? 0x8000 : 0, off + 7);
    out.writeUInt16BE(0, off + 9);
  }
  return out;
}

/**
 * A relayed reply cut down to header + question with TC set, for when the
 * full answer does not fit the client's UDP limit: the client retries over TCP.
 */
export function truncateReply(reply: Buffer, query: Buffer, q: Question): Buffer {
  const out = Buffer.allocUnsafe(q.end);
  reply.copy(out, 0, 0, 4);
  out.writeUInt16BE(out.readUInt16BE(2) | TC, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(0, 10);
  query.copy(out, HEADER, HEADER, q.end);
  return out;
}

export function isTruncated(msg: Buffer): boolean {
  return msg.length >= HEADER && (msg[2]! & 0x02) !== 0;
}

/** A name in uncompressed wire form, for PTR rdata. */
export function encodeName(name: string): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = Buffer.from(l, 'latin1');
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** The RCODE of a message (low 4 bits). */
export function rcodeOf(msg: Buffer): number {
  return msg[3]! & 0xf;
}

/** Case-insensitive comparison of two messages' question sections, for matching replies to queries. */
export function sameQuestion(a: Buffer, b: Buffer, end: number): boolean {
  if (a.length < end || b.length < end) return false;
  for (let i = HEADER; i < end; i++) {
    let x = a[i]!;
    let y = b[i]!;
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}
