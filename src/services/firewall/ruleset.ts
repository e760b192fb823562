// The `inet knit` table: a fixed set of chains whose rules never change, and
// sets/maps that carry everything that grows with networks and published
// ports. After the one atomic load, Knit only adds and deletes elements.
//
// Isolation is between bridges, i.e. routed traffic, which the inet forward
// hook sees. Traffic inside one bridge never reaches inet hooks, except when
// br_netfilter is loaded (Docker loads it and sets bridge-nf-call-iptables=1;
// on kernels with it built in every namespace starts with it on): then it
// passes the inet hooks with iifname == oifname == the bridge, and the
// forward chain's `same_bridge` set accepts it. The per-bridge option
// IFLA_BR_NF_CALL_IPTABLES=0 cannot opt a bridge out: the kernel ORs it with
// the sysctl. So `table bridge knit` (BRIDGE_CHAINS) at least keeps those
// frames out of conntrack: they need no NAT and no state, and conntrack was
// about half of what the inet table added per bridged packet (issue #6).
import { invalid } from '../../lib/errors.ts';
import { canonicalIP, familyOf, formatPrefix, parsePrefix } from '../../lib/ip.ts';
import type { Family } from '../../lib/ip.ts';
import type { FirewallNetwork, FirewallState, PortMapping } from './types.ts';

export const TABLE = 'knit';

/** The sets and maps of the table, with their nft types. */
export const SETS = {
  /** every Knit bridge */
  bridges: 'type ifname;',
  /** bridges of internal networks: nothing forwarded in or out */
  internal: 'type ifname;',
  /** bridges of NAT-mode networks: reachable from outside only via published ports */
  nat_bridges: 'type ifname;',
  /** "br" . "br" for every bridge: nft cannot compare iifname with oifname */
  same_bridge: 'type ifname . ifname;',
  /**
   * subnet . bridge of NAT-mode networks, matched against saddr . iifname.
   * Keyed by bridge too, so that networks of different tenants may use the
   * same or overlapping subnets: a bare interval set would refuse overlaps
   * and share one element between two networks.
   */
  nat4: 'type ipv4_addr . ifname; flags interval;',
  nat6: 'type ipv6_addr . ifname; flags interval;',
  /** subnet . its bridge, for every network */
  local4: 'type ipv4_addr . ifname; flags interval;',
  local6: 'type ipv6_addr . ifname; flags interval;',
} as const;

export const MAPS = {
  /** host address . proto . host port : endpoint address . endpoint port */
  pub4: 'type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;',
  /** proto . host port on any local address : endpoint address . port */
  pub4any: 'type inet_proto . inet_service : ipv4_addr . inet_service;',
  pub6: 'type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service;',
  pub6any: 'type inet_proto . inet_service : ipv6_addr . inet_service;',
} as const;

export type SetName = keyof typeof SETS;
export type MapName = keyof typeof MAPS;

/** Chains and their rules, in order. None of them ever changes after the load. */
export const CHAINS: Record<string, { hook?: string; rules: string[] }> = {
  prerouting: {
    // From outside and from sandboxes (which reach the host through their bridge).
    hook: 'type nat hook prerouting priority dstnat; policy accept;',
    rules: ['jump publish'],
  },
  output: {
    // From the host itself, 127.0.0.1 included (needs route_localnet, see Firewall).
    hook: 'type nat hook output priority -100; policy accept;',
    rules: ['jump publish'],
  },
  publish: {
    rules: [
      // A specific host address wins over "any address" by coming first.
      'meta l4proto { tcp, udp } dnat ip to ip daddr . meta l4proto . th dport map @pub4',
      'meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . th dport map @pub4any',
      'meta l4proto { tcp, udp } dnat ip6 to ip6 daddr . meta l4proto . th dport map @pub6',
      'meta l4proto { tcp, udp } fib daddr type local dnat ip6 to meta l4proto . th dport map @pub6any',
    ],
  },
  postrouting: {
    hook: 'type nat hook postrouting priority srcnat; policy accept;',
    rules: [
      // The host reached a published port via 127.0.0.1: the endpoint cannot answer 127/8.
      'ct status dnat ip saddr 127.0.0.0/8 oifname @bridges masquerade',
      // Hairpin: a sandbox reached its own network's published port via a host address;
      // without this the endpoint would answer it directly, from the wrong address.
      'ct status dnat ip saddr . oifname @local4 masquerade',
      'ct status dnat ip6 saddr . oifname @local6 masquerade',
      // Outbound: from a NAT-mode network's subnet, leaving through anything but its bridge.
      'ip saddr . iifname @nat4 iifname . oifname != @same_bridge masquerade',
      'ip6 saddr . iifname @nat6 iifname . oifname != @same_bridge masquerade',
    ],
  },
  forward: {
    hook: 'type filter hook forward priority filter; policy accept;',
    rules: [
      // Within one bridge (seen here only with br_netfilter): always allowed.
      'iifname . oifname @same_bridge accept',
      'iifname @internal drop',
      'oifname @internal drop',
      'ct state established,related accept',
      'ct status dnat oifname @bridges accept',
      // Isolation: a sandbox on two networks talks over its own interface on each.
      'iifname @bridges oifname @bridges drop',
      'oifname @nat_bridges drop',
    ],
  },
};

/**
 * Host ends of Knit's veths: `kn` + 11 hex (hostIfnameFor in src/engine/ids.ts).
 * The bridge family cannot name the bridge of a frame without nft_meta_bridge
 * (`meta ibrname`), which some kernels lack; the port's name it always has.
 */
export const PORT_PATTERN = 'kn*';

/**
 * `table bridge knit`. Its prerouting hook runs before br_netfilter's
 * (priority 0). `pkttype other` at that point means the destination MAC is
 * not the bridge's own (the bridge sets PACKET_HOST for those before the
 * hook): the frame is bridged from one sandbox to another, never routed,
 * DNAT'd or masqueraded, so conntrack is skipped. Frames to the gateway's MAC
 * (outbound, published ports, hairpin) and broadcasts stay tracked.
 */
export const BRIDGE_CHAINS: Record<string, { hook: string; rules: string[] }> = {
  prerouting: {
    hook: 'type filter hook prerouting priority -300; policy accept;',
    rules: [`meta pkttype other iifname "${PORT_PATTERN}" notrack`],
  },
};

const IFNAME = /^[A-Za-z0-9_.+@-]{1,15}$/;

function ifname(name: string, field = 'bridge'): string {
  if (!IFNAME.test(name)) {
    throw invalid(field, `'${name}' is not a usable interface name (1-15 of A-Z a-z 0-9 _ . + @ -)`);
  }
  return `"${name}"`;
}

function port(n: number, field: string): number {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw invalid(field, `${n} is not a port (1-65535)`);
  return n;
}

/** Elements per set for one network; a set missing from the result gets nothing. */
export function networkElements(n: FirewallNetwork): Partial<Record<SetName, string[]>> {
  const br = ifname(n.bridge);
  const out: Record<SetName, string[]> = {
    bridges: [br],
    internal: n.internal ? [br] : [],
    nat_bridges: n.masquerade && !n.internal ? [br] : [],
    same_bridge: [`${br} . ${br}`],
    nat4: [],
    nat6: [],
    local4: [],
    local6: [],
  };
  for (const cidr of n.subnets) {
    const p = parsePrefix(cidr, 'subnets', false);
    const text = formatPrefix(p);
    const fam = p.family === 4 ? '4' : '6';
    out[`local${fam}`].push(`${text} . ${br}`);
    if (n.masquerade && !n.internal) out[`nat${fam}`].push(`${text} . ${br}`);
  }
  return out;
}

/** One map element: `key : value`, keyed separately so deletes can name the key alone. */
export interface MapElement {
  map: MapName;
  key: string;
  value: string;
  /** The mapping it came from, validated and canonical (hostIP undefined = any). */
  mapping: PortMapping;
}

function isAny(ip: string): boolean {
  return ip === '0.0.0.0' || ip === '::';
}

/** Validates a mapping and returns it with canonical addresses (any address = undefined). */
export function normalizeMapping(m: PortMapping): PortMapping {
  if (m.proto !== 'tcp' && m.proto !== 'udp') {
    throw invalid('ports.proto', `'${String(m.proto)}' is not a protocol (tcp or udp)`);
  }
  const containerIP = canonicalIP(m.containerIP, 'ports.containerIP');
  let hostIP: string | undefined;
  if (m.hostIP !== undefined && m.hostIP !== '') {
    hostIP = canonicalIP(m.hostIP, 'ports.hostIP');
    if (familyOf(hostIP) !== familyOf(containerIP)) {
      throw invalid('ports.hostIP', `${hostIP} and endpoint address ${containerIP} are of different IP families`);
    }
    if (isAny(hostIP)) hostIP = undefined;
  }
  return {
    proto: m.proto,
    hostIP,
    hostPort: port(m.hostPort, 'ports.hostPort'),
    containerIP,
    containerPort: port(m.containerPort, 'ports.containerPort'),
  };
}

export function mapElement(mapping: PortMapping): MapElement {
  const m = normalizeMapping(mapping);
  const fam: Family = familyOf(m.containerIP) === 4 ? 4 : 6;
  const value = `${m.containerIP} . ${m.containerPort}`;
  if (m.hostIP === undefined) return { map: `pub${fam}any`, key: `${m.proto} . ${m.hostPort}`, value, mapping: m };
  return { map: `pub${fam}`, key: `${m.hostIP} . ${m.proto} . ${m.hostPort}`, value, mapping: m };
}

export function mapElementText(e: MapElement): string {
  return `${e.key} : ${e.value}`;
}

function describe(e: MapElement): string {
  return `${e.map} { ${e.key} }`;
}

/** Elements of every set and map for a whole state, deduplicated; conflicting keys throw. */
export function stateElements(state: FirewallState): {
  sets: Record<SetName, string[]>;
  maps: Record<MapName, MapElement[]>;
} {
  const sets = Object.fromEntries(Object.keys(SETS).map((k) => [k, new Set<string>()])) as Record<
    SetName,
    Set<string>
  >;
  for (const n of state.networks) {
    for (const [name, elems] of Object.entries(networkElements(n)) as [SetName, string[]][]) {
      for (const e of elems) sets[name].add(e);
    }
  }
  const maps = Object.fromEntries(Object.keys(MAPS).map((k) => [k, new Map<string, MapElement>()])) as Record<
    MapName,
    Map<string, MapElement>
  >;
  for (const p of state.ports) {
    const e = mapElement(p);
    const prev = maps[e.map].get(e.key);
    if (prev !== undefined && prev.value !== e.value) {
      throw invalid('ports', `${describe(e)} is mapped twice: to ${prev.value} and to ${e.value}`);
    }
    maps[e.map].set(e.key, e);
  }
  return {
    sets: Object.fromEntries(Object.entries(sets).map(([k, v]) => [k, [...v]])) as Record<SetName, string[]>,
    maps: Object.fromEntries(Object.entries(maps).map(([k, v]) => [k, [...v.values()]])) as Record<
      MapName,
      MapElement[]
    >,
  };
}

function elementsLine(elems: string[]): string {
  return elems.length === 0 ? '' : ` elements = { ${elems.join(', ')} };`;
}

/**
 * The whole table as one nft buffer that replaces any existing one in a
 * single transaction (nft 1.0.6 has no `destroy`: declaring the table first
 * makes the delete always valid).
 */
export function rulesetText(state: FirewallState, table = TABLE): string {
  const { sets, maps } = stateElements(state);
  const lines = [`table inet ${table}`, `delete table inet ${table}`, `table inet ${table} {`];
  for (const [name, type] of Object.entries(SETS) as [SetName, string][]) {
    lines.push(`  set ${name} { ${type}${elementsLine(sets[name])} }`);
  }
  for (const [name, type] of Object.entries(MAPS) as [MapName, string][]) {
    lines.push(`  map ${name} { ${type}${elementsLine(maps[name].map(mapElementText))} }`);
  }
  for (const [name, chain] of Object.entries(CHAINS)) {
    lines.push(`  chain ${name} {`);
    if (chain.hook !== undefined) lines.push(`    ${chain.hook}`);
    for (const r of chain.rules) lines.push(`    ${r}`);
    lines.push('  }');
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** `table bridge <table>` as one nft buffer that replaces any existing one. */
export function bridgeRulesetText(table = TABLE): string {
  const lines = [`table bridge ${table}`, `delete table bridge ${table}`, `table bridge ${table} {`];
  for (const [name, chain] of Object.entries(BRIDGE_CHAINS)) {
    lines.push(`  chain ${name} {`, `    ${chain.hook}`, ...chain.rules.map((r) => `    ${r}`), '  }');
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
