// A network's address pools: what the user asked for (PoolSpec), the
// checked and completed form that is stored (Pool), and the numeric view the
// allocator works on (PoolRange).
import { invalid } from '../lib/errors.ts';
import {
  contains,
  formatIP,
  formatPrefix,
  lastAddr,
  mask,
  overlaps,
  parseIP,
  parsePrefix,
  within,
  type Family,
  type Prefix,
} from '../lib/ip.ts';

export interface PoolSpec {
  subnet: string;
  /** Default: the first usable address of the subnet. */
  gateway?: string;
  /** A sub-range of the subnet from which dynamic addresses come. */
  ipRange?: string;
  /** First and last address dynamic allocation hands out (CNI host-local's rangeStart/rangeEnd). */
  rangeStart?: string;
  rangeEnd?: string;
  /** Addresses never handed out, by name (Docker's --aux-address). */
  auxAddresses?: Record<string, string>;
}

/** A validated pool, all addresses canonical. */
export interface Pool {
  subnet: string;
  gateway: string;
  ipRange?: string;
  rangeStart?: string;
  rangeEnd?: string;
  auxAddresses: Record<string, string>;
}

export interface PoolRange {
  family: Family;
  subnet: Prefix;
  /** Dynamic allocation runs over [first, last]. */
  first: bigint;
  last: bigint;
  /** Gateway and aux addresses: never allocated. */
  reserved: Set<bigint>;
}

/** Smallest subnets that still leave an address after the gateway. */
const MAX_LEN: Record<Family, number> = { 4: 30, 6: 126 };

/** The lowest and highest address an endpoint may have: v4 skips network and broadcast, v6 the subnet-router anycast ::0. */
export function usableBounds(subnet: Prefix): { lo: bigint; hi: bigint } {
  const last = lastAddr(subnet);
  return { lo: subnet.addr + 1n, hi: subnet.family === 4 ? last - 1n : last };
}

export function familyName(f: Family): string {
  return f === 4 ? 'IPv4' : 'IPv6';
}

/**
 * Checks the pools of one network and fills in defaults (the gateway).
 * Errors name the field, e.g. `subnets[1].gateway`, and show a valid value.
 */
export function validateSubnets(specs: PoolSpec[], field = 'subnets'): Pool[] {
  const pools: Pool[] = [];
  const prefixes: Prefix[] = [];
  specs.forEach((spec, i) => {
    const at = `${field}[${i}]`;
    const subnet = parsePrefix(spec.subnet, `${at}.subnet`);
    const sub = formatPrefix(subnet);
    if (subnet.len > MAX_LEN[subnet.family]) {
      const len = subnet.family === 4 ? 24 : 64;
      const wider = formatPrefix({ family: subnet.family, len, addr: subnet.addr & mask(subnet.family, len) });
      throw invalid(`${at}.subnet`, `${sub} is too small for a gateway and an endpoint; use /${MAX_LEN[subnet.family]} or shorter (e.g. ${wider})`);
    }
    const { lo, hi } = usableBounds(subnet);
    const example = formatIP(subnet.family, lo);
    const endpointAddress = (ip: string, name: string, suggest: bigint): bigint => {
      const a = parseIP(ip, name);
      if (!contains(subnet, a.family, a.addr)) {
        throw invalid(name, `${ip} is not within subnet ${sub} (e.g. ${formatIP(subnet.family, suggest)})`);
      }
      if (a.addr < lo || a.addr > hi) {
        const what = a.addr === subnet.addr ? (subnet.family === 4 ? 'the network address' : 'the subnet-router anycast address') : 'the broadcast address';
        throw invalid(name, `${ip} is ${what} of ${sub} (e.g. ${formatIP(subnet.family, suggest)})`);
      }
      return a.addr;
    };

    const gateway = spec.gateway === undefined || spec.gateway === '' ? lo : endpointAddress(spec.gateway, `${at}.gateway`, lo);
    const pool: Pool = { subnet: sub, gateway: formatIP(subnet.family, gateway), auxAddresses: {} };

    if (spec.ipRange !== undefined && spec.ipRange !== '') {
      const range = parsePrefix(spec.ipRange, `${at}.ipRange`);
      if (!within(range, subnet)) {
        throw invalid(`${at}.ipRange`, `${spec.ipRange} is not within subnet ${sub} (e.g. ${formatPrefix({ ...subnet, len: Math.min(subnet.len + 1, MAX_LEN[subnet.family]), addr: subnet.addr })})`);
      }
      pool.ipRange = formatPrefix(range);
    }
    if (spec.rangeStart) pool.rangeStart = formatIP(subnet.family, endpointAddress(spec.rangeStart, `${at}.rangeStart`, lo));
    if (spec.rangeEnd) pool.rangeEnd = formatIP(subnet.family, endpointAddress(spec.rangeEnd, `${at}.rangeEnd`, hi));

    for (const [name, ip] of Object.entries(spec.auxAddresses ?? {})) {
      const auxField = `${at}.auxAddresses.${name}`;
      if (name === '') throw invalid(`${at}.auxAddresses`, `an aux address needs a name (e.g. router=${example})`);
      const a = endpointAddress(ip, auxField, gateway === hi ? lo : hi);
      if (a === gateway) throw invalid(auxField, `${ip} is the gateway of ${sub}; aux addresses are for other reserved hosts`);
      pool.auxAddresses[name] = formatIP(subnet.family, a);
    }

    const clash = prefixes.findIndex((p) => overlaps(p, subnet));
    if (clash >= 0) throw invalid(`${at}.subnet`, `${sub} overlaps ${formatPrefix(prefixes[clash] as Prefix)} (${field}[${clash}]) of the same network`);
    const r = rangeOf(pool);
    if (r.first > r.last) {
      if (pool.ipRange === undefined) throw invalid(`${at}.rangeStart`, `${pool.rangeStart} is after rangeEnd ${pool.rangeEnd}`);
      throw invalid(`${at}.ipRange`, `${pool.ipRange} holds no address an endpoint may have in ${sub}`);
    }
    prefixes.push(subnet);
    pools.push(pool);
  });
  return pools;
}

/** The allocator's view of a validated pool. */
export function rangeOf(pool: Pool): PoolRange {
  const subnet = parsePrefix(pool.subnet);
  const { lo, hi } = usableBounds(subnet);
  let first = lo;
  let last = hi;
  if (pool.ipRange !== undefined) {
    const r = parsePrefix(pool.ipRange);
    if (r.addr > first) first = r.addr;
    if (lastAddr(r) < last) last = lastAddr(r);
  }
  if (pool.rangeStart !== undefined) first = maxOf(first, parseIP(pool.rangeStart).addr);
  if (pool.rangeEnd !== undefined) last = minOf(last, parseIP(pool.rangeEnd).addr);
  const reserved = new Set<bigint>([parseIP(pool.gateway).addr]);
  for (const ip of Object.values(pool.auxAddresses)) reserved.add(parseIP(ip).addr);
  return { family: subnet.family, subnet, first, last, reserved };
}

function maxOf(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function minOf(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

/** Human name of a pool for messages: "10.1.0.0/24" or "10.1.0.0/24 (range 10.1.0.128/25)". */
export function describePool(pool: Pool): string {
  return pool.ipRange === undefined ? pool.subnet : `${pool.subnet} (range ${pool.ipRange})`;
}
