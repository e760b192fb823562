// The kernel floor of an attachment: the same objects Knit makes for a
// sandbox on a bridge network (a netns, a veth born with its peer inside it,
// the host end on the bridge, an address, links up, a default route), made
// with bare in-process netlink calls from src/kernel and no bookkeeping.
import {
  NetlinkSocket,
  addAddressRequest,
  addRouteRequest,
  closeFd,
  createBridge,
  createNetns,
  createVeth,
  deleteLink,
  deleteLinksInGroup,
  deleteNetns,
  getLink,
  openNetnsFd,
  setLinkRequests,
} from '../../src/kernel/index.ts';
import { formatIP, parseIP } from '../../src/lib/ip.ts';

export interface FloorHost {
  nl: NetlinkSocket;
  bridgeIndex: number;
  close(): void;
}

/** A bridge `name` with `gatewayCidr` in the netns at nsPath. */
export function floorHost(nsPath: string, name: string, gatewayCidr: string): FloorHost {
  const nl = NetlinkSocket.open(nsPath);
  createBridge(nl, { name, up: true });
  const br = getLink(nl, name);
  if (!br) throw new Error(`bridge ${name} missing right after create`);
  nl.batch([addAddressRequest(br.index, gatewayCidr)]);
  return { nl, bridgeIndex: br.index, close: () => nl.close() };
}

export interface FloorSandbox {
  netnsPath: string;
  hostIf: string;
}

/** Attaches a fresh netns at netnsPath to the bridge with address `cidr` (e.g. 10.89.0.2/16) via `gateway`. */
export function floorAttach(h: FloorHost, netnsPath: string, hostIf: string, cidr: string, gateway: string, group?: number): FloorSandbox {
  createNetns(netnsPath);
  const fd = openNetnsFd(netnsPath);
  try {
    createVeth(h.nl, { name: hostIf, peerName: 'eth0', peerNetnsFd: fd, master: h.bridgeIndex, up: true, group });
  } finally {
    closeFd(fd);
  }
  const s = NetlinkSocket.open(netnsPath);
  try {
    const eth0 = getLink(s, 'eth0');
    if (!eth0) throw new Error(`eth0 did not appear in ${netnsPath}`);
    s.batch([
      addAddressRequest(eth0.index, cidr),
      ...setLinkRequests(s, eth0.index, { up: true }),
      ...setLinkRequests(s, 'lo', { up: true }),
      addRouteRequest({ family: 4, dst: 'default', gateway, oif: eth0.index }),
    ]);
  } finally {
    s.close();
  }
  return { netnsPath, hostIf };
}

/** One DELLINK (pays an RCU grace period), then the netns. */
export function floorRemove(h: FloorHost, sb: FloorSandbox): void {
  deleteLink(h.nl, sb.hostIf);
  deleteNetns(sb.netnsPath);
}

/** Every veth of `group` in one DELLINK, then the namespaces: one grace period for all. */
export function floorRemoveGroup(h: FloorHost, group: number, sbs: FloorSandbox[]): void {
  deleteLinksInGroup(h.nl, group);
  for (const sb of sbs) deleteNetns(sb.netnsPath);
}

/** The i-th host address of a /16 starting at base (skipping .0 and the gateway .1). */
export function nthAddress(base: string, i: number): string {
  const { family, addr } = parseIP(base);
  return formatIP(family, addr + BigInt(i + 2));
}
