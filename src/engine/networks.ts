// Creating and removing networks: the record (pending), its IPAM pools and
// the driver's kernel objects; a failed create undoes them in reverse.
import type { NetworkView } from '../model/api.ts';
import type { NetworkPools } from '../ipam/ipam.ts';
import { checkName, NetworkCreate as NetworkCreateSchema } from '../model/index.ts';
import { conflict, invalid } from '../lib/errors.ts';
import { driverFor } from '../drivers/index.ts';
import { newId } from './ids.ts';
import { planNetwork, requestedPools } from './plan-network.ts';
import { networkView } from './views.ts';
import { parseInput } from './checks.ts';
import { findNetwork } from './lookups.ts';
import { type EngineContext, undo } from './context.ts';

/** Engine.createNetwork: `adoptIpam` names IPAM reservations the network takes over. */
export async function createNetwork(ctx: EngineContext, input: unknown, opts: { adoptIpam?: string[] }): Promise<NetworkView> {
  const req = parseInput(NetworkCreateSchema, input, 'network');
  return ctx.mutex.run(async () => {
    checkName('name', req.name);
    const existing = await ctx.state.network(req.name);
    if (existing) throw conflict(`network '${req.name}' already exists`, 'name');
    const net = planNetwork(req, newId);
    const driver = driverFor(net.driver); // refuse a driver this build lacks before anything is written
    const all = await ctx.state.networks();
    const clash = net.bridge ? all.find((n) => n.bridge === net.bridge) : undefined;
    if (clash) throw conflict(`bridge name '${net.bridge}' is used by network '${clash.name}'`, 'opt bridge');
    const adopted = await dropReservations(ctx, opts.adoptIpam ?? []);
    if (driver.usesIpam) {
      const pools = await ctx.ipam.createNetwork(net.id, {
        tenant: net.tenant,
        pools: requestedPools(req),
        ipv6: net.ipv6,
        hostRoutes: ctx.host.routes(),
      }).catch(async (err: unknown) => {
        await restoreReservations(ctx, adopted);
        throw err;
      });
      net.subnets = pools.pools.map((p) => ({
        subnet: p.subnet,
        gateway: p.gateway,
        auxAddresses: p.auxAddresses,
        ...(p.ipRange ? { ipRange: p.ipRange } : {}),
      }));
    }
    try {
      await ctx.state.putNetwork(net, true);
    } catch (err) {
      await ctx.ipam.deleteNetwork(net.id);
      await restoreReservations(ctx, adopted);
      throw err;
    }
    try {
      await driver.createNetwork(ctx.host, net);
    } catch (err) {
      await undo(`network ${net.name}`, [
        () => driver.deleteNetwork(ctx.host, net),
        () => ctx.ipam.deleteNetwork(net.id),
        () => ctx.state.deleteNetwork(net.name),
        () => restoreReservations(ctx, adopted),
      ]);
      throw err;
    }
    ctx.emit('network-up', net);
    return networkView(net, [], new Map());
  });
}

export async function deleteNetwork(ctx: EngineContext, ref: string): Promise<void> {
  await ctx.mutex.run(async () => {
    const net = await findNetwork(ctx.state, ref);
    if (net.origin === 'builtin') throw invalid('network', `'${net.name}' is a built-in network and cannot be removed`);
    const eps = (await ctx.state.endpoints()).filter((e) => e.networkId === net.id);
    if (eps.length > 0) {
      const sbs = new Map((await ctx.state.sandboxes()).map((s) => [s.id, s.name]));
      const names = eps.map((e) => sbs.get(e.sandboxId) ?? e.sandboxId).join(', ');
      throw conflict(`network '${net.name}' has active endpoints (${names}); disconnect them or remove those sandboxes first`);
    }
    await driverFor(net.driver).deleteNetwork(ctx.host, net);
    await ctx.ipam.deleteNetwork(net.id);
    await ctx.state.deleteNetwork(net.name);
    ctx.emit('network-down', net);
  });
}

async function dropReservations(ctx: EngineContext, keys: string[]): Promise<NetworkPools[]> {
  const saved: NetworkPools[] = [];
  for (const key of keys) {
    const r = await ctx.ipam.getNetwork(key);
    if (!r) continue;
    saved.push(r);
    await ctx.ipam.deleteNetwork(key);
  }
  return saved;
}

async function restoreReservations(ctx: EngineContext, saved: NetworkPools[]): Promise<void> {
  for (const r of saved) {
    await ctx.ipam.createNetwork(r.network, { tenant: r.tenant, pools: r.pools, ipv4: r.pools.some((p) => !p.subnet.includes(':')), ipv6: r.pools.some((p) => p.subnet.includes(':')) });
  }
}
