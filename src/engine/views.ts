// Records joined into the views the API returns.
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import type { EndpointView, NetworkView, SandboxView } from '../model/api.ts';

export function endpointView(ep: Endpoint, net: Network | undefined, sb: Sandbox | undefined): EndpointView {
  const gw = (fam: 4 | 6) => net?.subnets.find((s) => s.gateway && s.gateway.includes(':') === (fam === 6))?.gateway;
  const v: EndpointView = {
    id: ep.id,
    network: net?.name ?? ep.networkId,
    networkId: ep.networkId,
    sandbox: sb?.name ?? ep.sandboxId,
    sandboxId: ep.sandboxId,
    ifname: ep.ifname,
    mac: ep.mac,
    aliases: ep.aliases,
    ports: ep.ports,
  };
  if (ep.hostIfname) v.hostIfname = ep.hostIfname;
  if (ep.ipv4) v.ipv4 = ep.ipv4;
  if (ep.ipv6) v.ipv6 = ep.ipv6;
  const g4 = ep.ipv4 ? gw(4) : undefined;
  const g6 = ep.ipv6 ? gw(6) : undefined;
  if (g4) v.gateway4 = g4;
  if (g6) v.gateway6 = g6;
  return v;
}

export function networkView(net: Network, eps: Endpoint[], sandboxes: Map<string, Sandbox>): NetworkView {
  return {
    ...net,
    endpoints: eps.filter((e) => e.networkId === net.id).map((e) => endpointView(e, net, sandboxes.get(e.sandboxId))),
  };
}

export function sandboxView(sb: Sandbox, eps: Endpoint[], networks: Map<string, Network>): SandboxView {
  return {
    ...sb,
    endpoints: eps.filter((e) => e.sandboxId === sb.id).map((e) => endpointView(e, networks.get(e.networkId), sb)),
  };
}
