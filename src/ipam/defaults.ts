// Subnets chosen when the user gives none, as Docker does: 172.17-31.0.0/16,
// then 192.168.0.0/16 cut into /20s; and for IPv6 a ULA /64 (RFC 4193).
import { createHash } from 'node:crypto';
import { KnitError } from '../lib/errors.ts';
import { formatPrefix, overlaps, parsePrefix, type Prefix } from '../lib/ip.ts';

function* v4Candidates(): Generator<Prefix> {
  for (let b = 17n; b <= 31n; b++) yield { family: 4, addr: (172n << 24n) | (b << 16n), len: 16 };
  for (let c = 0n; c < 256n; c += 16n) yield { family: 4, addr: (192n << 24n) | (168n << 16n) | (c << 8n), len: 20 };
}

/**
 * The first default v4 subnet that overlaps neither a subnet in `used` (the
 * tenant's other networks) nor a route on the host. Default routes (/0) are
 * ignored: they overlap everything and say nothing about local networks.
 */
export function pickDefaultSubnet(used: string[], hostRoutes: string[]): string {
  const taken = [...used, ...hostRoutes]
    .map((s) => parsePrefix(s, 'subnet', false))
    .filter((p) => p.family === 4 && p.len > 0);
  for (const c of v4Candidates()) {
    if (!taken.some((t) => overlaps(c, t))) return formatPrefix(c);
  }
  throw new KnitError(
    'exhausted',
    'no default IPv4 subnet is free: 172.17.0.0/16 to 172.31.0.0/16 and 192.168.0.0/16 are all used by networks or host routes; give a subnet (e.g. --subnet 10.10.0.0/24)',
  );
}

/**
 * A ULA /64 under fd00::/8 derived from the network id: the same id gives
 * the same subnet (stable across re-creation), different ids almost surely
 * different ones; clashes with `used` are stepped past by rehashing.
 */
export function pickDefaultV6Subnet(networkId: string, used: string[]): string {
  const taken = used.map((s) => parsePrefix(s, 'subnet', false)).filter((p) => p.family === 6);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const h = createHash('sha256').update(`${networkId}\0${attempt}`).digest();
    // fd + 40-bit global id + 16-bit subnet id = the 64 network bits.
    let net = 0xfdn;
    for (let i = 0; i < 7; i++) net = (net << 8n) | BigInt(h[i] as number);
    const c: Prefix = { family: 6, addr: net << 64n, len: 64 };
    if (!taken.some((t) => overlaps(c, t))) return formatPrefix(c);
  }
  throw new KnitError('exhausted', `no free ULA /64 found for network ${networkId}; give an IPv6 subnet (e.g. --subnet fd12:3456:789a::/64)`);
}
