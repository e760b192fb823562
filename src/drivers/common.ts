// Pieces several drivers share: gateway addresses and firewall membership.
import type { Network } from '../model/index.ts';
import type { FirewallNetwork } from '../services/firewall/index.ts';
import { parsePrefix } from '../lib/ip.ts';

/** The gateway of each subnet as a CIDR on the bridge (10.1.0.1/24). */
export function gatewayCidrs(net: Network): string[] {
  return net.subnets.filter((s) => s.gateway).map((s) => `${s.gateway}/${parsePrefix(s.subnet).len}`);
}

/** The network's bridge: named at create (--opt bridge) or kn-<id prefix>. */
export function bridgeName(net: Network): string {
  return net.bridge ?? `kn-${net.id.slice(0, 12)}`;
}

export function firewallNetwork(net: Network): FirewallNetwork {
  return {
    bridge: bridgeName(net),
    subnets: net.subnets.map((s) => s.subnet),
    internal: net.internal,
    masquerade: net.masquerade && !net.internal,
  };
}
