// What Docker asked for that Knit's engine has no record of yet: pools
// (RequestPool comes before the network exists) and endpoints between
// CreateEndpoint and Join (no sandbox yet). dockerd never replays either,
// so they live in Knit's store and survive a restart of the daemon.
import * as z from 'zod';
import type { Store } from '../store/store.ts';
import { Records } from '../store/records.ts';

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

export class DockerRecords {
  readonly pools: Records<DockerPool>;
  readonly endpoints: Records<DockerEndpoint>;

  constructor(store: Store) {
    this.pools = new Records(store, 'docker-pools', DockerPool);
    this.endpoints = new Records(store, 'docker-endpoints', DockerEndpoint);
  }

  async pool(id: string): Promise<DockerPool | undefined> {
    return (await this.pools.get(id))?.value;
  }

  async allPools(): Promise<DockerPool[]> {
    return (await this.pools.list()).map((r) => r.value);
  }

  async putPool(p: DockerPool): Promise<void> {
    const cur = await this.pools.get(p.id);
    await this.pools.put(p.id, p, cur?.modRevision ?? 0);
  }

  async endpoint(id: string): Promise<DockerEndpoint | undefined> {
    return (await this.endpoints.get(id))?.value;
  }

  async putEndpoint(e: DockerEndpoint): Promise<void> {
    const cur = await this.endpoints.get(e.id);
    await this.endpoints.put(e.id, e, cur?.modRevision ?? 0);
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
