// What Knit's embedded DNS looks like from a client on its networks: which
// networks have it, the addresses it answers on, the search domains that make
// a bare NAME find NAME.NETWORK. One source for everything that tells a
// sandbox about its resolver: /etc/netns files for Knit's own sandboxes, the
// `dns` section of a CNI result for a runtime's containers.
import type { Network } from '../../model/index.ts';

/**
 * Networks with names served: bridges with DNS on. The built-in `bridge`
 * network has none, as Docker's default bridge has none: containers there
 * were never promised discovery, and its gateway is shared by everything.
 */
export function servesDns(net: Network): boolean {
  return net.driver === 'bridge' && net.dns && net.origin !== 'builtin';
}

/** The addresses a network's DNS server listens on: its gateways, IPv4 first. */
export function dnsAddresses(net: Network): string[] {
  const gws = net.subnets.flatMap((s) => (s.gateway === undefined ? [] : [s.gateway]));
  return gws.sort((a, b) => Number(a.includes(':')) - Number(b.includes(':')));
}

/** Knit's part of a client's resolver configuration; empty lists when no network serves names. */
export interface KnitResolver {
  /** The DNS addresses of the first network (in attach order) that serves names. */
  nameservers: string[];
  /** Every DNS network's name: the domain under which Knit answers NAME.NETWORK. */
  search: string[];
}

/** Knit's resolver for a client attached to `nets` (in attach order). */
export function knitResolver(nets: readonly Network[], serves: (net: Network) => boolean = servesDns): KnitResolver {
  const dnsNets = nets.filter(serves);
  const first = dnsNets[0];
  return {
    nameservers: first === undefined ? [] : dnsAddresses(first),
    search: [...new Set(dnsNets.map((n) => n.name))],
  };
}

/**
 * The daemon's DNS service as other parts of the daemon (the CNI service) see
 * it: which of a network's DNS addresses are answering, once any listen that
 * is under way has finished.
 */
export interface DnsService {
  nameserversFor(net: Network): Promise<string[]>;
}
