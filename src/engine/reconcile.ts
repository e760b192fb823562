// Makes the kernel match the store after a start, a crash or drift:
// half-done operations are undone, every network and ready endpoint is
// realized again (a recreated endpoint keeps its MAC), the firewall table is
// rebuilt atomically, and Knit-owned leftovers nothing refers to are removed.
import type { Engine } from './engine.ts';
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import { driverFor } from '../drivers/index.ts';
import { parseOwnerAlias } from '../drivers/driver.ts';
import { firewallNetwork } from '../drivers/common.ts';
import { fastpathPorts } from '../drivers/bridge-port.ts';
import { firewallPorts } from './published-ports.ts';
import { createNetns, isNetns } from '../kernel/netns.ts';
import { deleteLink, listLinks } from '../kernel/link.ts';
import { messageOf } from '../lib/errors.ts';

export interface ReconcileReport {
  undoneSandboxes: string[];
  undoneEndpoints: string[];
  recreatedNetns: string[];
  repairedEndpoints: string[];
  removedLinks: string[];
  releasedAddresses: number;
  errors: string[];
}

export async function reconcile(engine: Engine): Promise<ReconcileReport> {
  return engine.exclusive(async () => {
    const r: ReconcileReport = {
      undoneSandboxes: [],
      undoneEndpoints: [],
      recreatedNetns: [],
      repairedEndpoints: [],
      removedLinks: [],
      releasedAddresses: 0,
      errors: [],
    };
    const { state, host } = engine;
    const attempt = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        r.errors.push(`${what}: ${messageOf(err)}`);
      }
    };

    // 1. Undo what a crash left half-done.
    for (const sb of await state.sandboxes()) {
      if (sb.state !== 'pending') continue;
      await attempt(`undo sandbox ${sb.name}`, () => engine.removeSandboxLocked(sb));
      r.undoneSandboxes.push(sb.name);
    }
    const sandboxes = new Map((await state.sandboxes()).map((s) => [s.id, s]));
    for (const ep of await state.endpoints()) {
      const sb = sandboxes.get(ep.sandboxId);
      if (ep.state === 'ready' && sb) continue;
      await attempt(`undo endpoint ${ep.id.slice(0, 12)}`, () => engine.removeEndpointLocked(ep, sb));
      r.undoneEndpoints.push(ep.id);
    }

    const networks = await state.networks();
    const endpoints = await state.endpoints();
    const netById = new Map(networks.map((n) => [n.id, n]));

    // 2. Pools of networks that were never recorded, and addresses whose owner is gone.
    await attempt('release orphaned addresses', async () => {
      const netIds = new Set(networks.map((n) => n.id));
      for (const pools of await engine.ipam.listNetworks()) {
        if (!netIds.has(pools.network)) await engine.ipam.deleteNetwork(pools.network);
      }
      const owners = new Set<string>(endpoints.map((e) => e.id));
      for (const net of networks) {
        for (const a of await engine.ipam.allocations(net.id)) {
          if (owners.has(a.owner)) continue;
          await engine.ipam.release(net.id, a.ip);
          r.releasedAddresses++;
        }
      }
    });

    // 3. The firewall tables, rebuilt whole from the records (and the fast path from the ports there are).
    await attempt('firewall', () =>
      host.firewall.ensure({
        networks: networks.filter((n) => n.driver === 'bridge').map(firewallNetwork),
        ports: endpoints.flatMap((e) => (netById.has(e.networkId) ? firewallPorts(e) : [])),
        fastpath: fastpathPorts(listLinks(host.nl), networks, endpoints),
      }),
    );

    // 4. Networks, then the namespaces Knit owns, then endpoints.
    for (const net of networks) await attempt(`network ${net.name}`, () => driverFor(net.driver).createNetwork(host, net));
    for (const sb of sandboxes.values()) {
      if (sb.ownsNetns && !isNetns(sb.netnsPath)) {
        await attempt(`netns of ${sb.name}`, () => createNetns(sb.netnsPath));
        r.recreatedNetns.push(sb.name);
      }
    }
    for (const ep of endpoints) {
      const net = netById.get(ep.networkId);
      const sb = sandboxes.get(ep.sandboxId);
      if (!net || !sb || !isNetns(sb.netnsPath)) continue; // an adopted namespace that is gone: its runtime will DEL
      const driver = driverFor(net.driver);
      if (driver.check(host, net, sb, ep).length === 0) continue;
      await attempt(`endpoint ${ep.id.slice(0, 12)}`, () => driver.attach(host, net, sb, ep));
      r.repairedEndpoints.push(`${sb.name}/${net.name}`);
    }

    // 5. Knit-owned links that no record names.
    const wanted = new Set<string>([...networks.map((n) => n.id), ...endpoints.map((e) => e.id)]);
    for (const link of listLinks(host.nl)) {
      const owner = parseOwnerAlias(link.alias);
      if (!owner || wanted.has(owner.id)) continue;
      await attempt(`remove leftover ${link.name}`, () => deleteLink(host.nl, link.index));
      r.removedLinks.push(link.name);
    }
    return r;
  });
}

export type { Endpoint, Network, Sandbox };
