// bridge: a Linux bridge per network with the gateway addresses on it; each
// endpoint is a veth pair whose sandbox end is born inside the sandbox's
// namespace (a move would cost an RCU grace period). Forwarding policy
// (masquerade, isolation, internal) lives in the firewall's sets.
import type { NetworkDriver } from './driver.ts';
import type { Host } from '../engine/host.ts';
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import { ownerAlias } from './driver.ts';
import { KnitError, messageOf } from '../lib/errors.ts';
import { createBridge, deleteLink, getLink, setBridgePort, setLink } from '../kernel/link.ts';
import type { Link } from '../kernel/link.ts';
import { addAddress, listAddresses } from '../kernel/addr.ts';
import type { Route } from '../kernel/route.ts';
import { configureInterface } from '../kernel/iface.ts';
import { NetlinkSocket } from '../kernel/netlink/socket.ts';
import { openNetnsFd, closeFd } from '../kernel/netns.ts';
import { setSysctl } from '../kernel/sysctl.ts';
import { macFromId } from '../kernel/mac.ts';
import { bridgeName, gatewayCidrs, firewallNetwork } from './common.ts';
import { applyBandwidth, bandwidthProblems, removeBandwidth } from './bandwidth.ts';
import { announce, bridgeIndex, knownBridgeIndex, onFastpath, portSettings, tryCreatePortVeth } from './bridge-port.ts';
import { attachHostPeer, retireHostPeer } from './bridge-docker.ts';

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
    const noted = knownBridgeIndex(host, net) !== undefined;
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
    const group = knownBridgeIndex(host, net) ?? getLink(host.nl, bridgeName(net))?.index;
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
 * The veth with its sandbox end born inside the sandbox's namespace, and its
 * host end as made; false when a name is taken (EEXIST), so the caller can
 * look at what holds it.
 */
function tryCreateVeth(host: Host, net: Network, sb: Sandbox, ep: Endpoint, master: number): Link | false {
  const nsfd = openNetnsFd(sb.netnsPath);
  try {
    return tryCreatePortVeth(host, net, ep, master, { name: ep.ifname, netnsFd: nsfd }, `${ep.hostIfname} for ${sb.name}`);
  } finally {
    closeFd(nsfd);
  }
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
