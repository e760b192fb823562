// CNI CHECK for a knit attachment: the kernel against Knit's records and the
// runtime's prevResult, and its bandwidth shaping. Returns what differs, one line each; empty is healthy.
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import type { Result100 } from './types.ts';
import type { NetlinkSocket } from '../kernel/netlink/socket.ts';
import { getLink } from '../kernel/link.ts';
import { listAddresses } from '../kernel/addr.ts';
import { listRoutes } from '../kernel/route.ts';
import { isNetns, withNetns } from '../kernel/netns.ts';
import { withSocket } from '../kernel/netlink/socket.ts';
import { shapingProblems } from '../drivers/bandwidth.ts';

export interface CheckInput {
  netns: string;
  sandbox: Sandbox;
  endpoint: Endpoint;
  network: Network;
  prevResult: Result100 | undefined;
  hostNl: NetlinkSocket;
}

export function checkAttachment(c: CheckInput): string[] {
  const ep = c.endpoint;
  const diffs: string[] = [];
  const want = [ep.ipv4, ep.ipv6].filter((a): a is string => a !== undefined);

  if (c.netns !== c.sandbox.netnsPath) diffs.push(`CNI_NETNS is ${c.netns} but the attachment was made in ${c.sandbox.netnsPath}`);
  if (!isNetns(c.netns)) return [...diffs, `network namespace ${c.netns} is gone`];

  // Container side: the interface, its MAC, addresses and default route.
  const inside = withNetns(c.netns, () =>
    withSocket(undefined, (s) => {
      const link = getLink(s, ep.ifname);
      if (!link) return undefined;
      const addrs = listAddresses(s, link.index).map((a) => a.cidr);
      const routes = listRoutes(s).filter((r) => r.dst === 'default' && r.oif === link.index).map((r) => r.gateway ?? '');
      return { link, addrs, routes };
    }),
  );
  if (!inside) {
    diffs.push(`interface ${ep.ifname} is missing in ${c.netns}`);
  } else {
    if (!inside.link.up) diffs.push(`interface ${ep.ifname} is down`);
    if (inside.link.mac.toLowerCase() !== ep.mac.toLowerCase()) diffs.push(`interface ${ep.ifname} has MAC ${inside.link.mac}, expected ${ep.mac}`);
    for (const a of want) if (!inside.addrs.includes(a)) diffs.push(`interface ${ep.ifname} lacks address ${a} (has ${inside.addrs.join(', ') || 'none'})`);
    if (ep.defaultRoute && !c.network.internal) {
      const gw = c.network.subnets.find((s) => !s.subnet.includes(':'))?.gateway;
      if (gw && ep.ipv4 && !inside.routes.includes(gw)) diffs.push(`default route via ${gw} on ${ep.ifname} is missing`);
    }
  }

  // Host side: the veth peer on the network's bridge.
  if (ep.hostIfname && c.network.bridge) {
    const br = getLink(c.hostNl, c.network.bridge);
    const peer = getLink(c.hostNl, ep.hostIfname);
    if (!br) diffs.push(`bridge ${c.network.bridge} is missing`);
    if (!peer) diffs.push(`host interface ${ep.hostIfname} is missing`);
    else if (br && peer.master !== br.index) diffs.push(`host interface ${ep.hostIfname} is not a port of ${c.network.bridge}`);
    // Bandwidth: the qdiscs, classes and filters the limits call for.
    if (peer) diffs.push(...shapingProblems(c.hostNl, ep, peer));
  }

  // The runtime's view: prevResult must name this interface and these addresses.
  const prev = c.prevResult;
  if (prev) {
    const ifaces = prev.interfaces ?? [];
    const idx = ifaces.findIndex((i) => i.name === ep.ifname && (i.sandbox ?? '') !== '');
    if (idx < 0) diffs.push(`prevResult has no interface ${ep.ifname} in a sandbox`);
    else {
      const mac = ifaces[idx]?.mac;
      if (mac && mac.toLowerCase() !== ep.mac.toLowerCase()) diffs.push(`prevResult gives ${ep.ifname} MAC ${mac}, Knit has ${ep.mac}`);
    }
    const prevIps = (prev.ips ?? []).filter((i) => i.interface === undefined || i.interface === idx).map((i) => i.address);
    for (const a of prevIps) if (!want.includes(a)) diffs.push(`prevResult address ${a} is not Knit's (${want.join(', ')})`);
    for (const a of want) if (!prevIps.includes(a)) diffs.push(`address ${a} is missing from prevResult`);
  }
  return diffs;
}
