// The host the daemon manages: its own network namespace (the one the daemon
// was started in), a long-lived netlink socket there, and its firewall table.
import { currentNetnsPath } from '../kernel/netns.ts';
import { NetlinkSocket } from '../kernel/netlink/socket.ts';
import { setSysctl } from '../kernel/sysctl.ts';
import { listRoutes } from '../kernel/route.ts';
import { Nft } from '../kernel/nft.ts';
import { LinkReaper } from '../kernel/link-reaper.ts';
import { deleteLinksInGroup } from '../kernel/link.ts';
import { messageOf } from '../lib/errors.ts';
import { Firewall } from '../services/firewall/index.ts';

export interface Host {
  /** Opens the daemon's own namespace, also from inside a setns window. */
  readonly netnsPath: string;
  /** Where Knit-made sandbox namespaces are bind-mounted (default /run/netns). */
  readonly netnsDir: string;
  readonly nl: NetlinkSocket;
  readonly firewall: Firewall;
  /** Deletes endpoints' links in batches, off the request path (see link-reaper.ts). */
  readonly reaper: LinkReaper;
  /** Prefixes routed in the host namespace (default pools avoid them). */
  routes(): string[];
}

/** The interface group of links retired and about to be deleted ('knit' in ASCII). */
export const RETIRED_GROUP = 0x6b6e6974;

export function openHost(netnsDir: string): Host {
  const netnsPath = currentNetnsPath();
  const nl = NetlinkSocket.open();
  const firewall = new Firewall(Nft.open());
  // Routing between bridges and out of the host is the point of a bridge
  // network; Docker sets the same two switches.
  setSysctl('net.ipv4.ip_forward', '1');
  setSysctl('net.ipv6.conf.all.forwarding', '1');
  const routes = () =>
    [...listRoutes(nl, 4), ...listRoutes(nl, 6)].map((r) => r.dst).filter((d) => d !== 'default' && !d.startsWith('fe80:'));
  // Links retired just before a crash: the next start finishes their delete.
  deleteLinksInGroup(nl, RETIRED_GROUP);
  const reaper = new LinkReaper(nl, RETIRED_GROUP, (err) => process.stderr.write(`knit: deleting retired links: ${messageOf(err)}\n`));
  return { netnsPath, netnsDir, nl, firewall, reaper, routes };
}

export async function closeHost(host: Host): Promise<void> {
  await host.reaper.drain();
  host.nl.close();
}
