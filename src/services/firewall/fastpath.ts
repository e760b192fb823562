// The fast path between sandboxes of one network: `table netdev knit`,
// loaded with the firewall's other tables (Firewall.ensure) and then changed
// one port at a time.
import { NftError, type Nft } from '../../kernel/nft.ts';
import { NftElementError, type ElementChange, type NftChange, type NftElements } from '../../kernel/nft-elements.ts';
import { NF_NETDEV_INGRESS, NFPROTO_NETDEV } from '../../kernel/nft-chains.ts';
import { encodeFastpathElement } from './elements.ts';
import type { FastpathPort } from './types.ts';

/**
 * `table netdev knit`, the fast path between sandboxes of one network. Its
 * chain hooks the ingress of each host-side veth (the chain's devices are
 * changed one port at a time, over netlink: see Fastpath.add). A
 * unicast frame to the MAC of another sandbox of the same network goes
 * straight out of that sandbox's port (`fwd`): no bridge, no br_netfilter,
 * no inet hooks. The key is the ingress port's interface group (its
 * bridge's ifindex, set when the veth is made) and the destination MAC, so a
 * frame never crosses to another network's port: the map only pairs ports of
 * one bridge. Anything else (broadcast, the gateway's MAC, a MAC not in the
 * map) finds no element and goes on to the bridge as before.
 *
 * The chain is declared with a placeholder device, removed right after the
 * load: nft 1.0 cannot declare a netdev chain without one. On kernels before
 * 6.16, which hook netdev chains only on devices that exist, that load fails
 * and there is no fast path.
 */
export const FASTPATH = {
  chain: 'fastpath',
  /** devgroup . ether_addr : iface_index */
  map: 'ports',
  priority: 0,
  placeholder: 'knit-fastpath',
} as const;

/** `table netdev <table>` as one nft buffer that replaces any existing one. */
export function netdevRulesetText(table: string): string {
  return [
    `table netdev ${table}`,
    `delete table netdev ${table}`,
    `table netdev ${table} {`,
    `  map ${FASTPATH.map} { type devgroup . ether_addr : iface_index; }`,
    `  chain ${FASTPATH.chain} {`,
    `    type filter hook ingress devices = { "${FASTPATH.placeholder}" } priority ${FASTPATH.priority}; policy accept;`,
    `    fwd to meta iifgroup . ether daddr map @${FASTPATH.map}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

export class Fastpath {
  readonly table: string;
  #nft: Nft;
  #elements: NftElements;
  /**
   * False until loaded, and when the kernel refused the table (netdev hooks
   * by name need Linux 6.16): frames between sandboxes then take the bridge.
   */
  #enabled = false;

  constructor(nft: Nft, table: string) {
    this.#nft = nft;
    this.#elements = nft.elements;
    this.table = table;
  }

  get enabled(): boolean {
    return this.#enabled;
  }

  /** Replaces the table with one holding these ports; off (and no table) when the kernel cannot have it. */
  load(ports: FastpathPort[]): void {
    this.#enabled = false;
    try {
      this.#nft.run(netdevRulesetText(this.table));
    } catch (err) {
      if (!(err instanceof NftError)) throw err;
      return;
    }
    const changes: NftChange[] = [this.#devices('delete-devices', [FASTPATH.placeholder])];
    if (ports.length > 0) changes.push(this.#devices('add-devices', ports.map((p) => p.ifname)));
    for (const p of ports) changes.push(this.#element('add', p));
    try {
      this.#elements.commit(changes);
      this.#enabled = true;
    } catch (err) {
      // Only a speed-up: without it every frame takes the bridge, as it would anyway.
      // The table goes too, so no chain is left hooked with a half-filled map.
      try {
        this.#nft.run(`delete table netdev ${this.table}\n`);
      } catch {
        // already gone
      }
      if (!(err instanceof NftElementError)) throw err;
    }
  }

  /**
   * Puts a port on the fast path: frames from its network's other ports to
   * its MAC leave through it. Replaces what an earlier port of that MAC
   * left (a crash between a detach and its cleanup).
   */
  add(p: FastpathPort): void {
    if (!this.#enabled) return;
    const add: NftChange[] = [this.#devices('add-devices', [p.ifname]), this.#element('add', p)];
    const errs = this.#elements.apply(add);
    if (errs.every((e) => e === undefined)) return;
    if (errs.some((e) => e?.errnoCode === 'ENOENT')) {
      // The table is gone (an `nft flush ruleset`): only a speed-up, so frames take the bridge until the next start rebuilds it.
      this.#enabled = false;
      return;
    }
    if (errs[1]?.errnoCode !== 'EEXIST') throw errs.find((e) => e !== undefined);
    this.#elements.commit([this.#element('delete', p), ...add]);
  }

  /** Takes a port off the fast path; what is already gone is fine. */
  remove(p: Pick<FastpathPort, 'ifname' | 'mac'> & { group: number | undefined }): void {
    if (!this.#enabled) return;
    const changes: NftChange[] = [this.#devices('delete-devices', [p.ifname])];
    // No group when the bridge is gone: its ports' elements went stale with it, and the next start drops them.
    if (p.group !== undefined) changes.push(this.#element('delete', { ...p, group: p.group }));
    this.#elements.deleteAll(changes);
  }

  #devices(verb: 'add-devices' | 'delete-devices', devices: string[]): NftChange {
    return { verb, table: this.table, chain: FASTPATH.chain, hook: NF_NETDEV_INGRESS, priority: FASTPATH.priority, devices };
  }

  #element(verb: 'add' | 'delete', p: Pick<FastpathPort, 'group' | 'mac'> & { ifindex?: number }): ElementChange {
    // A delete's message carries the key alone, whatever the element holds.
    return { verb, family: NFPROTO_NETDEV, table: this.table, set: FASTPATH.map, elem: encodeFastpathElement(p), label: `${p.group} . ${p.mac}` };
  }
}
