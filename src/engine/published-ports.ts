// Published ports: an endpoint's host ports, checked against the ports other
// endpoints publish and the host's own sockets, and handed to the firewall.
import type { Endpoint, PortMapping } from '../model/index.ts';
import type { PortMapping as FirewallPort } from '../services/firewall/index.ts';
import { KnitError, conflict, invalid, notFound } from '../lib/errors.ts';
import { checkHostPortFree } from '../services/ports.ts';
import type { EngineContext } from './context.ts';

/** Engine.setEndpointPorts: replaces the ports an endpoint publishes; a host port of 0 gets a free one. */
export async function setEndpointPorts(ctx: EngineContext, id: string, want: PortMapping[]): Promise<PortMapping[]> {
  return ctx.mutex.run(async () => {
    const ep = await ctx.state.endpoint(id);
    if (!ep) throw notFound(`endpoint ${id.slice(0, 12)} not found`);
    const net = (await ctx.state.networks()).find((n) => n.id === ep.networkId);
    if (!net) throw notFound(`network ${ep.networkId.slice(0, 12)} of endpoint ${id.slice(0, 12)} not found`);
    if (want.length && (net.driver !== 'bridge' || net.internal)) {
      throw invalid('publish', `ports can be published only on a bridge network that is not internal; '${net.name}' is ${net.internal ? 'internal' : net.driver}`);
    }
    const others = (await ctx.state.endpoints()).filter((e) => e.id !== id);
    const chosen: PortMapping[] = [];
    for (const p of want) {
      const hostIP = p.hostIP ?? net.hostBindingIPv4;
      const base = { proto: p.proto, containerPort: p.containerPort, ...(hostIP ? { hostIP } : {}) };
      if (p.hostPort !== 0) {
        const m = { ...base, hostPort: p.hostPort };
        checkPortsFree([m], [...others, { ...ep, ports: chosen }]);
        if (!ep.ports.some((q) => samePort(q, m))) checkHostPortFree(m.proto, m.hostPort, m.hostIP);
        chosen.push(m);
        continue;
      }
      chosen.push(pickEphemeral(base, [...others, { ...ep, ports: chosen }]));
    }
    if (ep.ports.length) ctx.host.firewall.removePorts(firewallPorts(ep));
    const next: Endpoint = { ...ep, ports: chosen };
    try {
      if (chosen.length) ctx.host.firewall.addPorts(firewallPorts(next));
    } catch (err) {
      if (ep.ports.length) ctx.host.firewall.addPorts(firewallPorts(ep));
      throw err;
    }
    await ctx.state.putEndpoint(next);
    return chosen;
  });
}

/** An endpoint's published ports in the firewall's terms, each to its address of the host address's family (none: left out). */
export function firewallPorts(ep: Endpoint): FirewallPort[] {
  const out: FirewallPort[] = [];
  for (const p of ep.ports) {
    const v6Host = p.hostIP?.includes(':');
    const target = v6Host ? ep.ipv6 : ep.ipv4;
    if (!target) continue;
    out.push({
      proto: p.proto,
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      containerIP: target.split('/')[0] as string,
      ...(p.hostIP && p.hostIP !== '0.0.0.0' && p.hostIP !== '::' ? { hostIP: p.hostIP } : {}),
    });
  }
  return out;
}

/** A host port may be published once per protocol and host address (an unspecified address covers all). */
export function checkPortsFree(want: PortMapping[], endpoints: Endpoint[]): void {
  const any = (ip?: string) => !ip || ip === '0.0.0.0' || ip === '::';
  for (const p of want) {
    for (const e of endpoints) {
      for (const q of e.ports) {
        if (q.proto !== p.proto || q.hostPort !== p.hostPort) continue;
        if (any(p.hostIP) || any(q.hostIP) || p.hostIP === q.hostIP) {
          throw conflict(`host port ${p.hostPort}/${p.proto} is already published by endpoint ${e.id.slice(0, 12)}; choose another host port`, 'publish');
        }
      }
    }
  }
}

function samePort(a: PortMapping, b: PortMapping): boolean {
  return a.proto === b.proto && a.hostPort === b.hostPort && (a.hostIP ?? '') === (b.hostIP ?? '');
}

/** The first host port of Docker's ephemeral range that no endpoint and no local socket uses. */
function pickEphemeral(base: Omit<PortMapping, 'hostPort'>, endpoints: Endpoint[]): PortMapping {
  for (let port = 49153; port <= 65535; port++) {
    const m: PortMapping = { ...base, hostPort: port };
    try {
      checkPortsFree([m], endpoints);
      checkHostPortFree(m.proto, port, m.hostIP);
      return m;
    } catch (err) {
      if (err instanceof KnitError && err.code === 'conflict') continue;
      throw err;
    }
  }
  throw new KnitError('exhausted', `no free host port in 49153-65535 for ${base.proto} port ${base.containerPort}`);
}
