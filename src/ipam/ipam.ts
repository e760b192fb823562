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
// cursor: a first read of a few keys normally answers (the address after the
// cursor is free, or one of the next few is), then a few hundred per read; a
// pool with 60k addresses in use costs at most ~120 reads, never a read per
// address, and an allocation never reads every address of its network.
//
// The decoded pools and cursors of a network stay in memory (view.ts) between
// calls; writes compare their modRevisions, so a stale copy costs one failed
// write and a re-read, never a wrong answer.
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
  ownerNetworkPrefix,
  ownerPrefix,
  parseOwnerKey,
  parseSortableIP,
  tenantKey,
} from './keys.ts';
import { checkOverlap } from './overlap.ts';
import { describePool, familyName, usableBounds, validateSubnets, type PoolRange, type PoolSpec } from './pool.ts';
import { poolsOf, viewOf, type NetworkView, type PoolView } from './view.ts';

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

/** An allocation as the owner index has it; modRevision is the index entry's (and so the allocation's, written with it). */
interface IndexedAllocation extends Allocation {
  addr: bigint;
  modRevision: number;
}

/** Rows of the first range read while looking for a free address: usually one of them is followed by a gap. */
const FIRST_BATCH = 8;
/** Rows per later range read, once the first met a run of allocated addresses. */
const SCAN_BATCH = 512;
/** Compare-and-set attempts before giving up; each failure means another writer made progress. */
const MAX_ATTEMPTS = 1000;

export class Ipam {
  private readonly store: Store;
  private readonly networks: Records<NetworkPools>;
  private readonly queues = new Map<string, Promise<void>>();
  /** Decoded pools and cursors by network; changed only inside that network's queue. */
  private readonly views = new Map<string, NetworkView>();

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
        if (res.ok) {
          this.views.delete(network);
          return value;
        }
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
      this.views.delete(network);
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
        const cached = this.views.get(network);
        const view = cached ?? (await this.loadView(network));
        try {
          const done = await this.allocateIn(network, view, req, want?.addr);
          if (done !== undefined) return done;
        } catch (err) {
          // An error judged on a copy from an earlier call is judged again on a fresh one.
          if (cached === undefined || !(err instanceof KnitError)) throw err;
        }
        // A write failed (or a copy's error is to be checked): read the network again.
        this.views.delete(network);
        if (cached === undefined) await new Promise((resolve) => setImmediate(resolve));
      }
      throw this.contended(`allocating an address on network ${network}`);
    });
  }

  /**
   * Hands `ip` from `fromOwner` to `toOwner` in one write, e.g. the address
   * Docker's RequestAddress gave a pending owner passing to the endpoint at
   * Join. Idempotent: done when `toOwner` holds it already. Refuses an address
   * that is free or held by someone else, and a `toOwner` that already has
   * another address of that family on the network (as allocate would).
   */
  async transfer(network: string, ip: string, fromOwner: string, toOwner: string): Promise<void> {
    if (toOwner === '') throw invalid('owner', 'an allocation needs an owner (the endpoint id)');
    const { family, addr } = parseIP(canonicalIP(ip, 'ip'), 'ip');
    const key = allocKey(network, family, addr);
    const text = formatIP(family, addr);
    await this.queued(network, async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const kv = await this.store.get(key);
        if (kv?.value === toOwner) return;
        if (kv === undefined) throw notFound(`${text} is not allocated on network ${network}, so it cannot pass from ${fromOwner} to ${toOwner}`);
        if (kv.value !== fromOwner) throw conflict(`${text} on network ${network} is held by ${kv.value}, not ${fromOwner}`, 'ip');
        const other = (await this.heldOn(toOwner, network)).find((a) => a.family === family);
        if (other !== undefined) throw conflict(`endpoint ${toOwner} already has ${other.ip} on network ${network}; release it before taking ${text}`, 'ip');
        const res = await this.store.txn(
          [{ key, modRevision: kv.modRevision }],
          [{ put: key, value: toOwner }, { delete: ownerKey(fromOwner, network, family, addr) }, { put: ownerKey(toOwner, network, family, addr), value: network }],
        );
        if (res.ok) return;
      }
      throw this.contended(`passing ${text} on network ${network} to ${toOwner}`);
    });
  }

  /** Frees an address; a free or unknown address is fine. */
  async release(network: string, ip: string): Promise<void> {
    await this.releaseIf(network, ip, undefined);
  }

  /** Frees every address `owner` holds (on one network, or on all). */
  async releaseOwner(owner: string, network?: string): Promise<void> {
    const held = await this.indexed(owner, network === undefined ? ownerPrefix(owner) : ownerNetworkPrefix(owner, network));
    if (held.length === 0) return;
    // One write for all of them. An index entry and its allocation are always
    // written in one transaction, so an allocation whose modRevision is still
    // the entry's is the one the entry names, held by `owner`.
    const compares = held.map((a) => ({ key: allocKey(a.network, a.family, a.addr), modRevision: a.modRevision }));
    const ops: Op[] = held.flatMap((a) => [{ delete: allocKey(a.network, a.family, a.addr) }, { delete: ownerKey(owner, a.network, a.family, a.addr) }]);
    if ((await this.store.txn(compares, ops)).ok) return;
    // A stale entry or a concurrent change: one address at a time.
    for (const a of held) await this.releaseIf(a.network, a.ip, owner);
  }

  /** The addresses an owner holds, from the reverse index. */
  async addressesOf(owner: string): Promise<Allocation[]> {
    return (await this.indexed(owner, ownerPrefix(owner))).map(({ network, ip, family }) => ({ network, ip, family, owner }));
  }

  /** The owner's addresses on one network, with their index entries' modRevisions. */
  private heldOn(owner: string, network: string): Promise<IndexedAllocation[]> {
    return this.indexed(owner, ownerNetworkPrefix(owner, network));
  }

  private async indexed(owner: string, prefix: string): Promise<IndexedAllocation[]> {
    const out: IndexedAllocation[] = [];
    for (const kv of await this.store.list(prefix)) {
      const k = parseOwnerKey(kv.key, owner);
      if (k !== undefined) out.push({ ...k, owner, modRevision: kv.modRevision });
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

  private async loadView(network: string): Promise<NetworkView> {
    const rec = await this.networks.get(network);
    if (rec === undefined) throw notFound(`network ${network} has no IPAM pools`);
    const view = viewOf(rec.value.pools, rec.modRevision);
    this.views.set(network, view);
    return view;
  }

  /** The address, or undefined when a write lost to another writer (retry on a fresh view). */
  private async allocateIn(network: string, view: NetworkView, req: AllocateRequest, want: bigint | undefined): Promise<string | undefined> {
    const pools = poolsOf(view, req.family);
    if (pools.length === 0) {
      throw invalid('family', `network ${network} has no ${familyName(req.family)} subnet (it has ${view.pools.map((p) => p.pool.subnet).join(', ')})`);
    }
    const held = (await this.heldOn(req.owner, network)).find((a) => a.family === req.family);
    if (held !== undefined) {
      if (want !== undefined && held.addr !== want) {
        throw conflict(`endpoint ${req.owner} already has ${held.ip} on network ${network}; release it before asking for ${req.ip}`, 'ip');
      }
      return held.ip;
    }
    const poolGuard: Compare = this.networks.compare(network, view.modRevision);
    return want === undefined
      ? this.allocateNext(network, pools, req.owner, poolGuard)
      : this.allocateStatic(network, pools, want, req.owner, poolGuard);
  }

  private async allocateStatic(network: string, pools: PoolView[], addr: bigint, owner: string, poolGuard: Compare): Promise<string | undefined> {
    const family = (pools[0] as PoolView).range.family;
    const ip = formatIP(family, addr);
    const p = pools.find((q) => contains(q.range.subnet, family, addr));
    if (p === undefined) {
      throw invalid('ip', `${ip} is not within the ${familyName(family)} subnets of network ${network} (${pools.map((q) => q.pool.subnet).join(', ')})`);
    }
    const { lo, hi } = usableBounds(p.range.subnet);
    if (addr < lo || addr > hi) throw invalid('ip', `${ip} is the ${addr === p.range.subnet.addr ? 'network' : 'broadcast'} address of ${p.pool.subnet}`);
    if (addr === p.gateway) throw conflict(`${ip} is the gateway of network ${network}`, 'ip');
    const aux = Object.entries(p.pool.auxAddresses).find(([, a]) => a === ip);
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

  private async allocateNext(network: string, pools: PoolView[], owner: string, poolGuard: Compare): Promise<string | undefined> {
    for (const p of pools) {
      const r = p.range;
      const ck = cursorKey(network, p.pool.subnet);
      if (p.cursor === undefined) {
        const kv = await this.store.get(ck);
        p.cursor = { last: kv === undefined ? undefined : parseIP(kv.value).addr, modRevision: kv?.modRevision ?? 0 };
      }
      const addr = await this.findFree(network, r, p.cursor.last);
      if (addr === undefined) continue;
      const ip = formatIP(r.family, addr);
      const key = allocKey(network, r.family, addr);
      const res = await this.store.txn(
        [{ key, modRevision: 0 }, { key: ck, modRevision: p.cursor.modRevision }, poolGuard],
        [{ put: key, value: owner }, { put: ownerKey(owner, network, r.family, addr), value: network }, { put: ck, value: ip }],
      );
      if (!res.ok) return undefined;
      p.cursor = { last: addr, modRevision: res.revision };
      return ip;
    }
    const names = pools.length === 1 ? `pool ${describePool((pools[0] as PoolView).pool)}` : `pools ${pools.map((q) => describePool(q.pool)).join(', ')}`;
    // Exhausted means every address of the ranges is allocated or reserved.
    const inUse = pools.reduce((n, q) => n + Number(q.range.last - q.range.first + 1n), 0);
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
    let batch = FIRST_BATCH;
    while (x <= hi) {
      const rows = await this.store.range(from, end, { limit: batch });
      // A full batch of distinct keys spanning exactly `batch` addresses
      // from x is a dense run: skip it without looking at every row.
      const head = rows.length === batch ? parseSortableIP((rows[0] as KV).key.slice(prefix.length)) : undefined;
      const tail = head === undefined ? undefined : parseSortableIP((rows[batch - 1] as KV).key.slice(prefix.length));
      if (head?.addr === x && tail?.family === r.family && tail.addr - x === BigInt(batch - 1)) {
        x = skipReserved(tail.addr + 1n);
        from = `${(rows[batch - 1] as KV).key}\0`;
        batch = SCAN_BATCH;
        continue;
      }
      for (const kv of rows) {
        const a = parseSortableIP(kv.key.slice(prefix.length));
        if (a === undefined || a.family !== r.family || a.addr < x) continue;
        if (a.addr > x) return x;
        x = skipReserved(x + 1n);
        if (x > hi) return undefined;
      }
      if (rows.length < batch) return x <= hi ? x : undefined;
      from = `${(rows[rows.length - 1] as KV).key}\0`;
      batch = SCAN_BATCH;
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
