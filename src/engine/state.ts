// The engine's records in the store: networks and sandboxes keyed by name
// (so a create with compare-on-absent is the uniqueness check), endpoints by id.
//
// The daemon is the only writer of these keys, so reads come from an
// in-memory copy loaded once and kept up to date write-through: an attach
// must not re-read and re-validate every record (that grew with the number
// of sandboxes). Writes still go to the store first; the copy changes only
// after a write succeeded.
import type { Store } from '../store/store.ts';
import { Records } from '../store/records.ts';
import { conflict } from '../lib/errors.ts';
import { Endpoint, Network, Sandbox } from '../model/index.ts';

interface Cache {
  nets: Map<string, Network>;
  sbs: Map<string, Sandbox>;
  eps: Map<string, Endpoint>;
}

export class State {
  readonly store: Store;
  private readonly nets: Records<Network>;
  private readonly sbs: Records<Sandbox>;
  private readonly eps: Records<Endpoint>;
  private cache: Promise<Cache> | undefined;

  constructor(store: Store) {
    this.store = store;
    this.nets = new Records(store, 'networks', Network);
    this.sbs = new Records(store, 'sandboxes', Sandbox);
    this.eps = new Records(store, 'endpoints', Endpoint);
  }

  private load(): Promise<Cache> {
    this.cache ??= (async () => ({
      nets: new Map((await this.nets.list()).map((r) => [r.id, r.value])),
      sbs: new Map((await this.sbs.list()).map((r) => [r.id, r.value])),
      eps: new Map((await this.eps.list()).map((r) => [r.id, r.value])),
    }))();
    return this.cache;
  }

  async networks(): Promise<Network[]> {
    return [...(await this.load()).nets.values()];
  }
  async network(name: string): Promise<Network | undefined> {
    return (await this.load()).nets.get(name);
  }
  async sandboxes(): Promise<Sandbox[]> {
    return [...(await this.load()).sbs.values()];
  }
  async sandbox(name: string): Promise<Sandbox | undefined> {
    return (await this.load()).sbs.get(name);
  }
  async endpoints(): Promise<Endpoint[]> {
    return [...(await this.load()).eps.values()];
  }
  async endpoint(id: string): Promise<Endpoint | undefined> {
    return (await this.load()).eps.get(id);
  }

  /** `create`: fails with a conflict when the name is taken (even by a concurrent writer). */
  async putNetwork(n: Network, create = false): Promise<void> {
    const c = await this.load();
    if (create) await this.nets.put(n.name, n, 0);
    else await this.store.txn([], [this.nets.putOp(n.name, n)]);
    c.nets.set(n.name, n);
  }
  async putSandbox(s: Sandbox, create = false): Promise<void> {
    const c = await this.load();
    if (create) await this.sbs.put(s.name, s, 0);
    else await this.store.txn([], [this.sbs.putOp(s.name, s)]);
    c.sbs.set(s.name, s);
  }
  /**
   * With `s`, the sandbox too, in the same transaction; `createSandbox`:
   * only if no sandbox of that name exists (a conflict otherwise).
   */
  async putEndpoint(e: Endpoint, s?: Sandbox, createSandbox = false): Promise<void> {
    const c = await this.load();
    const compares = s && createSandbox ? [this.sbs.compare(s.name, 0)] : [];
    const res = await this.store.txn(compares, s ? [this.eps.putOp(e.id, e), this.sbs.putOp(s.name, s)] : [this.eps.putOp(e.id, e)]);
    if (!res.ok) throw conflict(`sandbox '${s?.name ?? ''}' already exists`, 'name');
    c.eps.set(e.id, e);
    if (s) c.sbs.set(s.name, s);
  }
  async deleteNetwork(name: string): Promise<void> {
    const c = await this.load();
    await this.nets.delete(name);
    c.nets.delete(name);
  }
  async deleteSandbox(name: string): Promise<void> {
    const c = await this.load();
    await this.sbs.delete(name);
    c.sbs.delete(name);
  }
  async deleteEndpoint(id: string): Promise<void> {
    const c = await this.load();
    await this.eps.delete(id);
    c.eps.delete(id);
  }
}
