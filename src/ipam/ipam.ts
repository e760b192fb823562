// IP address management over the Store.
//
// Each allocation is one key, /knit/v1/ipam/<network>/<ip> → owner, written
// with compare-and-set (the key must not exist, the pool's cursor and the
// network's pools must be unchanged), so two processes sharing a store, or an
// etcd cluster, never hand out one address twice: the loser re-reads and
// retries. Within one process allocations on a network are also queued, so
// 50 concurrent attaches do not all race for the same next address.
//
// Dynamic addresses continue after the last one given out (the cursor), like
// CNI's host-local, so a just-freed address is not reused at once. The next
// free address is found by reading allocation keys in address order from the
// cursor, a few hundred per read: normally the first read answers; a pool
// with 60k addresses in use costs at most ~120 reads, never a read per address.
import { z } from 'zod';
import { KnitError, conflict, invalid, notFound } from '../lib/errors.ts';
import { canonicalIP, contains, familyOf, formatIP, parseIP, type Family } from '../lib/ip.ts';
import { Records } from '../store/records.ts';
import { prefixEnd, type Compare, type KV, type Op, type Store } from '../store/store.ts';
import { pickDefaultSubnet, pickDefaultV6Subnet } from './defaults.ts';
import {
  allocKey,
  allocPrefix,
  cursorKey,
  cursorPrefix,
  ownerKey,
  ownerPrefix,
  parseOwnerKey,
  parseSortableIP,
  tenantKey,
} from './keys.ts';
import { checkOverlap } from './overlap.ts';
import { describePool, familyName, rangeOf, usableBounds, validateSubnets, type Pool, type PoolRange, type PoolSpec } from './pool.ts';

const poolSchema = z.object({
  subnet: z.string(),
  gateway: z.string(),
  ipRange: z.string().optional(),
  rangeStart: z.string().optional(),
  rangeEnd: z.string().optional(),
  auxAddresses: z.record(z.string(), z.string()),
});

const networkPoolsSchema = z.object({
  network: z.string(),
  tenant: z.string(),
  pools: z.array(poolSchema),
});

export type NetworkPools = z.infer<typeof networkPoolsSchema>;

export interface CreateNetworkOptions {
  /** Networks overlap-check only against their own tenant. Default 'default'. */
  tenant?: string;
  pools?: PoolSpec[];
  /** Give the network an IPv4 pool (a default one if none is in `pools`). Default true. */
  ipv4?: boolean;
  /** Give the network an IPv6 pool (a ULA /64 if none is in `pools`). Default: only if `pools` has one. */
  ipv6?: boolean;
  /** Prefixes routed on the host; default v4 subnets avoid them. */
  hostRoutes?: string[];
}

export interface AllocateRequest {
  family: Family;
  /** A static address; otherwise the next free one. */
  ip?: string;
  /** The endpoint that holds the address. */
  owner: string;
}

export interface Allocation {
  network: string;
  ip: string;
  family: Family;
  owner: string;
}

/** Rows read per range request while looking for a free address. */
const SCAN_BATCH = 512;
/** Compare-and-set attempts before giving up; each failure means another writer made progress. */
const MAX_ATTEMPTS = 1000;

export class Ipam {
  private readonly store: Store;
  private readonly networks: Records<NetworkPools>;
  private readonly queues = new Map<string, Promise<void>>();

  constructor(store: Store) {
    this.store = store;
    this.networks = new Records(store, 'ipam-pool', networkPoolsSchema);
  }

  /**
   * Validates and stores the pools of a new network, adding default subnets
   * where none is given, and refuses subnets that overlap another network of
   * the same tenant. Repeating a create with the same network and tenant
   * returns the stored pools.
   */
  async createNetwork(network: string, options: CreateNetworkOptions = {}): Promise<NetworkPools> {
    const tenant = options.tenant ?? 'default';
    const specs = options.pools ?? [];
    const validated = validateSubnets(specs);
    return this.queued(`tenant\0${tenant}`, async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        // Every create in a tenant bumps this key, so two creates that each
        // saw the other's subnets as free cannot both commit.
        const lock = await this.store.get(tenantKey(tenant));
        const existing = await this.networks.get(network);
        if (existing !== undefined) {
          if (existing.value.tenant === tenant && validated.every((p) => existing.value.pools.some((e) => e.subnet === p.subnet))) return existing.value;
          throw conflict(`network ${network} already has IPAM pools (${existing.value.pools.map((p) => p.subnet).join(', ')}) in tenant ${existing.value.tenant}`);
        }
        const others = (await this.networks.list())
          .filter((r) => r.value.tenant === tenant)
          .map((r) => ({ network: r.id, subnets: r.value.pools.map((p) => p.subnet) }));
        const used = others.flatMap((o) => o.subnets);
        checkOverlap(validated.map((p) => p.subnet), others);

        const pools = [...validated];
        const has = (f: Family): boolean => pools.some((p) => familyOf(p.gateway) === f);
        if ((options.ipv4 ?? true) && !has(4)) pools.push(...validateSubnets([{ subnet: pickDefaultSubnet(used, options.hostRoutes ?? []) }]));
        if (options.ipv6 === true && !has(6)) pools.push(...validateSubnets([{ subnet: pickDefaultV6Subnet(network, used) }]));
        if (options.ipv4 === false && has(4)) throw invalid('subnets', `network ${network} is IPv6-only but was given an IPv4 subnet`);
        if (pools.length === 0) throw invalid('subnets', `network ${network} needs at least one of IPv4 and IPv6`);

        const value: NetworkPools = { network, tenant, pools };
        const res = await this.store.txn(
          [{ key: tenantKey(tenant), modRevision: lock?.modRevision ?? 0 }, this.networks.compare(network, 0)],
          [{ put: tenantKey(tenant), value: network }, this.networks.putOp(network, value)],
        );
        if (res.ok) return value;
      }
      throw this.contended(`creating network ${network}`);
    });
  }

  async getNetwork(network: string): Promise<NetworkPools | undefined> {
    return (await this.networks.get(network))?.value;
  }

  async listNetworks(tenant?: string): Promise<NetworkPools[]> {
    return (await this.networks.list()).map((r) => r.value).filter((n) => tenant === undefined || n.tenant === tenant);
  }

  /** Removes a network's pools and frees all its addresses. Idempotent. */
  async deleteNetwork(network: string): Promise<void> {
    await this.queued(network, async () => {
      // Pools first: an allocation racing with this compares the pools'
      // revision and fails instead of leaving an orphan address behind.
      await this.store.txn([], [this.networks.deleteOp(network), { deletePrefix: cursorPrefix(network) }]);
      for (;;) {
        const mine = await this.store.range(allocPrefix(network), prefixEnd(allocPrefix(network)), { limit: 64 });
        if (mine.length === 0) return;
        const ops: Op[] = [];
        for (const kv of mine) {
          ops.push({ delete: kv.key });
          const a = parseSortableIP(kv.key.slice(allocPrefix(network).length));
          if (a !== undefined) ops.push({ delete: ownerKey(kv.value, network, a.family, a.addr) });
        }
        await this.store.txn([], ops);
      }
    });
  }

  /**
   * Gives `owner` an address of `family` on the network: `ip` if given and
   * free, else the next free one. Idempotent: an owner that already holds an
   * address of that family gets it again.
   */
  async allocate(network: string, req: AllocateRequest): Promise<string> {
    if (req.owner === '') throw invalid('owner', 'an allocation needs an owner (the endpoint id)');
    const want = req.ip === undefined || req.ip === '' ? undefined : parseIP(req.ip, 'ip');
    if (want !== undefined && want.family !== req.family) {
      throw invalid('ip', `${req.ip} is not an ${familyName(req.family)} address`);
    }
    return this.queued(network, async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const rec = await this.networks.get(network);
        if (rec === undefined) throw notFound(`network ${network} has no IPAM pools`);
        const pools = rec.value.pools.filter((p) => familyOf(p.gateway) === req.family);
        if (pools.length === 0) {
          throw invalid('family', `network ${network} has no ${familyName(req.family)} subnet (it has ${rec.value.pools.map((p) => p.subnet).join(', ')})`);
        }
        const held = (await this.addressesOf(req.owner)).find((a) => a.network === network && a.family === req.family);
        if (held !== undefined) {
          if (want !== undefined && held.ip !== formatIP(want.family, want.addr)) {
            throw conflict(`endpoint ${req.owner} already has ${held.ip} on network ${network}; release it before asking for ${req.ip}`, 'ip');
          }
          return held.ip;
        }
        const poolGuard: Compare = this.networks.compare(network, rec.modRevision);
        const done =
          want === undefined
            ? await this.allocateNext(network, pools, req.owner, poolGuard)
            : await this.allocateStatic(network, pools, want.addr, req.owner, poolGuard);
        if (done !== undefined) return done;
        await new Promise((resolve) => setImmediate(resolve));
      }
      throw this.contended(`allocating an address on network ${network}`);
    });
  }

  /** Frees an address; a free or unknown address is fine. */
  async release(network: string, ip: string): Promise<void> {
    await this.releaseIf(network, ip, undefined);
  }

  /** Frees every address `owner` holds (on one network, or on all). */
  async releaseOwner(owner: string, network?: string): Promise<void> {
    for (const a of await this.addressesOf(owner)) {
      if (network === undefined || a.network === network) await this.releaseIf(a.network, a.ip, owner);
    }
  }

  /** The addresses an owner holds, from the reverse index. */
  async addressesOf(owner: string): Promise<Allocation[]> {
    const out: Allocation[] = [];
    for (const kv of await this.store.list(ownerPrefix(owner))) {
      const k = parseOwnerKey(kv.key, owner);
      if (k !== undefined) out.push({ network: k.network, ip: k.ip, family: k.family, owner });
    }
    return out;
  }

  /** Every address in use on a network, in address order. */
  async allocations(network: string): Promise<Allocation[]> {
    const prefix = allocPrefix(network);
    const out: Allocation[] = [];
    for (const kv of await this.store.list(prefix)) {
      const a = parseSortableIP(kv.key.slice(prefix.length));
      if (a !== undefined) out.push({ network, ip: formatIP(a.family, a.addr), family: a.family, owner: kv.value });
    }
    return out;
  }

  /** Returns the address, or undefined when a concurrent writer got in first (retry). */
  private async allocateStatic(network: string, pools: Pool[], addr: bigint, owner: string, poolGuard: Compare): Promise<string | undefined> {
    const family = familyOf(pools[0]?.gateway ?? '') ?? 4;
    const ip = formatIP(family, addr);
    const pool = pools.find((p) => contains(rangeOf(p).subnet, family, addr));
    const r = pool === undefined ? undefined : rangeOf(pool);
    if (pool === undefined || r === undefined) {
      throw invalid('ip', `${ip} is not within the ${familyName(family)} subnets of network ${network} (${pools.map((p) => p.subnet).join(', ')})`);
    }
    const { lo, hi } = usableBounds(r.subnet);
    if (addr < lo || addr > hi) throw invalid('ip', `${ip} is the ${addr === r.subnet.addr ? 'network' : 'broadcast'} address of ${pool.subnet}`);
    if (addr === parseIP(pool.gateway).addr) throw conflict(`${ip} is the gateway of network ${network}`, 'ip');
    const aux = Object.entries(pool.auxAddresses).find(([, a]) => a === ip);
    if (aux !== undefined) throw conflict(`${ip} is reserved as aux address '${aux[0]}' of network ${network}`, 'ip');

    const key = allocKey(network, family, addr);
    const res = await this.store.txn(
      [{ key, modRevision: 0 }, poolGuard],
      [{ put: key, value: owner }, { put: ownerKey(owner, network, family, addr), value: network }],
    );
    if (res.ok) return ip;
    const holder = await this.store.get(key);
    if (holder === undefined) return undefined;
    if (holder.value === owner) return ip;
    throw conflict(`${ip} is already in use by endpoint ${holder.value}`, 'ip');
  }

  private async allocateNext(network: string, pools: Pool[], owner: string, poolGuard: Compare): Promise<string | undefined> {
    for (const pool of pools) {
      const r = rangeOf(pool);
      const ck = cursorKey(network, pool.subnet);
      const cursor = await this.store.get(ck);
      const last = cursor === undefined ? undefined : parseIP(cursor.value).addr;
      const addr = await this.findFree(network, r, last);
      if (addr === undefined) continue;
      const ip = formatIP(r.family, addr);
      const key = allocKey(network, r.family, addr);
      const res = await this.store.txn(
        [{ key, modRevision: 0 }, { key: ck, modRevision: cursor?.modRevision ?? 0 }, poolGuard],
        [{ put: key, value: owner }, { put: ownerKey(owner, network, r.family, addr), value: network }, { put: ck, value: ip }],
      );
      return res.ok ? ip : undefined;
    }
    const names = pools.length === 1 ? `pool ${describePool(pools[0] as Pool)}` : `pools ${pools.map(describePool).join(', ')}`;
    // Exhausted means every address of the ranges is allocated or reserved.
    const inUse = pools.reduce((n, q) => n + Number(rangeOf(q).last - rangeOf(q).first + 1n), 0);
    throw new KnitError('exhausted', `${names} of network ${network} ${pools.length === 1 ? 'has' : 'have'} no free address (${inUse} in use)`);
  }

  /** The first free address after `after` (wrapping), or undefined when the range is full. */
  private async findFree(network: string, r: PoolRange, after: bigint | undefined): Promise<bigint | undefined> {
    const start = after === undefined || after < r.first || after >= r.last ? r.first : after + 1n;
    return (await this.scan(network, r, start, r.last)) ?? (start > r.first ? this.scan(network, r, r.first, start - 1n) : undefined);
  }

  /** Walks allocation keys of [lo, hi] in order and returns the first gap that is not reserved. */
  private async scan(network: string, r: PoolRange, lo: bigint, hi: bigint): Promise<bigint | undefined> {
    const skipReserved = (a: bigint): bigint => {
      while (r.reserved.has(a)) a++;
      return a;
    };
    let x = skipReserved(lo);
    let from = allocKey(network, r.family, lo);
    const end = `${allocKey(network, r.family, hi)}\0`;
    const prefix = allocPrefix(network);
    while (x <= hi) {
      const rows = await this.store.range(from, end, { limit: SCAN_BATCH });
      // A full batch of distinct keys spanning exactly SCAN_BATCH addresses
      // from x is a dense run: skip it without looking at every row.
      const head = rows.length === SCAN_BATCH ? parseSortableIP((rows[0] as KV).key.slice(prefix.length)) : undefined;
      const tail = head === undefined ? undefined : parseSortableIP((rows[SCAN_BATCH - 1] as KV).key.slice(prefix.length));
      if (head?.addr === x && tail?.family === r.family && tail.addr - x === BigInt(SCAN_BATCH - 1)) {
        x = skipReserved(tail.addr + 1n);
        from = `${(rows[SCAN_BATCH - 1] as KV).key}\0`;
        continue;
      }
      for (const kv of rows) {
        const a = parseSortableIP(kv.key.slice(prefix.length));
        if (a === undefined || a.family !== r.family || a.addr < x) continue;
        if (a.addr > x) return x;
        x = skipReserved(x + 1n);
        if (x > hi) return undefined;
      }
      if (rows.length < SCAN_BATCH) return x <= hi ? x : undefined;
      from = `${(rows[rows.length - 1] as KV).key}\0`;
    }
    return undefined;
  }

  private async releaseIf(network: string, ip: string, owner: string | undefined): Promise<void> {
    const { family, addr } = parseIP(canonicalIP(ip, 'ip'), 'ip');
    const key = allocKey(network, family, addr);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const kv = await this.store.get(key);
      if (kv === undefined || (owner !== undefined && kv.value !== owner)) {
        // Nothing to free here, but a stale reverse-index entry may remain.
        if (owner !== undefined) await this.store.txn([], [{ delete: ownerKey(owner, network, family, addr) }]);
        return;
      }
      const res = await this.store.txn([{ key, modRevision: kv.modRevision }], [{ delete: key }, { delete: ownerKey(kv.value, network, family, addr) }]);
      if (res.ok) return;
    }
    throw this.contended(`releasing ${ip} on network ${network}`);
  }

  /** Runs `fn` after every earlier call queued under `key` in this process. */
  private queued<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(key) ?? Promise.resolve();
    const result = prev.then(fn);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return result;
  }

  private contended(what: string): KnitError {
    return new KnitError('unavailable', `${what}: gave up after ${MAX_ATTEMPTS} conflicting writes; the store is too busy, try again`);
  }
}
