// Docker's remote IpamDriver over Knit's Ipam. RequestPool comes before the
// network exists, so a pool is reserved in the Ipam under its own key
// (overlap checks then see it); CreateNetwork hands the reservation to the
// network. Endpoint addresses are allocated to a pending owner until Join
// gives them to the endpoint.
import { randomBytes } from 'node:crypto';
import type { Engine } from '../engine/engine.ts';
import { KnitError, invalid, notFound } from '../lib/errors.ts';
import { familyOf, parsePrefix } from '../lib/ip.ts';
import { findOverlap } from '../ipam/overlap.ts';
import { validateSubnets } from '../ipam/pool.ts';
import { DockerRecords, addressHolder, pendingOwner, reservationKey, type DockerPool } from './records.ts';
import {
  GATEWAY_REQUEST,
  GLOBAL_ADDRESS_SPACE,
  LOCAL_ADDRESS_SPACE,
  PoolRef,
  ReleaseAddressRequest,
  RequestAddressRequest,
  RequestPoolRequest,
  parseRequest,
  stripLen,
} from './translate.ts';

/** Builds `pool X` for messages: the Knit network name once there is one. */
type Reply = Record<string, unknown>;

export class DockerIpamDriver {
  readonly engine: Engine;
  readonly records: DockerRecords;

  constructor(engine: Engine, records: DockerRecords) {
    this.engine = engine;
    this.records = records;
  }

  capabilities(): Reply {
    // Knit persists pools and addresses: no replay needed; MACs come from the driver.
    return { RequiresMACAddress: false, RequiresRequestReplay: false };
  }

  defaultAddressSpaces(): Reply {
    return { LocalDefaultAddressSpace: LOCAL_ADDRESS_SPACE, GlobalDefaultAddressSpace: GLOBAL_ADDRESS_SPACE };
  }

  async requestPool(body: unknown): Promise<Reply> {
    const req = parseRequest(RequestPoolRequest, body, 'RequestPool');
    if (req.AddressSpace && req.AddressSpace !== LOCAL_ADDRESS_SPACE && req.AddressSpace !== GLOBAL_ADDRESS_SPACE) {
      throw invalid('AddressSpace', `'${req.AddressSpace}' is not one of Knit's address spaces (${LOCAL_ADDRESS_SPACE}, ${GLOBAL_ADDRESS_SPACE})`);
    }
    const unknown = Object.keys(req.Options);
    if (unknown.length) throw invalid(`ipam-opt ${unknown[0]}`, 'Knit\'s IPAM takes no --ipam-opt options');
    if (!req.Pool && req.SubPool) throw invalid('ip-range', `--ip-range ${req.SubPool} needs --subnet`);
    const want = req.V6 ? 6 : 4;
    if (req.Pool) {
      const p = parsePrefix(req.Pool, 'subnet', false);
      if (p.family !== want) throw invalid('subnet', `${req.Pool} is ${p.family === 6 ? 'IPv6' : 'IPv4'} but dockerd asked for an ${want === 6 ? 'IPv6' : 'IPv4'} pool`);
      validateSubnets([{ subnet: req.Pool, ...(req.SubPool ? { ipRange: req.SubPool } : {}) }], 'subnet');
      await this.checkOverlap(req.Pool);
    }
    const id = randomBytes(12).toString('hex');
    const reserved = await this.engine.ipam.createNetwork(reservationKey(id), {
      pools: req.Pool ? [{ subnet: req.Pool, ...(req.SubPool ? { ipRange: req.SubPool } : {}) }] : [],
      ipv4: want === 4,
      ipv6: want === 6,
      hostRoutes: this.engine.hostRoutes(),
    });
    const pool = reserved.pools[0];
    if (!pool) throw new KnitError('internal', 'the IPAM returned no pool');
    const rec: DockerPool = {
      id,
      subnet: pool.subnet,
      v6: want === 6,
      created: new Date().toISOString(),
      ...(pool.ipRange ? { ipRange: pool.ipRange } : {}),
    };
    try {
      await this.records.putPool(rec);
    } catch (err) {
      await this.engine.ipam.deleteNetwork(reservationKey(id));
      throw err;
    }
    return { PoolID: id, Pool: pool.subnet, Data: {} };
  }

  async releasePool(body: unknown): Promise<Reply> {
    const { PoolID } = parseRequest(PoolRef, body, 'ReleasePool');
    const pool = await this.records.pool(PoolID);
    if (!pool) return {};
    if (!pool.networkId) await this.engine.ipam.deleteNetwork(reservationKey(PoolID));
    await this.records.deletePool(PoolID);
    return {};
  }

  async requestAddress(body: unknown): Promise<Reply> {
    const req = parseRequest(RequestAddressRequest, body, 'RequestAddress');
    const pool = await this.records.pool(req.PoolID);
    if (!pool) throw notFound(`address pool ${req.PoolID} is not known to Knit (released already?)`);
    const len = parsePrefix(pool.subnet).len;
    const addr = req.Address ? stripLen(req.Address) : '';
    if (addr && familyOf(addr) !== (pool.v6 ? 6 : 4)) throw invalid('ip', `${addr} is not an address of pool ${pool.subnet}`);
    const isGateway = req.Options.RequestAddressType === GATEWAY_REQUEST;

    if (isGateway) {
      if (pool.networkId) {
        // A repeated gateway request: answer with what the network has.
        const net = (await this.engine.state.networks()).find((n) => n.id === pool.networkId);
        const gw = net?.subnets.find((s) => s.subnet === pool.subnet)?.gateway;
        if (gw) return { Address: `${gw}/${len}`, Data: {} };
      }
      const [checked] = validateSubnets([{ subnet: pool.subnet, ...(addr ? { gateway: addr } : {}), ...(pool.ipRange ? { ipRange: pool.ipRange } : {}) }], 'gateway');
      const gateway = checked?.gateway as string;
      await this.records.putPool({ ...pool, gateway });
      return { Address: `${gateway}/${len}`, Data: {} };
    }

    if (!pool.networkId) {
      // Before CreateNetwork only aux addresses are asked for; CreateNetwork reserves them by name.
      if (!addr) throw invalid('address', `pool ${pool.subnet} has no network yet; only its gateway and aux addresses can be requested`);
      validateSubnets([{ subnet: pool.subnet, ...(pool.gateway ? { gateway: pool.gateway } : {}), auxAddresses: { aux: addr } }], 'aux-address');
      return { Address: `${addr}/${len}`, Data: {} };
    }

    const ip = await this.engine.ipam.allocate(pool.networkId, {
      family: pool.v6 ? 6 : 4,
      owner: pendingOwner(req.PoolID, randomBytes(6).toString('hex')),
      ...(addr ? { ip: addr } : {}),
    });
    return { Address: `${ip}/${len}`, Data: {} };
  }

  async releaseAddress(body: unknown): Promise<Reply> {
    const req = parseRequest(ReleaseAddressRequest, body, 'ReleaseAddress');
    const pool = await this.records.pool(req.PoolID);
    if (!pool?.networkId || !req.Address) return {};
    const ip = stripLen(req.Address);
    const owner = await addressHolder(this.engine.state.store, pool.networkId, ip);
    // An endpoint's address is freed with the endpoint (DeleteEndpoint comes first);
    // only what no live endpoint holds is Docker's to release here.
    if (owner !== undefined && (isPending(owner) || !(await this.engine.endpoint(owner)))) {
      await this.engine.ipam.release(pool.networkId, ip);
    }
    return {};
  }

  /** Refuses a subnet that overlaps a Knit network or a pending Docker pool, naming it. */
  private async checkOverlap(subnet: string): Promise<void> {
    const names = new Map((await this.engine.state.networks()).map((n) => [n.id, `network '${n.name}'`]));
    const others = (await this.engine.ipam.listNetworks('default')).map((r) => ({
      network: names.get(r.network) ?? (r.network.startsWith('docker-pool-') ? 'a pool reserved for another docker network' : `network ${r.network}`),
      subnets: r.pools.map((p) => p.subnet),
    }));
    const clash = findOverlap([subnet], others);
    if (clash) throw new KnitError('conflict', `subnet ${clash.subnet} overlaps ${clash.other} of ${clash.network}; choose another --subnet`, { field: 'subnet' });
  }

  /**
   * After a restart and reconcile (which frees reservations and addresses no
   * record names): put back what Docker still holds.
   */
  async restore(log: (m: string) => void): Promise<void> {
    for (const pool of await this.records.allPools()) {
      if (pool.networkId) continue;
      if (await this.engine.ipam.getNetwork(reservationKey(pool.id))) continue;
      try {
        await this.engine.ipam.createNetwork(reservationKey(pool.id), {
          pools: [{ subnet: pool.subnet, ...(pool.ipRange ? { ipRange: pool.ipRange } : {}) }],
          ipv4: !pool.v6,
          ipv6: pool.v6,
        });
      } catch (err) {
        log(`docker: cannot restore pool ${pool.subnet}: ${(err as Error).message}`);
      }
    }
  }
}

export function isPending(owner: string): boolean {
  return owner.startsWith('docker-pending:');
}
