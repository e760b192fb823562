// The name table behind Knit's embedded DNS: which names exist on which
// network, and who may see them. Answers are scoped like aardvark-dns: the
// query's source address identifies the asking sandbox, and it sees only the
// names of networks it is attached to. Changes take effect on the next query.
import { canonicalIP, familyOf, formatIP, parseIP } from '../../lib/ip.ts';
import { invalid } from '../../lib/errors.ts';
import { TYPE_A, TYPE_AAAA, type Answer } from './wire.ts';

export interface DnsEndpoint {
  /** Unique per attachment (one sandbox on one network). */
  id: string;
  /**
   * The sandbox this attachment belongs to; attachments of one sandbox share
   * their view, so a sandbox on two networks sees both sets of names.
   * Defaults to `id` (a sandbox with a single attachment).
   */
  sandbox?: string;
  network: string;
  /** Sandbox name, hostname, aliases; the first is the primary (used for PTR). */
  names: string[];
  ipv4?: string;
  ipv6?: string;
}

/**
 * What a local lookup found: the endpoints with an address of each family and
 * their answer records, already rotated. Shared between queries while the
 * name's endpoints do not change: never modify one.
 */
export interface NameHit {
  readonly v4: readonly Endpoint[];
  readonly v6: readonly Endpoint[];
  readonly a: readonly Answer[];
  readonly aaaa: readonly Answer[];
}

/** An endpoint as stored: normalised, with addresses pre-encoded for the wire. */
export interface Endpoint {
  readonly id: string;
  readonly sandbox: string;
  readonly network: string;
  readonly names: readonly string[];
  readonly ipv4: string | undefined;
  readonly ipv6: string | undefined;
  /** 4 or 16 address bytes, ready to copy into an A/AAAA answer. */
  readonly v4Bytes: Buffer | undefined;
  readonly v6Bytes: Buffer | undefined;
  /** The A and AAAA answer records, made once. */
  readonly a: Answer | undefined;
  readonly aaaa: Answer | undefined;
  /** [network]: the scope of a client whose sandbox has only this attachment. */
  readonly ownScope: readonly string[];
}

/** Endpoints that answer for one name on one network, and its round-robin turn. */
interface NameEntry {
  endpoints: Set<Endpoint>;
  /** The unrotated answer, made on first lookup after a change. */
  hit: NameHit | undefined;
}

interface NetworkTable {
  names: Map<string, NameEntry>;
  /** Address (canonical) → endpoints holding it, for PTR. */
  byAddress: Map<string, Set<Endpoint>>;
  size: number;
}

const MAX_NAME = 253;
const MAX_LABEL = 63;

/** Lower-cases and strips one trailing dot; the form every lookup uses. */
export function normalizeName(name: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n.toLowerCase();
}

function checkName(name: string, field: string): string {
  const n = normalizeName(name.trim());
  if (n === '' || n.length > MAX_NAME) {
    throw invalid(field, `'${name}' is not a DNS name (1 to ${MAX_NAME} characters)`);
  }
  for (const label of n.split('.')) {
    if (label === '' || label.length > MAX_LABEL || /[\s\\]/.test(label)) {
      throw invalid(field, `'${name}' has an empty, over-long (>${MAX_LABEL}) or blank-containing label`);
    }
  }
  return n;
}

function addressBytes(ip: string): Buffer {
  const { family, addr } = parseIP(ip);
  const len = family === 4 ? 4 : 16;
  const b = Buffer.alloc(len);
  let v = addr;
  for (let i = len - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

export class DnsRecords {
  readonly #endpoints = new Map<string, Endpoint>();
  readonly #networks = new Map<string, NetworkTable>();
  /** Client address → endpoints holding it (normally one). */
  readonly #byClient = new Map<string, Set<Endpoint>>();
  readonly #sandboxes = new Map<string, Set<Endpoint>>();
  /** Round-robin counter per name, shared across networks: rotates every answer. */
  readonly #turns = new Map<string, number>();
  readonly #askedScopes = new Map<string, readonly string[]>();

  /** Adds or replaces (same id) an attachment's names; visible to the next query. */
  addEndpoint(e: DnsEndpoint): void {
    if (typeof e.id !== 'string' || e.id === '') throw invalid('id', 'must be a non-empty string');
    if (typeof e.network !== 'string' || e.network === '') throw invalid('network', 'must be a non-empty string');
    const network = e.network.toLowerCase();
    const names = [...new Set(e.names.map((n, i) => checkName(n, `names[${i}]`)))];
    if (names.length === 0) throw invalid('names', 'at least one name (the sandbox name) is needed');
    let ipv4: string | undefined;
    let ipv6: string | undefined;
    if (e.ipv4 !== undefined) {
      if (familyOf(e.ipv4) !== 4) throw invalid('ipv4', `'${e.ipv4}' is not an IPv4 address`);
      ipv4 = canonicalIP(e.ipv4, 'ipv4');
    }
    if (e.ipv6 !== undefined) {
      if (familyOf(e.ipv6) !== 6) throw invalid('ipv6', `'${e.ipv6}' is not an IPv6 address`);
      ipv6 = canonicalIP(e.ipv6, 'ipv6');
    }
    const v4Bytes = ipv4 === undefined ? undefined : addressBytes(ipv4);
    const v6Bytes = ipv6 === undefined ? undefined : addressBytes(ipv6);
    const ep: Endpoint = {
      id: e.id,
      sandbox: e.sandbox ?? e.id,
      network,
      names,
      ipv4,
      ipv6,
      v4Bytes,
      v6Bytes,
      a: v4Bytes === undefined ? undefined : { type: TYPE_A, rdata: v4Bytes },
      aaaa: v6Bytes === undefined ? undefined : { type: TYPE_AAAA, rdata: v6Bytes },
      ownScope: [network],
    };
    // Validation is done: from here nothing throws, so a replace is atomic.
    this.removeEndpoint(e.id);
    this.#endpoints.set(ep.id, ep);
    let table = this.#networks.get(network);
    if (table === undefined) {
      table = { names: new Map(), byAddress: new Map(), size: 0 };
      this.#networks.set(network, table);
    }
    table.size += 1;
    for (const name of names) {
      for (const key of [name, `${name}.${network}`]) {
        let entry = table.names.get(key);
        if (entry === undefined) {
          entry = { endpoints: new Set(), hit: undefined };
          table.names.set(key, entry);
        }
        entry.endpoints.add(ep);
        entry.hit = undefined;
      }
    }
    for (const ip of [ipv4, ipv6]) {
      if (ip === undefined) continue;
      addTo(table.byAddress, ip, ep);
      addTo(this.#byClient, ip, ep);
    }
    addTo(this.#sandboxes, ep.sandbox, ep);
  }

  /** Removes an attachment's names; unknown ids are ignored (detach is idempotent). */
  removeEndpoint(id: string): void {
    const ep = this.#endpoints.get(id);
    if (ep === undefined) return;
    this.#endpoints.delete(id);
    const table = this.#networks.get(ep.network);
    if (table !== undefined) {
      for (const name of ep.names) {
        for (const key of [name, `${name}.${ep.network}`]) {
          const entry = table.names.get(key);
          if (entry === undefined) continue;
          entry.endpoints.delete(ep);
          entry.hit = undefined;
          if (entry.endpoints.size === 0) {
            table.names.delete(key);
            this.#turns.delete(key);
          }
        }
      }
      for (const ip of [ep.ipv4, ep.ipv6]) if (ip !== undefined) removeFrom(table.byAddress, ip, ep);
      table.size -= 1;
      if (table.size === 0) this.#networks.delete(ep.network);
    }
    for (const ip of [ep.ipv4, ep.ipv6]) if (ip !== undefined) removeFrom(this.#byClient, ip, ep);
    removeFrom(this.#sandboxes, ep.sandbox, ep);
  }

  get(id: string): Endpoint | undefined {
    return this.#endpoints.get(id);
  }

  get size(): number {
    return this.#endpoints.size;
  }

  /**
   * Networks whose names a client may see. A known client (its source address
   * belongs to an endpoint) sees every network its sandbox is attached to; an
   * unknown one (the host, a peer outside Knit) sees the network whose DNS
   * address it asked. When overlapping subnets make an address ambiguous, the
   * endpoint on the asked network decides.
   */
  scope(client: string, asked: string | undefined): readonly string[] {
    const holders = this.#byClient.get(client);
    if (holders === undefined) return this.#askedScope(asked);
    let owner: Endpoint | undefined;
    for (const ep of holders) {
      owner = ep;
      if (ep.network === asked) break;
    }
    const mine = owner === undefined ? undefined : this.#sandboxes.get(owner.sandbox);
    if (mine === undefined) return this.#askedScope(asked);
    if (mine.size === 1) return owner!.ownScope;
    const nets = new Set<string>();
    for (const ep of mine) nets.add(ep.network);
    return [...nets];
  }

  /**
   * Addresses for `name` (already normalised) as seen by `client`, or
   * undefined when the name is not Knit's. A hit with empty lists for the
   * asked family means NODATA. Each call advances the name's rotation.
   */
  lookup(client: string, asked: string | undefined, name: string): NameHit | undefined {
    const nets = this.scope(client, asked);
    if (nets.length === 1) {
      // The common case allocates nothing: the entry's answer, rotated only when there is something to rotate.
      const entry = this.#networks.get(nets[0]!)?.names.get(name);
      if (entry === undefined) return undefined;
      entry.hit ??= hitOf(entry.endpoints);
      return entry.hit.v4.length > 1 || entry.hit.v6.length > 1 ? this.#rotated(name, entry.hit) : entry.hit;
    }
    let found: Set<Endpoint> | undefined;
    let merged: Set<Endpoint> | undefined;
    for (const net of nets) {
      const entry = this.#networks.get(net)?.names.get(name);
      if (entry === undefined) continue;
      if (found === undefined) found = entry.endpoints;
      else {
        merged ??= new Set(found);
        for (const ep of entry.endpoints) merged.add(ep);
      }
    }
    const all = merged ?? found;
    if (all === undefined) return undefined;
    const hit = hitOf(all);
    return hit.v4.length > 1 || hit.v6.length > 1 ? this.#rotated(name, hit) : hit;
  }

  /** A copy of `hit` turned by the name's counter, which advances. */
  #rotated(name: string, hit: NameHit): NameHit {
    const turn = this.#turns.get(name) ?? 0;
    this.#turns.set(name, (turn + 1) % 0x40000000);
    return { v4: rotate(hit.v4, turn), v6: rotate(hit.v6, turn), a: rotate(hit.a, turn), aaaa: rotate(hit.aaaa, turn) };
  }

  /** Unknown clients see the asked network; the one-element lists are kept, not made per query. */
  #askedScope(asked: string | undefined): readonly string[] {
    if (asked === undefined) return NO_SCOPE;
    let s = this.#askedScopes.get(asked);
    if (s === undefined) {
      if (this.#askedScopes.size >= 1024) this.#askedScopes.clear();
      s = [asked];
      this.#askedScopes.set(asked, s);
    }
    return s;
  }

  /**
   * PTR targets for an address as seen by `client`: every name of each
   * endpoint holding it, as NAME.NETWORK, primary name first. Undefined when
   * no visible endpoint holds the address.
   */
  reverse(client: string, asked: string | undefined, ip: string): string[] | undefined {
    let out: string[] | undefined;
    for (const net of this.scope(client, asked)) {
      const holders = this.#networks.get(net)?.byAddress.get(ip);
      if (holders === undefined) continue;
      out ??= [];
      for (const ep of holders) for (const n of ep.names) out.push(`${n}.${ep.network}`);
    }
    return out;
  }
}

const NO_SCOPE: readonly string[] = [];

function hitOf(endpoints: Iterable<Endpoint>): NameHit {
  const v4: Endpoint[] = [];
  const v6: Endpoint[] = [];
  for (const ep of endpoints) {
    if (ep.v4Bytes !== undefined) v4.push(ep);
    if (ep.v6Bytes !== undefined) v6.push(ep);
  }
  return { v4, v6, a: v4.map((ep) => ep.a!), aaaa: v6.map((ep) => ep.aaaa!) };
}

/** `list` turned left by `turn` places, as a new list (or itself when nothing moves). */
function rotate<T>(list: readonly T[], turn: number): readonly T[] {
  const k = list.length === 0 ? 0 : turn % list.length;
  return k === 0 ? list : [...list.slice(k), ...list.slice(0, k)];
}

function addTo<K, V>(map: Map<K, Set<V>>, key: K, v: V): void {
  let set = map.get(key);
  if (set === undefined) {
    set = new Set();
    map.set(key, set);
  }
  set.add(v);
}

function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, v: V): void {
  const set = map.get(key);
  if (set === undefined) return;
  set.delete(v);
  if (set.size === 0) map.delete(key);
}

/**
 * The address a reverse name stands for (canonical form), or undefined when
 * `name` (normalised) is not a complete in-addr.arpa / ip6.arpa name.
 */
export function reverseNameToIP(name: string): string | undefined {
  if (name.endsWith('.in-addr.arpa')) {
    const parts = name.slice(0, -'.in-addr.arpa'.length).split('.');
    if (parts.length !== 4 || !parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)) return undefined;
    return parts.reverse().join('.');
  }
  if (name.endsWith('.ip6.arpa')) {
    const nibbles = name.slice(0, -'.ip6.arpa'.length).split('.');
    if (nibbles.length !== 32 || !nibbles.every((n) => /^[0-9a-f]$/.test(n))) return undefined;
    return formatIP(6, BigInt(`0x${nibbles.reverse().join('')}`));
  }
  return undefined;
}
