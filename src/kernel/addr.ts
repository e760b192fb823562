// Interface addresses (RTM_*ADDR), IPv4 and IPv6, given as CIDRs whose host
// part is the address itself: '10.1.0.2/24', 'fd00::2/64'.
import { invalid } from '../lib/errors.ts';
import { formatIP, mask, parseIP, type Family } from '../lib/ip.ts';
import * as C from './netlink/constants.ts';
import { attr, attrU32, ipBytes, ipFromBytes, message, parseAttrs, u32, type Parsed } from './netlink/message.ts';
import { NetlinkError, type NetlinkSocket, type Request } from './netlink/socket.ts';

export interface Address {
  index: number;
  family: Family;
  /** Address with its prefix length, e.g. '10.1.0.2/24'. */
  cidr: string;
  /** 0 universe, 253 link, 254 host. */
  scope: number;
  flags: number;
}

function parseCidr(cidr: string): { family: Family; bytes: Buffer; len: number; ip: string } {
  const slash = cidr.indexOf('/');
  const ip = slash < 0 ? cidr : cidr.slice(0, slash);
  const { family, bytes } = ipBytes(ip, 'cidr');
  const max = family === 4 ? 32 : 128;
  const lenText = slash < 0 ? String(max) : cidr.slice(slash + 1);
  const len = Number(lenText);
  if (!/^\d{1,3}$/.test(lenText) || len > max) {
    throw invalid('cidr', `'${cidr}' needs a prefix length from 0 to ${max} (e.g. 10.1.0.2/24)`);
  }
  return { family, bytes, len, ip };
}

function ifaddrmsg(family: Family, len: number, index: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(family === 4 ? C.AF_INET : C.AF_INET6, 0);
  b.writeUInt8(len, 1);
  b.writeUInt32LE(index, 4);
  return b;
}

function addrAttrs(cidr: string): { family: Family; len: number; attrs: Buffer[] } {
  const { family, bytes, len, ip } = parseCidr(cidr);
  const attrs = [attr(C.IFA_LOCAL, bytes), attr(C.IFA_ADDRESS, bytes)];
  if (family === 4 && len < 31) {
    // The broadcast address, as `ip addr add ... brd +` and CNI plugins set it.
    const a = parseIP(ip).addr;
    const brd = a | (((1n << 32n) - 1n) ^ mask(4, len));
    attrs.push(attr(C.IFA_BROADCAST, ipBytes(formatIP(4, brd)).bytes));
  }
  return { family, len, attrs };
}

/** The request addAddress sends, for callers batching an attachment. */
export function addAddressRequest(index: number, cidr: string, o: { noDad?: boolean } = {}): Request {
  const { family, len, attrs } = addrAttrs(cidr);
  if (o.noDad === true && family === 6) attrs.push(u32(C.IFA_FLAGS, C.IFA_F_NODAD));
  return {
    msg: message(C.RTM_NEWADDR, C.NLM_F_CREATE | C.NLM_F_EXCL, ifaddrmsg(family, len, index), attrs),
    op: `add address ${cidr} on ifindex ${index}`,
  };
}

/** Adds an address; one already present is fine. noDad skips IPv6 duplicate detection. */
export function addAddress(s: NetlinkSocket, index: number, cidr: string, o: { noDad?: boolean } = {}): void {
  try {
    s.batch([addAddressRequest(index, cidr, o)]);
  } catch (e) {
    if (!(e instanceof NetlinkError && e.code === 'EEXIST')) throw e;
  }
}

/** Removes an address; one already gone is fine. */
export function deleteAddress(s: NetlinkSocket, index: number, cidr: string): void {
  const { family, len, attrs } = addrAttrs(cidr);
  try {
    s.request(message(C.RTM_DELADDR, 0, ifaddrmsg(family, len, index), attrs), `delete address ${cidr} on ifindex ${index}`);
  } catch (e) {
    if (!(e instanceof NetlinkError && (e.code === 'EADDRNOTAVAIL' || e.code === 'ENODEV'))) throw e;
  }
}

function decodeAddress(m: Parsed): Address | undefined {
  const b = m.body;
  const fam = b.readUInt8(0);
  if (fam !== C.AF_INET && fam !== C.AF_INET6) return undefined;
  const a = parseAttrs(b, 8);
  // IFA_LOCAL is the address itself; IFA_ADDRESS is the peer on point-to-point links.
  const raw = a.get(C.IFA_LOCAL) ?? a.get(C.IFA_ADDRESS);
  if (raw === undefined) return undefined;
  return {
    index: b.readUInt32LE(4),
    family: fam === C.AF_INET ? 4 : 6,
    cidr: `${ipFromBytes(raw)}/${b.readUInt8(1)}`,
    scope: b.readUInt8(3),
    flags: attrU32(a.get(C.IFA_FLAGS)) ?? b.readUInt8(2),
  };
}

/** Addresses of one interface, or of all. */
export function listAddresses(s: NetlinkSocket, index?: number, family?: Family): Address[] {
  const fam = family === undefined ? C.AF_UNSPEC : family === 4 ? C.AF_INET : C.AF_INET6;
  const hdr = Buffer.alloc(8);
  hdr.writeUInt8(fam, 0);
  const out: Address[] = [];
  for (const m of s.dump(message(C.RTM_GETADDR, 0, hdr), 'list addresses')) {
    if (m.type !== C.RTM_NEWADDR) continue;
    const a = decodeAddress(m);
    if (a !== undefined && (index === undefined || a.index === index)) out.push(a);
  }
  return out;
}
