// What Docker asked for that Knit's engine has no record of yet: pools
// (RequestPool comes before the network exists) and endpoints between
// CreateEndpoint and Join (no sandbox yet). dockerd never replays either,
// so they live in Knit's store and survive a restart of the daemon.
import * as z from 'zod';
import type { Store } from '../store/store.ts';
import { Records } from '../store/records.ts';
import { allocKey } from '../ipam/keys.ts';
import { parseIP } from '../lib/ip.ts';

export const DockerPool = z.object({
  id: z.string(),
  subnet: z.string(),
  ipRange: z.string().optional(),
  v6: z.boolean(),
  /** Gateway Docker requested (or Knit chose) before the network existed. */
  gateway: z.string().optional(),
  /** Set by CreateNetwork: from then on addresses come from the network. */
  networkId: z.string().optional(),
  created: z.string(),
});
export type DockerPool = z.infer<typeof DockerPool>;

export const DockerEndpoint = z.object({
  id: z.string(),
  networkId: z.string(),
  ipv4: z.string().optional(),
  ipv6: z.string().optional(),
  mac: z.string(),
  created: z.string(),
});
export type DockerEndpoint = z.infer<typeof DockerEndpoint>;

/**
 * Knit's daemon is the only writer of these keys, so reads come from an
 * in-memory copy loaded once and kept up to date write-through (as the
 * engine's State does): a plugin call reads its pool or endpoint without a
 * store read and a schema check, and a write needs no read of the revision
 * first. The copy changes only after the store write succeeded.
 */
export class DockerRecords {
  readonly #pools: Records<DockerPool>;
  readonly #endpoints: Records<DockerEndpoint>;
  readonly #store: Store;
  #cache: Promise<{ pools: Map<string, DockerPool>; endpoints: Map<string, DockerEndpoint> }> | undefined;

  constructor(store: Store) {
    this.#store = store;
    this.#pools = new Records(store, 'docker-pools', DockerPool);
    this.#endpoints = new Records(store, 'docker-endpoints', DockerEndpoint);
  }

  #load() {
    this.#cache ??= (async () => ({
      pools: new Map((await this.#pools.list()).map((r) => [r.id, r.value])),
      endpoints: new Map((await this.#endpoints.list()).map((r) => [r.id, r.value])),
    }))();
    return this.#cache;
  }

  async pool(id: string): Promise<DockerPool | undefined> {
    return (await this.#load()).pools.get(id);
  }

  async allPools(): Promise<DockerPool[]> {
    return [...(await this.#load()).pools.values()];
  }

  async putPool(p: DockerPool): Promise<void> {
    const c = await this.#load();
    await this.#store.txn([], [this.#pools.putOp(p.id, p)]);
    c.pools.set(p.id, p);
  }

  async deletePool(id: string): Promise<void> {
    const c = await this.#load();
    await this.#pools.delete(id);
    c.pools.delete(id);
  }

  async endpoint(id: string): Promise<DockerEndpoint | undefined> {
    return (await this.#load()).endpoints.get(id);
  }

  async allEndpoints(): Promise<DockerEndpoint[]> {
    return [...(await this.#load()).endpoints.values()];
  }

  async putEndpoint(e: DockerEndpoint): Promise<void> {
    const c = await this.#load();
    await this.#store.txn([], [this.#endpoints.putOp(e.id, e)]);
    c.endpoints.set(e.id, e);
  }

  async deleteEndpoint(id: string): Promise<void> {
    const c = await this.#load();
    // An id never recorded (DeleteEndpoint repeated, or for a foreign endpoint) costs no write.
    if (!c.endpoints.has(id)) return;
    await this.#endpoints.delete(id);
    c.endpoints.delete(id);
  }
}

/** The Ipam key under which a pool is reserved before its network exists. */
export function reservationKey(poolId: string): string {
  return `docker-pool-${poolId}`;
}

/** The owner of an address Docker requested before an endpoint holds it. */
export function pendingOwner(poolId: string, ip: string): string {
  return `docker-pending:${poolId}:${ip}`;
}

/**
 * Who holds `ip` on the network in Knit's Ipam (undefined: free). One key
 * read, where Ipam.allocations() reads and parses every address of the
 * network: a plugin call on a network with many containers stays as cheap as
 * on an empty one.
 */
export async function addressHolder(store: Store, network: string, ip: string): Promise<string | undefined> {
  const { family, addr } = parseIP(ip, 'ip');
  return (await store.get(allocKey(network, family, addr)))?.value;
}
