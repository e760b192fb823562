// What the bridge driver's two ways to attach share (a sandbox's own veth,
// and Docker's Join): the bridge's ifindex, the port's settings, the
// address announcement and the fast path's view of the ports.
import type { Host } from '../engine/host.ts';
import type { Endpoint, Network } from '../model/index.ts';
import { KnitError, messageOf } from '../lib/errors.ts';
import { createVeth, getLink } from '../kernel/link.ts';
import { NetlinkError } from '../kernel/netlink/socket.ts';
import { ownerAlias } from './driver.ts';
import type { Link } from '../kernel/link.ts';
import { macFromIPv4 } from '../kernel/mac.ts';
import { announceAddress } from '../kernel/arp.ts';
import { bridgeName } from './common.ts';
import type { FastpathPort } from '../services/firewall/index.ts';

/**
 * Bridge ifindexes by bridge name, per host, noted at first use by an attach:
 * a link lookup takes the rtnl lock like any change, and waits behind every
 * link delete on the machine. An index is never handed out again (the
 * kernel counts up), so a noted one names this bridge or nothing; a create
 * that fails with it looks the bridge up again.
 */
const bridgeIndexes = new WeakMap<Host, Map<string, number>>();

/** The bridge's ifindex if noted already (no lookup). */
export function knownBridgeIndex(host: Host, net: Network): number | undefined {
  return bridgeIndexes.get(host)?.get(bridgeName(net));
}

/** The bridge's ifindex, noted or looked up (fresh: looked up whatever was noted). */
export function bridgeIndex(host: Host, net: Network, fresh = false): number {
  const name = bridgeName(net);
  let known = bridgeIndexes.get(host);
  if (!known) bridgeIndexes.set(host, (known = new Map()));
  const index = fresh ? undefined : known.get(name);
  if (index !== undefined) return index;
  const br = getLink(host.nl, name);
  if (!br) throw new KnitError('internal', `bridge ${name} of network ${net.name} is missing`);
  known.set(name, br.index);
  return br.index;
}

/**
 * Gratuitous ARP / unsolicited NA for the endpoint's addresses; best effort.
 * An IPv4 address whose MAC is the one Knit derives from it (macFromIPv4,
 * the default) is not announced: every holder of that address has had that
 * MAC, so no neighbour cache can hold another one. That saves a broadcast
 * the bridge copies to every sandbox of the network, CPU that grows with
 * the network (~1 ms per attach at 250 sandboxes here). A MAC the caller
 * chose, and every IPv6 address, is announced.
 */
export function announce(netnsPath: string, ifname: string, ep: Endpoint): void {
  for (const cidr of [ep.ipv4, ep.ipv6]) {
    if (!cidr) continue;
    const ip = cidr.split('/')[0] as string;
    if (cidr === ep.ipv4 && macFromIPv4(ip) === ep.mac.toLowerCase()) continue;
    try {
      announceAddress(netnsPath, ifname, ip, ep.mac);
    } catch {
      // An announcement only speeds up convergence; the endpoint works without it.
    }
  }
}

/**
 * Isolated ports talk only to the bridge itself: that is icc=false.
 * Hairpin lets a sandbox reach itself through its own published port.
 */
export function portSettings(net: Network): { isolated: boolean; hairpin: boolean } {
  return { isolated: !net.icc, hairpin: true };
}

/** Whether a network's sandboxes go port to port: not with icc=false (isolated ports), nor when turned off. */
export function onFastpath(net: Network): boolean {
  return net.icc && net.fastpath;
}

/**
 * The fast-path ports of sandboxes on bridge networks, as the kernel
 * has them now: only veths that exist, on their bridge, in its group.
 */
export function fastpathPorts(links: Link[], networks: Network[], endpoints: Endpoint[]): FastpathPort[] {
  const byName = new Map(links.map((l) => [l.name, l]));
  const nets = new Map(networks.filter((n) => n.driver === 'bridge' && onFastpath(n)).map((n) => [n.id, n]));
  const out: FastpathPort[] = [];
  for (const ep of endpoints) {
    const net = nets.get(ep.networkId);
    if (!net || !ep.hostIfname) continue;
    const br = byName.get(bridgeName(net));
    const port = byName.get(ep.hostIfname);
    if (!br || !port || port.master !== br.index || port.group !== br.index) continue;
    out.push({ ifname: port.name, group: br.index, mac: ep.mac, ifindex: port.index });
  }
  return out;
}

/**
 * An endpoint's veth, made as a port of its bridge in one datagram: on the
 * bridge, up, in the bridge's group (the fast path's key), with its alias,
 * its port settings and no IPv6 link-local address, and reported back.
 * `peer`: the other end's name and, for a sandbox, the fd of the namespace
 * it is born in. False when a name is taken (EEXIST); `what` names the pair
 * in errors.
 */
export function tryCreatePortVeth(host: Host, net: Network, ep: Endpoint, brIndex: number, peer: { name: string; netnsFd?: number }, what: string): Link | false {
  const hostIf = ep.hostIfname as string;
  let link: Link | undefined;
  try {
    link = createVeth(host.nl, {
      name: hostIf,
      ...(ep.hostMac !== undefined ? { mac: ep.hostMac } : {}),
      peerName: peer.name,
      ...(peer.netnsFd !== undefined ? { peerNetnsFd: peer.netnsFd } : {}),
      peerMac: ep.mac,
      mtu: net.mtu,
      master: brIndex,
      group: brIndex,
      up: true,
      alias: ownerAlias('ep', ep.id),
      report: true,
      port: portSettings(net),
      noLinkLocal: true,
    });
  } catch (err) {
    if (err instanceof NetlinkError && err.code === 'EEXIST') return false;
    throw new KnitError('internal', `creating veth ${what} on ${net.name}: ${messageOf(err)}`, { cause: err });
  }
  if (!link) throw new KnitError('internal', `veth ${hostIf} vanished right after it was created`);
  return link;
}
