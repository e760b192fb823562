// Address and prefix math for IPv4 and IPv6. Addresses are bigints so one
// code path serves both families.
import { invalid } from './errors.ts';

export type Family = 4 | 6;

export interface Prefix {
  family: Family;
  /** Network address (host bits cleared). */
  addr: bigint;
  len: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

export function bitsOf(family: Family): number {
  return BITS[family];
}

// Our own validators rather than node:net's: loading node:net costs Bun ~9 ms,
// paid at every start of the compiled CNI plugins. Same forms as node:net
// accepts: dotted quads without leading zeros; RFC 4291 text with '::', an
// embedded IPv4 tail and a zone (%eth0).
const OCTET = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)$/;
const HEXTET = /^[0-9a-fA-F]{1,4}$/;
const ZONE = /^[0-9a-zA-Z\-.:_]+$/;

export function isIPv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((o) => OCTET.test(o));
}

export function isIPv6(s: string): boolean {
  let t = s;
  const pct = t.indexOf('%');
  if (pct >= 0) {
    if (!ZONE.test(t.slice(pct + 1))) return false;
    t = t.slice(0, pct);
  }
  const lastColon = t.lastIndexOf(':');
  if (lastColon < 0) return false;
  let groups = 8;
  if (t.slice(lastColon + 1).includes('.')) {
    if (!isIPv4(t.slice(lastColon + 1))) return false;
    t = t.slice(0, lastColon + 1) + '0';
    groups = 7;
  }
  const dbl = t.indexOf('::');
  if (dbl < 0) {
    const g = t.split(':');
    return g.length === groups && g.every((x) => HEXTET.test(x));
  }
  if (t.indexOf('::', dbl + 1) >= 0) return false;
  const head = t.slice(0, dbl);
  const rest = t.slice(dbl + 2);
  const g = [...(head === '' ? [] : head.split(':')), ...(rest === '' ? [] : rest.split(':'))];
  return g.length < groups && g.every((x) => HEXTET.test(x));
}

export function familyOf(ip: string): Family | undefined {
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  return undefined;
}

export function parseIP(ip: string, field = 'address'): { family: Family; addr: bigint } {
  if (isIPv4(ip)) {
    const parts = ip.split('.').map(Number);
    let v = 0n;
    for (const p of parts) v = (v << 8n) | BigInt(p);
    return { family: 4, addr: v };
  }
  if (isIPv6(ip)) return { family: 6, addr: parseV6(ip) };
  throw invalid(field, `'${ip}' is not an IP address (e.g. 10.1.0.5 or fd00::5)`);
}

function parseV6(ip: string): bigint {
  let s = ip;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIP(tail).addr;
    s = `${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head, rest] = s.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = rest === undefined || rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? 0 : 8 - h.length - t.length;
  const groups = [...h, ...Array<string>(fill).fill('0'), ...t];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  return v;
}

export function formatIP(family: Family, addr: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((addr >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Normalises an address string (IPv6 compressed, lower case). */
export function canonicalIP(ip: string, field = 'address'): string {
  const { family, addr } = parseIP(ip, field);
  return formatIP(family, addr);
}

export function mask(family: Family, len: number): bigint {
  const bits = BigInt(BITS[family]);
  return ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(len))) - 1n);
}

/**
 * Parses "addr/len". `strict` refuses host bits (a subnet must be its
 * network address); otherwise they are cleared.
 */
export function parsePrefix(cidr: string, field = 'subnet', strict = true): Prefix {
  const slash = cidr.indexOf('/');
  if (slash < 0) throw invalid(field, `'${cidr}' is not a CIDR (e.g. 10.1.0.0/24 or fd00:1::/64)`);
  const { family, addr } = parseIP(cidr.slice(0, slash), field);
  const lenText = cidr.slice(slash + 1);
  const len = Number(lenText);
  if (!/^\d{1,3}$/.test(lenText) || len > BITS[family]) {
    throw invalid(field, `'${cidr}' has an invalid prefix length (0 to ${BITS[family]})`);
  }
  const net = addr & mask(family, len);
  if (strict && net !== addr) {
    throw invalid(field, `'${cidr}' has host bits set; did you mean ${formatIP(family, net)}/${len}?`);
  }
  return { family, addr: net, len };
}

export function formatPrefix(p: Prefix): string {
  return `${formatIP(p.family, p.addr)}/${p.len}`;
}

export function prefixSize(p: Prefix): bigint {
  return 1n << BigInt(BITS[p.family] - p.len);
}

export function lastAddr(p: Prefix): bigint {
  return p.addr + prefixSize(p) - 1n;
}

export function contains(p: Prefix, family: Family, addr: bigint): boolean {
  return p.family === family && (addr & mask(family, p.len)) === p.addr;
}

export function containsIP(p: Prefix, ip: string): boolean {
  const a = parseIP(ip);
  return contains(p, a.family, a.addr);
}

/** True when the two prefixes share any address. */
export function overlaps(a: Prefix, b: Prefix): boolean {
  if (a.family !== b.family) return false;
  const len = Math.min(a.len, b.len);
  const m = mask(a.family, len);
  return (a.addr & m) === (b.addr & m);
}

/** True when `inner` lies entirely within `outer`. */
export function within(inner: Prefix, outer: Prefix): boolean {
  return inner.family === outer.family && inner.len >= outer.len && contains(outer, inner.family, inner.addr);
}
