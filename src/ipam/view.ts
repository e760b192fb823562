// A network's pools as the allocator uses them, decoded once and kept in
// memory between allocations: parsing the record and the prefixes again on
// every call cost more than the store reads it saved.
//
// The copy is only a guess at the store: every write made from it compares
// the pools' modRevision (and the cursor's), so a copy gone stale (another
// process changed the network) makes that write fail, and the Ipam then drops
// the copy and reads the store again.
import { familyOf, parseIP, type Family } from '../lib/ip.ts';
import { rangeOf, type Pool, type PoolRange } from './pool.ts';

export interface PoolView {
  pool: Pool;
  range: PoolRange;
  gateway: bigint;
  /** The last address handed out dynamically (undefined: none yet) and the cursor key's modRevision (0: absent). Loaded on first use. */
  cursor?: { last: bigint | undefined; modRevision: number };
}

export interface NetworkView {
  /** The pools record's modRevision: every write compares it. */
  modRevision: number;
  pools: PoolView[];
}

export function viewOf(pools: Pool[], modRevision: number): NetworkView {
  return {
    modRevision,
    pools: pools.map((pool) => ({ pool, range: rangeOf(pool), gateway: parseIP(pool.gateway).addr })),
  };
}

export function poolsOf(view: NetworkView, family: Family): PoolView[] {
  return view.pools.filter((p) => familyOf(p.pool.gateway) === family);
}
