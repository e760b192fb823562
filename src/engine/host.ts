// The host the daemon manages: its own network namespace (the one the daemon
// was started in), a long-lived netlink socket there, and its firewall table.
import { currentNetnsPath } from '../kernel/netns.ts';
import { NetlinkSocket } from '../kernel/netlink/socket.ts';
import { setSysctl } from '../kernel/sysctl.ts';
import { listRoutes } from '../kernel/route.ts';
import { Nft } from '../kernel/nft.ts';
import { Firewall } from '../services/firewall/index.ts';

export interface Host {
  /** Opens the daemon's own namespace, also from inside a setns window. */
  readonly netnsPath: string;
  /** Where Knit-made sandbox namespaces are bind-mounted (default /run/netns). */
  readonly netnsDir: string;
  readonly nl: NetlinkSocket;
  readonly firewall: Firewall;
  /** Prefixes routed in the host namespace (default pools avoid them). */
  routes(): string[];
}

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
  return { netnsPath, netnsDir, nl, firewall, routes };
}

export function closeHost(host: Host): void {
  host.nl.close();
}
