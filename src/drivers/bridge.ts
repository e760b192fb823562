// bridge: a Linux bridge per network with the gateway addresses on it; each
// endpoint is a veth pair whose sandbox end is born inside the sandbox's
// namespace (a move would cost an RCU grace period). Forwarding policy
// (masquerade, isolation, internal) lives in the firewall's sets.
import type { NetworkDriver } from './driver.ts';
import type { Host } from '../engine/host.ts';
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import { ownerAlias } from './driver.ts';
import { KnitError, messageOf } from '../lib/errors.ts';
import { createBridge, createVeth, deleteLink, getLink, noLinkLocalRequest, setBridgePort, setBridgePortByNameRequest, setLink } from '../kernel/link.ts';
import type { Link } from '../kernel/link.ts';
import { addAddress, listAddresses } from '../kernel/addr.ts';
import type { Route } from '../kernel/route.ts';
import { configureInterface } from '../kernel/iface.ts';
import { NetlinkError, NetlinkSocket } from '../kernel/netlink/socket.ts';
import { openNetnsFd, closeFd } from '../kernel/netns.ts';
import { setSysctl } from '../kernel/sysctl.ts';
import { macFromId, macFromIPv4 } from '../kernel/mac.ts';
import { announceAddress } from '../kernel/arp.ts';
import { bridgeName, gatewayCidrs, firewallNetwork } from './common.ts';
import { applyBandwidth, bandwidthProblems, removeBandwidth } from './bandwidth.ts';
import type { FastpathPort } from '../services/firewall/index.ts';

export const bridgeDriver: NetworkDriver = {
  name: 'bridge',
  usesIpam: true,

  createNetwork(host, net) {
    const name = bridgeName(net);
    let br = getLink(host.nl, name);
    if (br && br.kind !== 'bridge') {
      throw new KnitError('conflict', `bridge name '${name}' is taken by a ${br.kind ?? 'non-bridge'} interface; choose another with --opt bridge=NAME`);
    }
    if (!br) {
      // A bridge without its own MAC takes its lowest port's, and changes it
      // when that port leaves: every sandbox's ARP entry for the gateway goes stale.
      createBridge(host.nl, { name, mtu: net.mtu, mac: macFromId(net.id), up: true, alias: ownerAlias('net', net.id) });
      br = getLink(host.nl, name);
    } else if (!br.up || (br.alias === ownerAlias('net', net.id) && br.mac !== macFromId(net.id))) {
      setLink(host.nl, name, { up: true, ...(br.alias === ownerAlias('net', net.id) ? { mac: macFromId(net.id) } : {}) });
    }
    if (!br) throw new KnitError('internal', `bridge ${name} vanished right after it was created`);
    const v6 = net.subnets.some((s) => s.subnet.includes(':'));
    // Reaching published ports from 127.0.0.1 means DNAT'ing loopback-sourced
    // packets onto this bridge; the kernel drops them as martians without this.
    setSysctl(`net.ipv4.conf.${name}.route_localnet`, '1');
    if (v6) setSysctl(`net.ipv6.conf.${name}.disable_ipv6`, '0');
    for (const cidr of gatewayCidrs(net)) addAddress(host.nl, br.index, cidr, { noDad: true });
    host.firewall.addNetwork(firewallNetwork(net));
  },

  deleteNetwork(host, net) {
    host.firewall.removeNetwork(firewallNetwork(net));
    const name = bridgeName(net);
    const br = getLink(host.nl, name);
    // Only a bridge this network made is removed; an adopted one is left as found.
    if (br && br.alias === ownerAlias('net', net.id)) deleteLink(host.nl, br.index);
  },

  async attach(host, net, sb, ep) {
    if (ep.hostPeer) return attachHostPeer(host, net, ep);
    const hostIf = ep.hostIfname as string;
    // A link retired moments ago may still hold this name in the sandbox (a quick DEL then ADD).
    await host.reaper.clear({ netnsPath: sb.netnsPath, ifname: ep.ifname });
    // The usual case is a name nobody holds: create first (port settings and
    // the look at the new link in the same datagram), and look at what is
    // there only when the kernel says the name is taken (a retried attach).
    const noted = bridgeIndexes.get(host)?.has(bridgeName(net)) === true;
    let brIndex = bridgeIndex(host, net);
    let link: Link | false;
    try {
      link = tryCreateVeth(host, net, sb, ep, brIndex);
    } catch (err) {
      // The bridge may have been made again since its index was noted: look it up once more.
      if (!noted) throw err;
      brIndex = bridgeIndex(host, net, true);
      link = tryCreateVeth(host, net, sb, ep, brIndex);
    }
    let reused = false;
    if (!link) {
      const existing = getLink(host.nl, hostIf);
      reused = existing !== undefined && existing.alias === ownerAlias('ep', ep.id) && sandboxHas(sb, ep);
      if (reused) link = existing as Link;
      else {
        if (existing) deleteLink(host.nl, existing.index);
        link = tryCreateVeth(host, net, sb, ep, brIndex);
        if (!link) throw new KnitError('conflict', `veth ${hostIf} for ${sb.name} on ${net.name}: the name, or ${ep.ifname} in the sandbox, is taken`);
      }
    }
    if (link.master !== brIndex || link.group !== brIndex) setLink(host.nl, link.index, { master: brIndex, group: brIndex, up: true });
    // A veth made here got its port settings in its create's datagram.
    if (reused) setBridgePort(host.nl, link.index, portSettings(net));
    applyBandwidth(host, ep, link);
    configureSandbox(net, sb, ep, link.peerIndex);
    if (onFastpath(net)) host.firewall.fastpath.add({ ifname: hostIf, group: brIndex, mac: ep.mac, ifindex: link.index });
    // Best effort, and not needed for the reply: it goes out right after it.
    setImmediate(() => announce(sb.netnsPath, ep.ifname, ep));
  },

  forget(host, net, ep) {
    if (!ep.hostIfname || !onFastpath(net) || !host.firewall.fastpath.enabled) return;
    const group = bridgeIndexes.get(host)?.get(bridgeName(net)) ?? getLink(host.nl, bridgeName(net))?.index;
    host.firewall.fastpath.remove({ ifname: ep.hostIfname, group, mac: ep.mac });
  },

  detach(host, _net, sb, ep) {
    // Retired, not deleted: the delete's RCU wait is paid once per batch, off the request path.
    if (ep.hostPeer) retireHostPeer(host, ep);
    else if (ep.hostIfname) host.reaper.retire(ep.hostIfname, { netnsPath: sb.netnsPath, ifname: ep.ifname });
    removeBandwidth(host, ep);
  },

  check(host, net, sb, ep) {
    const problems: string[] = [];
    const br = getLink(host.nl, bridgeName(net));
    if (!br) problems.push(`bridge ${bridgeName(net)} is missing`);
    if (ep && sb) {
      const link = ep.hostIfname ? getLink(host.nl, ep.hostIfname) : undefined;
      if (!link) problems.push(`veth ${ep.hostIfname} is missing`);
      else if (br && link.master !== br.index) problems.push(`veth ${ep.hostIfname} is not on bridge ${br.name}`);
      if (link) problems.push(...bandwidthProblems(host, ep, link));
      // The runtime moved and renamed the sandbox end: only the host side is ours to check.
      if (ep.hostPeer) return problems;
      if (!sandboxHas(sb, ep)) problems.push(`interface ${ep.ifname} in sandbox ${sb.name} is missing or has other addresses`);
    }
    return problems;
  },
};

/**
 * Docker's Join contract: both ends of the veth stay in the host namespace;
 * dockerd moves the peer (named ep.hostPeer) into the container, renames it
 * and sets its addresses. The MAC is set here, so neighbours learn the same
 * MAC whichever side configures the rest.
 *
 * One datagram in the usual case: the create, its alias and the port
 * settings (addressed by name: no lookup of what was just made). What holds
 * a name is looked at only when the kernel says it is taken (a retried Join,
 * a link left behind).
 */
async function attachHostPeer(host: Host, net: Network, ep: Endpoint): Promise<void> {
  const hostIf = ep.hostIfname as string;
  // A pair retired moments ago holds both names until the reap.
  await host.reaper.clear({ netnsPath: host.netnsPath, ifname: ep.hostPeer as string });
  await host.reaper.clear({ netnsPath: host.netnsPath, ifname: hostIf });
  const noted = bridgeIndexes.get(host)?.has(bridgeName(net)) === true;
  let brIndex = bridgeIndex(host, net);
  let link: Link | false;
  try {
    link = tryCreateHostPeer(host, net, brIndex, ep);
  } catch (err) {
    // The bridge may have been made again since its index was noted: look it up once more.
    if (!noted) throw err;
    brIndex = bridgeIndex(host, net, true);
    link = tryCreateHostPeer(host, net, brIndex, ep);
  }
  if (!link) {
    brIndex = bridgeIndex(host, net, true);
    const existing = getLink(host.nl, hostIf);
    if (existing && isOwnHostPeer(host, existing, ep)) {
      // This endpoint's own veth (the Join again): it needs only to be on the bridge, up, in its group, with its port settings.
      if (existing.master !== brIndex || !existing.up || existing.group !== brIndex) setLink(host.nl, existing.index, { master: brIndex, group: brIndex, up: true });
      setBridgePort(host.nl, existing.index, portSettings(net));
      link = existing;
    } else {
      if (existing) deleteLink(host.nl, existing.index);
      const stale = getLink(host.nl, ep.hostPeer as string);
      if (stale && stale.alias === undefined) deleteLink(host.nl, stale.index);
      link = tryCreateHostPeer(host, net, brIndex, ep);
      if (!link) {
        throw new KnitError('conflict', `veth ${hostIf}/${ep.hostPeer} on ${net.name}: a name is taken by an interface Knit did not make`);
      }
    }
  }
  if (ep.bandwidth) applyBandwidth(host, ep, link);
  // The MAC is the container end's: dockerd moves and renames that end, and keeps it.
  if (onFastpath(net)) host.firewall.fastpath.add({ ifname: hostIf, group: brIndex, mac: ep.mac, ifindex: link.index });
  // The container end has no address yet: announce from the bridge, so that
  // peers replace a neighbour entry left by an earlier holder of the address.
  // Best effort, and not needed for the reply: it goes out right after it.
  setImmediate(() => announce(host.netnsPath, bridgeName(net), ep));
}

/**
 * The link holding the endpoint's host-side name is the veth an earlier
 * Join made: the alias alone does not say so (the create's datagram sets it
 * by name even when the create fails with EEXIST), its peer does: named
 * ep.hostPeer, in this namespace, with the endpoint's MAC.
 */
function isOwnHostPeer(host: Host, link: Link, ep: Endpoint): boolean {
  if (link.kind !== 'veth' || link.alias !== ownerAlias('ep', ep.id) || link.peerIndex === undefined || link.linkNetnsId !== undefined) return false;
  const peer = getLink(host.nl, link.peerIndex);
  return peer !== undefined && peer.name === ep.hostPeer && peer.mac.toLowerCase() === ep.mac.toLowerCase();
}

/**
 * Bridge ifindexes by bridge name, per host, noted at a Join's first use:
 * a link lookup takes the rtnl lock like any change, and waits behind every
 * link delete on the machine. An index is never handed out again (the
 * kernel counts up), so a noted one names this bridge or nothing; a create
 * that fails with it looks the bridge up again (attachHostPeer).
 */
const bridgeIndexes = new WeakMap<Host, Map<string, number>>();

function bridgeIndex(host: Host, net: Network, fresh = false): number {
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

/** The veth of a Docker endpoint, on the bridge, up, with its port settings, as made; false when a name is taken (EEXIST). */
function tryCreateHostPeer(host: Host, net: Network, brIndex: number, ep: Endpoint): Link | false {
  const hostIf = ep.hostIfname as string;
  let link: Link | undefined;
  try {
    link = createVeth(host.nl, {
      name: hostIf,
      peerName: ep.hostPeer as string,
      peerMac: ep.mac,
      mtu: net.mtu,
      master: brIndex,
      // The port's group names its bridge to the fast path (see services/firewall, FASTPATH).
      group: brIndex,
      up: true,
      alias: ownerAlias('ep', ep.id),
      report: true,
      then: [setBridgePortByNameRequest(hostIf, portSettings(net)), noLinkLocalRequest(hostIf)],
    });
  } catch (err) {
    if (err instanceof NetlinkError && err.code === 'EEXIST') return false;
    throw new KnitError('internal', `creating veth ${hostIf}/${ep.hostPeer} on ${net.name}: ${messageOf(err)}`, { cause: err });
  }
  if (!link) throw new KnitError('internal', `veth ${hostIf} vanished right after it was created`);
  return link;
}

/**
 * A Docker endpoint's veth is retired by its container end: by
 * DeleteEndpoint dockerd has taken that end down and moved it back under
 * its first name (its part of Leave), so retiring it takes no RCU wait,
 * where taking the bridge end down would (0.15 ms alone, milliseconds behind
 * other link changes on a busy host). Deleting either end deletes the pair.
 * When the container end is not here (dockerd left it in the container, or
 * it went with the container's namespace) the bridge end is retired, as for
 * any endpoint: retire() says whether it found a link.
 */
function retireHostPeer(host: Host, ep: Endpoint): void {
  const hostIf = ep.hostIfname as string;
  const peer = ep.hostPeer as string;
  if (host.reaper.retire(peer, { netnsPath: host.netnsPath, ifname: hostIf })) return;
  host.reaper.retire(hostIf, { netnsPath: host.netnsPath, ifname: peer });
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
function announce(netnsPath: string, ifname: string, ep: Endpoint): void {
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
 * The veth with its sandbox end born inside the sandbox's namespace, and its
 * host end as made; false when a name is taken (EEXIST), so the caller can
 * look at what holds it.
 */
function tryCreateVeth(host: Host, net: Network, sb: Sandbox, ep: Endpoint, master: number): Link | false {
  const hostIf = ep.hostIfname as string;
  const nsfd = openNetnsFd(sb.netnsPath);
  let link: Link | undefined;
  try {
    link = createVeth(host.nl, {
      name: hostIf,
      peerName: ep.ifname,
      peerNetnsFd: nsfd,
      peerMac: ep.mac,
      mtu: net.mtu,
      master,
      // The port's group names its bridge to the fast path (see services/firewall, FASTPATH).
      group: master,
      up: true,
      alias: ownerAlias('ep', ep.id),
      report: true,
      then: [setBridgePortByNameRequest(hostIf, portSettings(net)), noLinkLocalRequest(hostIf)],
    });
  } catch (err) {
    if (err instanceof NetlinkError && err.code === 'EEXIST') return false;
    throw new KnitError('internal', `creating veth ${hostIf} for ${sb.name} on ${net.name}: ${messageOf(err)}`, { cause: err });
  } finally {
    closeFd(nsfd);
  }
  if (!link) throw new KnitError('internal', `veth ${hostIf} vanished right after it was created`);
  return link;
}

/**
 * Isolated ports talk only to the bridge itself: that is icc=false.
 * Hairpin lets a sandbox reach itself through its own published port.
 */
function portSettings(net: Network): { isolated: boolean; hairpin: boolean } {
  return { isolated: !net.icc, hairpin: true };
}

/**
 * Addresses, link state and routes inside the sandbox, in one netlink batch.
 * `peerIndex`: the sandbox end's ifindex as the host end reports it (saves a lookup).
 */
function configureSandbox(net: Network, sb: Sandbox, ep: Endpoint, peerIndex: number | undefined): void {
  const s = NetlinkSocket.open(sb.netnsPath);
  try {
    const index = peerIndex ?? getLink(s, ep.ifname)?.index;
    if (index === undefined) throw new KnitError('internal', `interface ${ep.ifname} did not appear in sandbox ${sb.name}`);
    const routes: Route[] = [];
    if (ep.defaultRoute && !net.internal) {
      for (const sub of net.subnets) {
        if (!sub.gateway) continue;
        const family = sub.gateway.includes(':') ? 6 : 4;
        if ((family === 4 && !ep.ipv4) || (family === 6 && !ep.ipv6)) continue;
        routes.push({ family, dst: 'default', gateway: sub.gateway, oif: index });
      }
    }
    configureInterface(s, {
      index,
      addresses: [...(ep.ipv4 ? [{ cidr: ep.ipv4 }] : []), ...(ep.ipv6 ? [{ cidr: ep.ipv6, noDad: true }] : [])],
      // On an IPv4-only network the sandbox's IPv6 would only announce itself to every other sandbox.
      ipv6LinkLocal: ep.ipv6 !== undefined,
      up: true,
      loopbackUp: true,
      routes,
    });
  } catch (err) {
    if (err instanceof KnitError) throw err;
    throw new KnitError('internal', `configuring ${ep.ifname} in sandbox ${sb.name}: ${messageOf(err)}`, { cause: err });
  } finally {
    s.close();
  }
}

/** True when the sandbox has the endpoint's interface with its addresses. */
function sandboxHas(sb: Sandbox, ep: Endpoint): boolean {
  let s: NetlinkSocket;
  try {
    s = NetlinkSocket.open(sb.netnsPath);
  } catch {
    return false;
  }
  try {
    const link = getLink(s, ep.ifname);
    if (!link || link.mac.toLowerCase() !== ep.mac.toLowerCase()) return false;
    const have = new Set(listAddresses(s, link.index).map((a) => a.cidr));
    return (!ep.ipv4 || have.has(ep.ipv4)) && (!ep.ipv6 || have.has(ep.ipv6));
  } finally {
    s.close();
  }
}

/** Whether a network's sandboxes go port to port: not with icc=false (isolated ports), nor when turned off. */
function onFastpath(net: Network): boolean {
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
