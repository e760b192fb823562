// The engine's records in the store: networks and sandboxes keyed by name
// (so a create with compare-on-absent is the uniqueness check), endpoints by id.
import type { Store } from '../store/store.ts';
import { Records } from '../store/records.ts';
import { Endpoint, Network, Sandbox } from '../model/index.ts';

export class State {
  readonly store: Store;
  private readonly nets: Records<Network>;
  private readonly sbs: Records<Sandbox>;
  private readonly eps: Records<Endpoint>;

  constructor(store: Store) {
    this.store = store;
    this.nets = new Records(store, 'networks', Network);
    this.sbs = new Records(store, 'sandboxes', Sandbox);
    this.eps = new Records(store, 'endpoints', Endpoint);
  }

  async networks(): Promise<Network[]> {
    return (await this.nets.list()).map((r) => r.value);
  }
  async network(name: string): Promise<Network | undefined> {
    return (await this.nets.get(name))?.value;
  }
  async sandboxes(): Promise<Sandbox[]> {
    return (await this.sbs.list()).map((r) => r.value);
  }
  async sandbox(name: string): Promise<Sandbox | undefined> {
    return (await this.sbs.get(name))?.value;
  }
  async endpoints(): Promise<Endpoint[]> {
    return (await this.eps.list()).map((r) => r.value);
  }

  /** `create`: fails with a conflict when the name is taken (even by a concurrent writer). */
  async putNetwork(n: Network, create = false): Promise<void> {
    if (create) await this.nets.put(n.name, n, 0);
    else await this.store.txn([], [this.nets.putOp(n.name, n)]);
  }
  async putSandbox(s: Sandbox, create = false): Promise<void> {
    if (create) await this.sbs.put(s.name, s, 0);
    else await this.store.txn([], [this.sbs.putOp(s.name, s)]);
  }
  async putEndpoint(e: Endpoint): Promise<void> {
    await this.store.txn([], [this.eps.putOp(e.id, e)]);
  }
  async deleteNetwork(name: string): Promise<void> {
    await this.nets.delete(name);
  }
  async deleteSandbox(name: string): Promise<void> {
    await this.sbs.delete(name);
  }
  async deleteEndpoint(id: string): Promise<void> {
    await this.eps.delete(id);
  }
}
