// Knit's firewall in one namespace: the `inet knit` table, loaded whole once
// (start, reconcile) and then changed only element by element.
//
// What the caller must do besides (sysctls are per netns, and not ours to
// decide): net.ipv4.ip_forward=1 (and net.ipv6.conf.all.forwarding=1 for
// IPv6) in the namespace; net.ipv4.conf.<bridge>.route_localnet=1 on each
// bridge whose published ports must answer on 127.0.0.1 from the host
// (otherwise the kernel drops the DNAT'd packet with its 127/8 source).
// Published ports cannot be reached via [::1]: IPv6 has no route_localnet.
import { conflict, KnitError } from '../../lib/errors.ts';
import type { Nft } from '../../kernel/nft.ts';
import { NftError } from '../../kernel/nft.ts';
import { canonicalIP } from '../../lib/ip.ts';
import {
  BRIDGE_CHAINS,
  bridgeRulesetText,
  CHAINS,
  MAPS,
  mapElement,
  mapElementText,
  networkElements,
  rulesetText,
  SETS,
  TABLE,
} from './ruleset.ts';
import type { MapElement, MapName, SetName } from './ruleset.ts';
import type { FirewallNetwork, FirewallState, PortMapping, Proto } from './types.ts';

/** nft's words for "that element (or table) is not there". */
function isAbsent(err: unknown): boolean {
  return err instanceof NftError && /No such file or directory|element does not exist/.test(err.nftMessage);
}

function isClash(err: unknown): boolean {
  return err instanceof NftError && /File exists/.test(err.nftMessage);
}

export class Firewall {
  readonly table: string;
  #nft: Nft;
  /**
   * What this process published ("map key" -> value): removing a port then
   * needs no `get element` round trip (~1.5 ms) to check it is still ours.
   * Filled by ensure(); a key it does not know is looked up in the kernel.
   */
  #published = new Map<string, string>();

  /**
   * False once the kernel refused `table bridge` (no nf_tables bridge
   * family): bridged frames are then tracked, as before it existed.
   */
  #bridgeTable = true;

  constructor(nft: Nft, options?: { table?: string }) {
    this.#nft = nft;
    this.table = options?.table ?? TABLE;
  }

  /** Replaces the whole table with exactly this state, in one transaction. */
  ensure(state: FirewallState): void {
    this.#nft.run(rulesetText(state, this.table));
    // Only a speed-up (see BRIDGE_CHAINS): its absence changes no verdict.
    try {
      this.#nft.run(bridgeRulesetText(this.table));
      this.#bridgeTable = true;
    } catch (err) {
      if (!(err instanceof NftError)) throw err;
      this.#bridgeTable = false;
    }
    this.#published.clear();
    for (const e of state.ports.map(mapElement)) this.#published.set(slot(e), e.value);
  }

  /**
   * True when the inet table exists with all its sets, maps and chains (rules
   * counted), and so does the bridge table unless the kernel refused it.
   */
  isPresent(): boolean {
    const inet = this.#contents('inet');
    if (inet === undefined) return false;
    const complete =
      [...Object.keys(SETS), ...Object.keys(MAPS)].every((s) => inet.sets.has(s)) &&
      Object.entries(CHAINS).every(([name, c]) => inet.rules.get(name) === c.rules.length);
    if (!complete || !this.#bridgeTable) return complete;
    const bridge = this.#contents('bridge');
    return bridge !== undefined && Object.entries(BRIDGE_CHAINS).every(([name, c]) => bridge.rules.get(name) === c.rules.length);
  }

  /** Set and map names, and rules per chain, of one of Knit's tables; undefined when absent. */
  #contents(family: 'inet' | 'bridge'): { sets: Set<string>; rules: Map<string, number> } | undefined {
    let listing: unknown;
    try {
      listing = this.#nft.list(`table ${family} ${this.table}`);
    } catch (err) {
      if (isAbsent(err)) return undefined;
      throw err;
    }
    const items = (listing as { nftables?: Record<string, { name?: string; chain?: string }>[] }).nftables ?? [];
    const sets = new Set<string>();
    const rules = new Map<string, number>();
    for (const item of items) {
      if (item.set?.name !== undefined) sets.add(item.set.name);
      if (item.map?.name !== undefined) sets.add(item.map.name);
      if (item.chain?.name !== undefined) rules.set(item.chain.name, rules.get(item.chain.name) ?? 0);
      const chain = item.rule?.chain;
      if (chain !== undefined) rules.set(chain, (rules.get(chain) ?? 0) + 1);
    }
    return { sets, rules };
  }

  addNetwork(n: FirewallNetwork): void {
    const cmds = Object.entries(networkElements(n))
      .filter(([, elems]) => elems.length > 0)
      .map(([set, elems]) => this.#elements('add', set, elems));
    // Adding an element that is there already is not an error for sets.
    this.#nft.run(cmds.join('\n'));
  }

  removeNetwork(n: FirewallNetwork): void {
    const groups = Object.entries(networkElements(n)) as [SetName, string[]][];
    this.#deleteAll(groups.flatMap(([set, elems]) => elems.map((e) => ({ set, elem: e }))));
  }

  /**
   * Publishes host ports. Re-adding the same mapping is fine; a host port
   * already published to another endpoint throws 'conflict' and adds none.
   */
  addPorts(ports: PortMapping[]): void {
    const elems = ports.map(mapElement);
    if (elems.length === 0) return;
    const cmds = groupByMap(elems).map(([map, es]) => this.#elements('add', map, es.map(mapElementText)));
    try {
      this.#nft.run(cmds.join('\n'));
      for (const e of elems) this.#published.set(slot(e), e.value);
    } catch (err) {
      if (!isClash(err)) throw err;
      for (const e of elems) {
        const current = this.#lookup(e);
        if (current !== undefined && current !== e.value) {
          throw conflict(`host port ${describePort(e)} is already published to ${current.replace(' . ', ':')}`, 'ports');
        }
      }
      throw err;
    }
  }

  /**
   * Unpublishes host ports. Keys absent, or published to another endpoint
   * (an undo after a conflict), are left alone.
   */
  removePorts(ports: PortMapping[]): void {
    const elems = ports.map(mapElement);
    if (elems.length === 0) return;
    const mine = elems.filter((e) => (this.#published.get(slot(e)) ?? this.#lookup(e)) === e.value);
    this.#deleteAll(mine.map((e) => ({ set: e.map, elem: e.key })));
    for (const e of mine) this.#published.delete(slot(e));
  }

  /** Every published port, one mapping per host port. */
  listPorts(): PortMapping[] {
    const out: PortMapping[] = [];
    for (const map of Object.keys(MAPS) as MapName[]) {
      const listing = this.#nft.list(`map inet ${this.table} ${map}`) as {
        nftables: { map?: { elem?: [{ concat: (string | number)[] }, { concat: (string | number)[] }][] } }[];
      };
      for (const item of listing.nftables) {
        for (const [k, v] of item.map?.elem ?? []) {
          const key = k.concat;
          const [containerIP, containerPort] = v.concat as [string, number];
          const [hostIP, proto, hostPort] = (key.length === 3 ? key : [undefined, ...key]) as [
            string | undefined,
            Proto,
            number,
          ];
          out.push({ proto, hostIP, hostPort, containerIP: canonicalIP(containerIP), containerPort });
        }
      }
    }
    return out;
  }

  #elements(verb: 'add' | 'delete', set: string, elems: string[]): string {
    return `${verb} element inet ${this.table} ${set} { ${elems.join(', ')} }`;
  }

  /** Deletes elements in one transaction; if some are absent, one by one, skipping those. */
  #deleteAll(items: { set: string; elem: string }[]): void {
    if (items.length === 0) return;
    const cmds = items.map((i) => this.#elements('delete', i.set, [i.elem]));
    try {
      this.#nft.run(cmds.join('\n'));
      return;
    } catch (err) {
      if (!isAbsent(err)) throw err;
    }
    for (const cmd of cmds) {
      try {
        this.#nft.run(cmd);
      } catch (err) {
        if (!isAbsent(err)) throw err;
      }
    }
  }

  /** The value a map holds for an element's key ("addr . port"), or undefined. */
  #lookup(e: MapElement): string | undefined {
    let text: string;
    try {
      // `get element` answers in text even on a JSON context (nft 1.0.6).
      text = this.#nft.run(`get element inet ${this.table} ${e.map} { ${e.key} }`);
    } catch (err) {
      if (isAbsent(err)) return undefined;
      throw err;
    }
    const m = /elements = \{ (.*?) : (.*?) \}/s.exec(text);
    if (m?.[2] === undefined) throw new KnitError('internal', `cannot read nft element from: ${text}`);
    const [addr, p] = m[2].trim().split(' . ');
    return `${canonicalIP(addr ?? '')} . ${p ?? ''}`;
  }
}

function slot(e: MapElement): string {
  return `${e.map} ${e.key}`;
}

function groupByMap(elems: MapElement[]): [MapName, MapElement[]][] {
  const by = new Map<MapName, MapElement[]>();
  for (const e of elems) by.set(e.map, [...(by.get(e.map) ?? []), e]);
  return [...by];
}

function describePort(e: MapElement): string {
  const parts = e.key.split(' . ');
  if (parts.length === 2) return `${parts[0]}/${parts[1]} (any address)`;
  return `${parts[0]}:${parts[2]}/${parts[1]}`;
}
