// Building and parsing netlink messages: a 16-byte nlmsghdr, a family header,
// then type-length-value attributes padded to 4 bytes. Little-endian (host
// order) except where the ABI says network order.
import { parseIP, formatIP, type Family } from '../../lib/ip.ts';
import { NLA_F_NESTED, NLA_TYPE_MASK } from './constants.ts';

export const NLMSG_HDRLEN = 16;

const align4 = (n: number): number => (n + 3) & ~3;

export function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc(align4(len));
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}

export function u8(type: number, v: number): Buffer {
  return attr(type, Buffer.from([v & 0xff]));
}

export function u16be(type: number, v: number): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(v);
  return attr(type, p);
}

/** A 32-bit value in network order (nf_tables' attributes); negative numbers as two's complement. */
export function u32be(type: number, v: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(v >>> 0);
  return attr(type, p);
}

export function u32(type: number, v: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32LE(v >>> 0);
  return attr(type, p);
}

export function u64(type: number, v: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return attr(type, b);
}

export function str(type: number, v: string): Buffer {
  return attr(type, Buffer.from(`${v}\0`, 'utf8'));
}

export function nested(type: number, children: Buffer[]): Buffer {
  return attr(type | NLA_F_NESTED, Buffer.concat(children));
}

/** An IP address in network byte order (4 or 16 bytes). */
export function ipBytes(ip: string, field = 'address'): { family: Family; bytes: Buffer } {
  const { family, addr } = parseIP(ip, field);
  const n = family === 4 ? 4 : 16;
  const bytes = Buffer.alloc(n);
  let v = addr;
  for (let i = n - 1; i >= 0; i--) {
    bytes[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return { family, bytes };
}

export function ipAttr(type: number, ip: string, field?: string): Buffer {
  return attr(type, ipBytes(ip, field).bytes);
}

export function ipFromBytes(b: Buffer): string {
  let v = 0n;
  for (const byte of b) v = (v << 8n) | BigInt(byte);
  return formatIP(b.length === 4 ? 4 : 6, v);
}

/** A request message; the socket fills in the sequence number. */
export function message(type: number, flags: number, header: Buffer, attrs: Buffer[] = []): Buffer {
  const body = Buffer.concat([header, ...attrs]);
  const b = Buffer.alloc(NLMSG_HDRLEN + body.length);
  b.writeUInt32LE(b.length, 0);
  b.writeUInt16LE(type, 4);
  b.writeUInt16LE(flags, 6);
  body.copy(b, NLMSG_HDRLEN);
  return b;
}

export interface Parsed {
  type: number;
  flags: number;
  seq: number;
  /** The message body after nlmsghdr (family header + attributes). */
  body: Buffer;
}

/** Splits a datagram into messages. The bodies are copies: receive buffers are reused. */
export function splitMessages(buf: Buffer, len: number): Parsed[] {
  const out: Parsed[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= len) {
    const mlen = buf.readUInt32LE(off);
    if (mlen < NLMSG_HDRLEN || off + mlen > len) break;
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      body: Buffer.from(buf.subarray(off + NLMSG_HDRLEN, off + mlen)),
    });
    off += align4(mlen);
  }
  return out;
}

/** Attributes by type (flags masked off); the last occurrence wins. */
export function parseAttrs(b: Buffer, start = 0): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  let off = start;
  while (off + 4 <= b.length) {
    const len = b.readUInt16LE(off);
    if (len < 4 || off + len > b.length) break;
    m.set(b.readUInt16LE(off + 2) & NLA_TYPE_MASK, b.subarray(off + 4, off + len));
    off += align4(len);
  }
  return m;
}

export function attrStr(b: Buffer | undefined): string | undefined {
  if (b === undefined) return undefined;
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}

export function attrU32(b: Buffer | undefined): number | undefined {
  return b === undefined || b.length < 4 ? undefined : b.readUInt32LE(0);
}

export function attrU8(b: Buffer | undefined): number | undefined {
  return b === undefined || b.length < 1 ? undefined : b[0];
}
