// The Engine: the one place where operations happen. Every front-end (API,
// CLI, CNI, Docker) calls these methods. Each mutation validates, records the
// desired state (pending), realizes it through a driver, then marks it ready;
// a failure undoes what was done, and a crash is undone or completed by
// reconcile() on the next start.
//
// The operations themselves live by concept: lookups.ts, networks.ts,
// sandboxes.ts, endpoints.ts, published-ports.ts. Each takes the
// EngineContext (context.ts) this class builds: its records, host, IPAM,
// mutex, events and listeners' reply work.
import { EventEmitter } from 'node:events';
import type { Store } from '../store/store.ts';
import type { Host } from './host.ts';
import type { ConnectRequest, EndpointView, NetworkView, SandboxView } from '../model/api.ts';
import type { Endpoint, Network, NetworkCreate, PortMapping, Sandbox } from '../model/index.ts';
import { Mutex } from './mutex.ts';
import { State } from './state.ts';
import { Ipam } from '../ipam/ipam.ts';
import { isNetns, keepSpareNetns } from '../kernel/netns.ts';
import type { EngineContext, EngineEvents } from './context.ts';
import type { SpareDirs } from '../lib/spare-dirs.ts';
import * as lookups from './lookups.ts';
import * as networks from './networks.ts';
import * as sandboxes from './sandboxes.ts';
import * as endpoints from './endpoints.ts';
import { setEndpointPorts } from './published-ports.ts';

export class Engine extends EventEmitter<EngineEvents> {
  readonly state: State;
  readonly host: Host;
  readonly ipam: Ipam;
  private readonly mutex = new Mutex();
  /** Directory for /etc/netns-style per-sandbox files (resolv.conf, hosts). */
  readonly etcNetnsDir: string;
  /** What the operations' files reach of this engine, the mutex and the reply work included. */
  readonly #ctx: EngineContext;

  /** Made-ahead /etc/netns dirs (the daemon's; none: each is made when needed). */
  readonly etcDirs: SpareDirs | undefined;

  constructor(
    store: Store,
    host: Host,
    opts: { etcNetnsDir?: string; etcDirs?: SpareDirs; /** Namespaces kept made ahead (0: none). */ spareNetns?: number } = {},
  ) {
    super();
    this.state = new State(store);
    this.host = host;
    this.ipam = new Ipam(store);
    this.etcNetnsDir = opts.etcNetnsDir ?? '/etc/netns';
    this.etcDirs = opts.etcDirs;
    this.#ctx = {
      state: this.state,
      host: this.host,
      ipam: this.ipam,
      mutex: this.mutex,
      etcNetnsDir: this.etcNetnsDir,
      etcDirs: this.etcDirs,
      emit: this.emit.bind(this),
    };
    // One namespace made ahead: a sandbox create takes it and the next is made after the reply.
    keepSpareNetns(opts.spareNetns ?? 1);
  }

  // ---- lookups -----------------------------------------------------------

  network(ref: string): Promise<Network> {
    return lookups.findNetwork(this.state, ref);
  }

  sandbox(ref: string): Promise<Sandbox> {
    return lookups.findSandbox(this.state, ref);
  }

  listNetworks(): Promise<NetworkView[]> {
    return lookups.listNetworks(this.state);
  }

  inspectNetwork(ref: string): Promise<NetworkView> {
    return lookups.inspectNetwork(this.state, ref);
  }

  listSandboxes(): Promise<SandboxView[]> {
    return lookups.listSandboxes(this.state);
  }

  inspectSandbox(ref: string): Promise<SandboxView> {
    return lookups.inspectSandbox(this.state, ref);
  }

  counts(): Promise<{ networks: number; sandboxes: number; endpoints: number }> {
    return lookups.counts(this.state);
  }

  // ---- networks ----------------------------------------------------------

  /**
   * `adoptIpam`: IPAM reservations (Ipam network keys) made ahead of the
   * network, as Docker's RequestPool does; they are dropped in the same
   * critical section that gives the network its pools, and put back if the
   * create fails.
   */
  createNetwork(input: unknown, opts: { adoptIpam?: string[] } = {}): Promise<NetworkView> {
    return networks.createNetwork(this.#ctx, input, opts);
  }

  deleteNetwork(ref: string): Promise<void> {
    return networks.deleteNetwork(this.#ctx, ref);
  }

  // ---- sandboxes ---------------------------------------------------------

  createSandbox(input: unknown): Promise<SandboxView> {
    return sandboxes.createSandbox(this.#ctx, input);
  }

  deleteSandbox(ref: string): Promise<void> {
    return sandboxes.deleteSandbox(this.#ctx, ref);
  }

  // ---- endpoints ---------------------------------------------------------

  connect(netRef: string, req: ConnectRequest): Promise<EndpointView> {
    return endpoints.connect(this.#ctx, netRef, req);
  }

  disconnect(netRef: string, sandboxRef: string): Promise<void> {
    return endpoints.disconnect(this.#ctx, netRef, sandboxRef);
  }

  /** The endpoint with this id, or undefined. */
  async endpoint(id: string): Promise<Endpoint | undefined> {
    return this.state.endpoint(id);
  }

  /** Disconnect by endpoint id (Docker's DeleteEndpoint); an unknown id is fine. */
  disconnectEndpoint(id: string): Promise<void> {
    return endpoints.disconnectEndpoint(this.#ctx, id);
  }

  /**
   * Replaces the ports an endpoint publishes (Docker's Program/Revoke
   * ExternalConnectivity). A host port of 0 gets a free one from the
   * ephemeral range, as Docker does.
   */
  setEndpointPorts(id: string, want: PortMapping[]): Promise<PortMapping[]> {
    return setEndpointPorts(this.#ctx, id, want);
  }

  // ---- for listeners, reconcile and the agent ----------------------------

  /** Prefixes routed in the host namespace: default pools skip them. */
  hostRoutes(): string[] {
    return this.host.routes();
  }

  /** For reconcile and the agent: run fn under the engine's mutex. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(fn);
  }

  /** For reconcile: remove a sandbox while already holding the mutex. */
  removeSandboxLocked(sb: Sandbox): Promise<void> {
    return sandboxes.removeSandboxLocked(this.#ctx, sb);
  }

  /** For undo and reconcile: remove an endpoint, kernel included, while already holding the mutex. */
  removeEndpointLocked(ep: Endpoint, sb: Sandbox | undefined): Promise<void> {
    return endpoints.removeEndpointLocked(this.#ctx, ep, sb);
  }

  static isSandboxAlive(sb: Sandbox): boolean {
    return isNetns(sb.netnsPath);
  }
}

export type { EngineEvents, NetworkCreate };
