// Knit's firewall in one namespace: the `inet knit` table (and `bridge knit`;
// `netdev knit` is the fast path's, see fastpath.ts), loaded whole once
// (start, reconcile) and then changed only element by element.
//
// What the caller must do besides (sysctls are per netns, and not ours to
// decide): net.ipv4.ip_forward=1 (and net.ipv6.conf.all.forwarding=1 for
// IPv6) in the namespace; net.ipv4.conf.<bridge>.route_localnet=1 on each
// bridge whose published ports must answer on 127.0.0.1 from the host
// (otherwise the kernel drops the DNAT'd packet with its 127/8 source).
// Published ports cannot be reached via [::1]: IPv6 has no route_localnet.
//
// Element changes go to the kernel as nf_tables netlink (Nft.elements), not
// as nft text: ~0.02 ms of CPU per published port instead of ~0.1 ms.
import { conflict } from '../../lib/errors.ts';
import type { Nft } from '../../kernel/nft.ts';
import { NftError } from '../../kernel/nft.ts';
import { MAX_BATCH } from '../../kernel/nft-elements.ts';
import type { ElementChange, NftElements } from '../../kernel/nft-elements.ts';
import { Fastpath } from './fastpath.ts';
import { canonicalIP, familyOf } from '../../lib/ip.ts';
import { decodeMapValue, encodeMapElement, encodeNetworkElements } from './elements.ts';
import {
  BRIDGE_CHAINS,
  bridgeRulesetText,
  CHAINS,
  MAPS,
  mapElement,
  mapElementText,
  rulesetText,
  SETS,
  TABLE,
} from './ruleset.ts';
import type { MapElement, MapName } from './ruleset.ts';
import type { FirewallNetwork, FirewallState, PortMapping, Proto } from './types.ts';

/** nft's words for "that element (or table) is not there". */
function isAbsent(err: unknown): boolean {
  return err instanceof NftError && /No such file or directory|element does not exist/.test(err.nftMessage);
}

export class Firewall {
  readonly table: string;
  #nft: Nft;
  #elements: NftElements;
  /**
   * What this process published ("map key" -> value): removing a port then
   * needs no get-element round trip to check it is still ours.
   * Filled by ensure(); a key it does not know is looked up in the kernel.
   */
  #published = new Map<string, string>();

  /**
   * False once the kernel refused `table bridge` (no nf_tables bridge
   * family): bridged frames are then tracked, as before it existed.
   */
  #bridgeTable = true;

  /** `table netdev knit`: frames between sandboxes of a network, port to port. */
  readonly fastpath: Fastpath;

  constructor(nft: Nft, options?: { table?: string }) {
    this.#nft = nft;
    this.#elements = nft.elements;
    this.table = options?.table ?? TABLE;
    this.fastpath = new Fastpath(nft, this.table);
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
    this.fastpath.load(state.fastpath ?? []);
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
    // Adding an element that is there already is not an error (no NLM_F_EXCL).
    this.#elements.commit(encodeNetworkElements(n).map(({ set, elem, label }) => this.#change('add', set, elem, label)));
  }

  removeNetwork(n: FirewallNetwork): void {
    this.#elements.deleteAll(encodeNetworkElements(n).map(({ set, elem, label }) => this.#change('delete', set, elem, label)));
  }

  /**
   * Publishes host ports. Re-adding the same mapping is fine; a host port
   * already published to another endpoint throws 'conflict' and adds none.
   */
  addPorts(ports: PortMapping[]): void {
    const elems = ports.map(mapElement);
    if (elems.length === 0) return;
    const errs = this.#elements.apply(elems.map((e) => this.#change('add', e.map, encodeMapElement(e), mapElementText(e))));
    const failedAt = errs.findIndex((e) => e !== undefined);
    if (failedAt < 0) {
      for (const e of elems) this.#published.set(slot(e), e.value);
      return;
    }
    // Past MAX_BATCH, batches before the failed one were applied: undo what they added.
    const applied = elems.slice(0, failedAt - (failedAt % MAX_BATCH)).filter((e) => !this.#published.has(slot(e)));
    this.#elements.deleteAll(applied.map((e) => this.#change('delete', e.map, encodeMapElement(e), mapElementText(e))));
    errs.forEach((err, i) => {
      const e = elems[i];
      if (err?.errnoCode !== 'EEXIST' || e === undefined) return;
      const current = this.#lookup(e);
      if (current !== undefined && current !== e.value) {
        throw conflict(`host port ${describePort(e)} is already published to ${current.replace(' . ', ':')}`, 'ports');
      }
      // Not in the kernel (the batch was undone): an earlier mapping of this call took the key.
      const twin = elems.slice(0, i).find((o) => o.map === e.map && o.key === e.key);
      throw conflict(
        `host port ${describePort(e)} is given twice, to ${(twin?.value ?? '?').replace(' . ', ':')} and to ${e.value.replace(' . ', ':')}`,
        'ports',
      );
    });
    throw errs[failedAt];
  }

  /**
   * Unpublishes host ports. Keys absent, or published to another endpoint
   * (an undo after a conflict), are left alone.
   */
  removePorts(ports: PortMapping[]): void {
    const elems = ports.map(mapElement);
    if (elems.length === 0) return;
    const mine = elems.filter((e) => (this.#published.get(slot(e)) ?? this.#lookup(e)) === e.value);
    this.#elements.deleteAll(mine.map((e) => this.#change('delete', e.map, encodeMapElement(e), mapElementText(e))));
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

  #change(verb: 'add' | 'delete', set: string, elem: ElementChange['elem'], label: string): ElementChange {
    return { verb, table: this.table, set, elem, label };
  }

  /** The value a map holds for an element's key ("addr . port"), or undefined. */
  #lookup(e: MapElement): string | undefined {
    const got = this.#elements.get(this.table, e.map, encodeMapElement(e).key);
    if (got?.data === undefined) return undefined;
    return decodeMapValue(familyOf(e.mapping.containerIP) === 6 ? 6 : 4, got.data);
  }
}

function slot(e: MapElement): string {
  return `${e.map} ${e.key}`;
}

function describePort(e: MapElement): string {
  const parts = e.key.split(' . ');
  if (parts.length === 2) return `${parts[0]}/${parts[1]} (any address)`;
  return `${parts[0]}:${parts[2]}/${parts[1]}`;
}
