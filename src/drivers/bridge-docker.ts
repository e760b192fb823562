// The bridge driver's side of Docker's Join: dockerd, not Knit, moves the
// container end into the container (see attachHostPeer).
import type { Host } from '../engine/host.ts';
import type { Endpoint, Network } from '../model/index.ts';
import { ownerAlias } from './driver.ts';
import { KnitError } from '../lib/errors.ts';
import { deleteLink, getLink, getLinkInNetnsId, setBridgePort, setLink } from '../kernel/link.ts';
import type { Link } from '../kernel/link.ts';
import { bridgeName } from './common.ts';
import { applyBandwidth } from './bandwidth.ts';
import { announce, bridgeIndex, knownBridgeIndex, onFastpath, portSettings, tryCreatePortVeth } from './bridge-port.ts';

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
export async function attachHostPeer(host: Host, net: Network, ep: Endpoint): Promise<void> {
  const hostIf = ep.hostIfname as string;
  // A pair retired moments ago holds both names until the reap.
  await host.reaper.clear({ netnsPath: host.netnsPath, ifname: ep.hostPeer as string });
  await host.reaper.clear({ netnsPath: host.netnsPath, ifname: hostIf });
  const noted = knownBridgeIndex(host, net) !== undefined;
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
      // This endpoint's own veth (a Join again, or a repair at start after dockerd moved the container end):
      // it needs only to be on the bridge, up, in its group, with its port settings.
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
 * by name even when the create fails with EEXIST), its peer does: with the
 * endpoint's MAC, and either named ep.hostPeer in this namespace (before
 * dockerd moved it) or in another one (the container's: a repair at start
 * must keep the pair the container runs on).
 */
function isOwnHostPeer(host: Host, link: Link, ep: Endpoint): boolean {
  if (link.kind !== 'veth' || link.alias !== ownerAlias('ep', ep.id) || link.peerIndex === undefined) return false;
  const moved = link.linkNetnsId !== undefined;
  const peer = moved ? getLinkInNetnsId(host.nl, link.linkNetnsId as number, link.peerIndex) : getLink(host.nl, link.peerIndex);
  return peer !== undefined && (moved || peer.name === ep.hostPeer) && peer.mac.toLowerCase() === ep.mac.toLowerCase();
}

/** The veth of a Docker endpoint, both ends in the host namespace (see tryCreatePortVeth). */
function tryCreateHostPeer(host: Host, net: Network, brIndex: number, ep: Endpoint): Link | false {
  return tryCreatePortVeth(host, net, ep, brIndex, { name: ep.hostPeer as string }, `${ep.hostIfname}/${ep.hostPeer}`);
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
export function retireHostPeer(host: Host, ep: Endpoint): void {
  const hostIf = ep.hostIfname as string;
  const peer = ep.hostPeer as string;
  if (host.reaper.retire(peer, { netnsPath: host.netnsPath, ifname: hostIf })) return;
  host.reaper.retire(hostIf, { netnsPath: host.netnsPath, ifname: peer });
}
