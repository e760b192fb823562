// The `dns` section of the knit plugin's ADD result. A runtime that honours
// it (podman's CNI backend writes its nameservers and search domains into the
// container's resolv.conf) points the container at Knit's DNS server, so
// peers resolve by name as on a Docker or netavark network.
//
// Knit's server comes first and what the configuration names is appended, not
// substituted: a conflist's `dns` (or the runtime's `dns` capability) usually
// lists the site's resolvers, which Knit forwards to anyway, and letting them
// push Knit's server out would silently turn name discovery off. To turn it
// off, the network says so (`--opt dns=false`, or `"enableDns": false` in the
// plugin config); then only the configured values are returned.
import type { DNS } from './types.ts';
import type { KnitResolver } from '../services/dns/resolver.ts';

/**
 * Knit's nameservers and search domains, then each explicit section's in
 * order (the runtime's before the config's), without repeats; options from
 * the explicit sections; the first explicit `domain`. Undefined when nothing
 * is left, so a result carries no empty `dns`.
 */
export function resultDns(knit: KnitResolver, ...explicit: (DNS | undefined)[]): DNS | undefined {
  const given = explicit.filter((d): d is DNS => d !== undefined);
  const merge = (mine: string[], key: 'nameservers' | 'search' | 'options'): string[] => [
    ...new Set([...mine, ...given.flatMap((d) => d[key] ?? [])]),
  ];
  const nameservers = merge(knit.nameservers, 'nameservers');
  const search = merge(knit.search, 'search');
  const options = merge([], 'options');
  const domain = given.find((d) => d.domain !== undefined)?.domain;
  const out: DNS = {
    ...(nameservers.length > 0 ? { nameservers } : {}),
    ...(domain !== undefined ? { domain } : {}),
    ...(search.length > 0 ? { search } : {}),
    ...(options.length > 0 ? { options } : {}),
  };
  return Object.keys(out).length > 0 ? out : undefined;
}
