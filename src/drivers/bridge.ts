// bridge: a Linux bridge per network with the gateway addresses on it; each
// endpoint is a veth pair whose sandbox end is born inside the sandbox's
// namespace (a move would cost an RCU grace period). Forwarding policy
// (masquerade, isolation, internal) lives in the firewall's sets.
import type { NetworkDriver } from './driver.ts';
import type { Host } from '../engine/host.ts';
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import { ownerAlias } from './driver.ts';
import { KnitError, messageOf } from '../lib/errors.ts';
import { createBridge, createVeth, deleteLink, deleteLinkAsync, getLink, setBridgePort, setLink } from '../kernel/link.ts';
import { addAddress, listAddresses } from '../kernel/addr.ts';
import { addRoute } from '../kernel/route.ts';
import { NetlinkSocket } from '../kernel/netlink/socket.ts';
import { openNetnsFd, closeFd } from '../kernel/netns.ts';
import { setSysctl } from '../kernel/sysctl.ts';
import { bridgeName, gatewayCidrs, firewallNetwork } from './common.ts';

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
      createBridge(host.nl, { name, mtu: net.mtu, up: true, alias: ownerAlias('net', net.id) });
      br = getLink(host.nl, name);
    } else if (!br.up) {
      setLink(host.nl, name, { up: true });
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

  attach(host, net, sb, ep) {
    const br = getLink(host.nl, bridgeName(net));
    if (!br) throw new KnitError('internal', `bridge ${bridgeName(net)} of network ${net.name} is missing`);
    const hostIf = ep.hostIfname as string;
    const existing = getLink(host.nl, hostIf);
    if (existing && existing.alias !== ownerAlias('ep', ep.id)) deleteLink(host.nl, existing.index);
    const peerOk = existing && existing.alias === ownerAlias('ep', ep.id) && sandboxHas(sb, ep);
    if (!peerOk) {
      if (existing) deleteLink(host.nl, hostIf);
      const nsfd = openNetnsFd(sb.netnsPath);
      try {
        createVeth(host.nl, {
          name: hostIf,
          peerName: ep.ifname,
          peerNetnsFd: nsfd,
          peerMac: ep.mac,
          mtu: net.mtu,
          master: br.index,
          up: true,
          alias: ownerAlias('ep', ep.id),
        });
      } catch (err) {
        throw new KnitError('internal', `creating veth ${hostIf} for ${sb.name} on ${net.name}: ${messageOf(err)}`, { cause: err });
      } finally {
        closeFd(nsfd);
      }
    }
    const link = getLink(host.nl, hostIf);
    if (!link) throw new KnitError('internal', `veth ${hostIf} vanished right after it was created`);
    if (link.master !== br.index) setLink(host.nl, link.index, { master: br.index, up: true });
    // Isolated ports talk only to the bridge itself: that is icc=false.
    // Hairpin lets a sandbox reach itself through its own published port.
    setBridgePort(host.nl, link.index, { isolated: !net.icc, hairpin: true });
    configureSandbox(net, sb, ep);
  },

  async detach(host, _net, _sb, ep) {
    if (ep.hostIfname) await deleteLinkAsync(host.nl, ep.hostIfname);
  },

  check(host, net, sb, ep) {
    const problems: string[] = [];
    const br = getLink(host.nl, bridgeName(net));
    if (!br) problems.push(`bridge ${bridgeName(net)} is missing`);
    if (ep && sb) {
      const link = ep.hostIfname ? getLink(host.nl, ep.hostIfname) : undefined;
      if (!link) problems.push(`veth ${ep.hostIfname} is missing`);
      else if (br && link.master !== br.index) problems.push(`veth ${ep.hostIfname} is not on bridge ${br.name}`);
      if (!sandboxHas(sb, ep)) problems.push(`interface ${ep.ifname} in sandbox ${sb.name} is missing or has other addresses`);
    }
    return problems;
  },
};

/** Addresses, routes and link state inside the sandbox, in one netlink batch where possible. */
function configureSandbox(net: Network, sb: Sandbox, ep: Endpoint): void {
  const s = NetlinkSocket.open(sb.netnsPath);
  try {
    const link = getLink(s, ep.ifname);
    if (!link) throw new KnitError('internal', `interface ${ep.ifname} did not appear in sandbox ${sb.name}`);
    if (ep.ipv4) addAddress(s, link.index, ep.ipv4);
    if (ep.ipv6) addAddress(s, link.index, ep.ipv6, { noDad: true });
    setLink(s, link.index, { up: true });
    setLink(s, 'lo', { up: true });
    if (ep.defaultRoute && !net.internal) {
      for (const sub of net.subnets) {
        if (!sub.gateway) continue;
        const family = sub.gateway.includes(':') ? 6 : 4;
        if ((family === 4 && !ep.ipv4) || (family === 6 && !ep.ipv6)) continue;
        addRoute(s, { family, dst: 'default', gateway: sub.gateway, oif: link.index });
      }
    }
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
