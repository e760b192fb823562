// Subnets of networks in one tenant must not share addresses; different
// tenants are isolated from each other and may reuse the same ranges.
import { conflict } from '../lib/errors.ts';
import { formatPrefix, overlaps, parsePrefix } from '../lib/ip.ts';

export interface NetworkSubnets {
  network: string;
  subnets: string[];
}

/** The first clash between `subnets` and the other networks' subnets, if any. */
export function findOverlap(
  subnets: string[],
  others: NetworkSubnets[],
): { subnet: string; other: string; network: string } | undefined {
  for (const s of subnets) {
    const p = parsePrefix(s, 'subnet', false);
    for (const o of others) {
      for (const os of o.subnets) {
        const q = parsePrefix(os, 'subnet', false);
        if (overlaps(p, q)) return { subnet: formatPrefix(p), other: formatPrefix(q), network: o.network };
      }
    }
  }
  return undefined;
}

/** Throws 'conflict' naming both subnets and the other network. */
export function checkOverlap(subnets: string[], others: NetworkSubnets[]): void {
  const clash = findOverlap(subnets, others);
  if (clash !== undefined) {
    throw conflict(`subnet ${clash.subnet} overlaps ${clash.other} of network ${clash.network}`, 'subnet');
  }
}
