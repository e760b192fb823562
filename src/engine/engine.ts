// The Engine: the one place where operations happen. Every front-end (API,
// CLI, CNI, Docker) calls these methods. Each mutation validates, records the
// desired state (pending), realizes it through a driver, then marks it ready;
// a failure undoes what was done, and a crash is undone or completed by
// reconcile() on the next start.
import { EventEmitter } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { mkdir as mkdirAsync } from 'node:fs/promises';
import { join } from 'node:path';
import type { Store } from '../store/store.ts';
import type { Host } from './host.ts';
import type { ConnectRequest, EndpointView, NetworkView, SandboxView } from '../model/api.ts';
import {
  type Endpoint,
  type Network,
  type NetworkCreate,
  type PortMapping,
  type Sandbox,
  type SandboxCreate,
  checkName,
  checkIfname,
  NetworkCreate as NetworkCreateSchema,
  SandboxCreate as SandboxCreateSchema,
} from '../model/index.ts';
import { KnitError, conflict, invalid, messageOf, notFound } from '../lib/errors.ts';
import { Mutex } from './mutex.ts';
import { State } from './state.ts';
import { newId, hostIfnameFor } from './ids.ts';
import { checkBandwidth, shapesEgress, shapesIngress } from '../drivers/bandwidth.ts';
import { driverFor } from '../drivers/index.ts';
import { networkView, sandboxView, endpointView } from './views.ts';
import { planNetwork, requestedPools } from './plan-network.ts';
import { Ipam } from '../ipam/ipam.ts';
import { createNetns, deleteNetns, isNetns, keepSpareNetns, prepareNetnsTarget } from '../kernel/netns.ts';
import { macFromIPv4, randomMac } from '../kernel/mac.ts';
import { parsePublish, checkHostPortFree } from '../services/ports.ts';
import { familyOf, parsePrefix } from '../lib/ip.ts';
import { zodError } from './zod-error.ts';

export interface EngineEvents {
  'endpoint-up': [ep: Endpoint, net: Network, sb: Sandbox];
  'endpoint-down': [ep: Endpoint, net: Network, sb: Sandbox];
  /** A network was created (realized in the kernel) or removed; services such as DNS follow them. */
  'network-up': [net: Network];
  'network-down': [net: Network];
}

export class Engine extends EventEmitter<EngineEvents> {
  readonly state: State;
  readonly host: Host;
  readonly ipam: Ipam;
  private readonly mutex = new Mutex();
  /** Directory for /etc/netns-style per-sandbox files (resolv.conf, hosts). */
  readonly etcNetnsDir: string;
  /** Listeners' work the running operation awaits before it answers (beforeReply). */
  readonly #beforeReply: Promise<unknown>[] = [];

  constructor(store: Store, host: Host, opts: { etcNetnsDir?: string; /** Namespaces kept made ahead (0: none). */ spareNetns?: number } = {}) {
    super();
    this.state = new State(store);
    this.host = host;
    this.ipam = new Ipam(store);
    this.etcNetnsDir = opts.etcNetnsDir ?? '/etc/netns';
    // One namespace made ahead: a sandbox create takes it and the next is made after the reply.
    keepSpareNetns(opts.spareNetns ?? 1);
  }

  // ---- lookups -----------------------------------------------------------

  async network(ref: string): Promise<Network> {
    const byName = await this.state.network(ref);
    if (byName) return byName;
    const all = await this.state.networks();
    const hits = all.filter((n) => n.id === ref || (ref.length >= 3 && n.id.startsWith(ref)));
    if (hits.length === 1) return hits[0] as Network;
    if (hits.length > 1) throw invalid('network', `'${ref}' matches ${hits.length} networks; give more of the id`);
    throw notFound(`network '${ref}' not found; list networks with 'knit network ls'`);
  }

  async sandbox(ref: string): Promise<Sandbox> {
    const byName = await this.state.sandbox(ref);
    if (byName) return byName;
    const all = await this.state.sandboxes();
    const hits = all.filter((s) => s.id === ref || (ref.length >= 3 && s.id.startsWith(ref)));
    if (hits.length === 1) return hits[0] as Sandbox;
    if (hits.length > 1) throw invalid('sandbox', `'${ref}' matches ${hits.length} sandboxes; give more of the id`);
    throw notFound(`sandbox '${ref}' not found; list sandboxes with 'knit sandbox ls'`);
  }

  async listNetworks(): Promise<NetworkView[]> {
    const [nets, eps, sbs] = await Promise.all([this.state.networks(), this.state.endpoints(), this.state.sandboxes()]);
    const byId = new Map(sbs.map((s) => [s.id, s]));
    return nets.map((n) => networkView(n, eps, byId));
  }

  async inspectNetwork(ref: string): Promise<NetworkView> {
    const net = await this.network(ref);
    const [eps, sbs] = await Promise.all([this.state.endpoints(), this.state.sandboxes()]);
    return networkView(net, eps, new Map(sbs.map((s) => [s.id, s])));
  }

  async listSandboxes(): Promise<SandboxView[]> {
    const [nets, eps, sbs] = await Promise.all([this.state.networks(), this.state.endpoints(), this.state.sandboxes()]);
    const byId = new Map(nets.map((n) => [n.id, n]));
    return sbs.map((s) => sandboxView(s, eps, byId));
  }

  async inspectSandbox(ref: string): Promise<SandboxView> {
    const sb = await this.sandbox(ref);
    const [nets, eps] = await Promise.all([this.state.networks(), this.state.endpoints()]);
    return sandboxView(sb, eps, new Map(nets.map((n) => [n.id, n])));
  }

  async counts(): Promise<{ networks: number; sandboxes: number; endpoints: number }> {
    const [n, s, e] = await Promise.all([this.state.networks(), this.state.sandboxes(), this.state.endpoints()]);
    return { networks: n.length, sandboxes: s.length, endpoints: e.length };
  }

  // ---- networks ----------------------------------------------------------

  /**
   * `adoptIpam`: IPAM reservations (Ipam network keys) made ahead of the
   * network, as Docker's RequestPool does; they are dropped in the same
   * critical section that gives the network its pools, and put back if the
   * create fails.
   */
  async createNetwork(input: unknown, opts: { adoptIpam?: string[] } = {}): Promise<NetworkView> {
    const req = parseInput(NetworkCreateSchema, input, 'network');
    return this.mutex.run(async () => {
      checkName('name', req.name);
      const existing = await this.state.network(req.name);
      if (existing) throw conflict(`network '${req.name}' already exists`, 'name');
      const net = planNetwork(req, newId);
      const driver = driverFor(net.driver); // refuse a driver this build lacks before anything is written
      const all = await this.state.networks();
      const clash = net.bridge ? all.find((n) => n.bridge === net.bridge) : undefined;
      if (clash) throw conflict(`bridge name '${net.bridge}' is used by network '${clash.name}'`, 'opt bridge');
      const adopted = await this.dropReservations(opts.adoptIpam ?? []);
      if (driver.usesIpam) {
        const pools = await this.ipam.createNetwork(net.id, {
          tenant: net.tenant,
          pools: requestedPools(req),
          ipv6: net.ipv6,
          hostRoutes: this.hostRoutes(),
        }).catch(async (err: unknown) => {
          await this.restoreReservations(adopted);
          throw err;
        });
        net.subnets = pools.pools.map((p) => ({
          subnet: p.subnet,
          gateway: p.gateway,
          auxAddresses: p.auxAddresses,
          ...(p.ipRange ? { ipRange: p.ipRange } : {}),
        }));
      }
      try {
        await this.state.putNetwork(net, true);
      } catch (err) {
        await this.ipam.deleteNetwork(net.id);
        await this.restoreReservations(adopted);
        throw err;
      }
      try {
        await driver.createNetwork(this.host, net);
      } catch (err) {
        await this.undo(`network ${net.name}`, [
          () => driver.deleteNetwork(this.host, net),
          () => this.ipam.deleteNetwork(net.id),
          () => this.state.deleteNetwork(net.name),
          () => this.restoreReservations(adopted),
        ]);
        throw err;
      }
      this.emit('network-up', net);
      return networkView(net, [], new Map());
    });
  }

  async deleteNetwork(ref: string): Promise<void> {
    await this.mutex.run(async () => {
      const net = await this.network(ref);
      if (net.origin === 'builtin') throw invalid('network', `'${net.name}' is a built-in network and cannot be removed`);
      const eps = (await this.state.endpoints()).filter((e) => e.networkId === net.id);
      if (eps.length > 0) {
        const sbs = new Map((await this.state.sandboxes()).map((s) => [s.id, s.name]));
        const names = eps.map((e) => sbs.get(e.sandboxId) ?? e.sandboxId).join(', ');
        throw conflict(`network '${net.name}' has active endpoints (${names}); disconnect them or remove those sandboxes first`);
      }
      await driverFor(net.driver).deleteNetwork(this.host, net);
      await this.ipam.deleteNetwork(net.id);
      await this.state.deleteNetwork(net.name);
      this.emit('network-down', net);
    });
  }

  private async dropReservations(keys: string[]): Promise<import('../ipam/ipam.ts').NetworkPools[]> {
    const saved: import('../ipam/ipam.ts').NetworkPools[] = [];
    for (const key of keys) {
      const r = await this.ipam.getNetwork(key);
      if (!r) continue;
      saved.push(r);
      await this.ipam.deleteNetwork(key);
    }
    return saved;
  }

  private async restoreReservations(saved: import('../ipam/ipam.ts').NetworkPools[]): Promise<void> {
    for (const r of saved) {
      await this.ipam.createNetwork(r.network, { tenant: r.tenant, pools: r.pools, ipv4: r.pools.some((p) => !p.subnet.includes(':')), ipv6: r.pools.some((p) => p.subnet.includes(':')) });
    }
  }

  // ---- sandboxes ---------------------------------------------------------

  async createSandbox(input: unknown): Promise<SandboxView> {
    const req = parseInput(SandboxCreateSchema, input, 'sandbox');
    return this.mutex.run(async () => {
      checkName('name', req.name);
      const existing = await this.state.sandbox(req.name);
      if (existing) {
        if (existing.state === 'ready' && sameSandboxRequest(existing, req)) return this.inspectSandbox(existing.name);
        throw conflict(`sandbox '${req.name}' already exists`, 'name');
      }
      const sb = await this.planSandbox(req);
      if (sb.ownsNetns && isNetns(sb.netnsPath)) {
        // Not recorded, so not Knit's: never adopt (or later delete) someone else's namespace.
        throw conflict(`a network namespace already exists at ${sb.netnsPath}; remove it (ip netns del ${sb.name}) or choose another sandbox name`, 'name');
      }
      const attaches = req.networks ?? [];
      // Nothing to make (a namespace made by someone else, no networks yet): one write, already ready.
      const nothingToMake = !sb.ownsNetns && attaches.length === 0;
      await this.state.putSandbox(nothingToMake ? { ...sb, state: 'ready' } : sb, true);
      // File creates (the netns mount point, the /etc/netns dir) cost most of
      // a millisecond on some filesystems: they run on the libuv pool while
      // the first attach allocates and records, and are awaited before the
      // kernel work that needs them. Both are removed with the sandbox.
      const prepared = sb.ownsNetns ? this.prepareFiles(sb, attaches.length > 0) : undefined;
      let netnsMade = !sb.ownsNetns;
      const makeNetns = async (): Promise<void> => {
        if (netnsMade) return;
        await prepared;
        createNetns(sb.netnsPath);
        netnsMade = true;
      };
      const made: Endpoint[] = [];
      try {
        const ready: Sandbox = { ...sb, state: 'ready' };
        for (const [i, a] of attaches.entries()) {
          const net = await this.network(a.network);
          // The last attach marks the sandbox ready in the write that marks its endpoint ready.
          const last = i === attaches.length - 1 ? ready : undefined;
          made.push(await this.attach(net, sb, { ...a, sandbox: sb.name }, i === 0 && a.defaultRoute !== false, makeNetns, last));
        }
        await makeNetns();
        if (!nothingToMake && attaches.length === 0) await this.state.putSandbox(ready);
      } catch (err) {
        await this.undo(`sandbox ${sb.name}`, [
          ...made.reverse().map((ep) => () => this.removeEndpointLocked(ep, sb)),
          async () => {
            if (!sb.ownsNetns) return;
            await prepared?.catch(() => undefined); // a create still in flight would outlive the delete
            deleteNetns(sb.netnsPath);
            rmSync(join(this.etcNetnsDir, sb.name), { recursive: true, force: true });
          },
          () => this.state.deleteSandbox(sb.name),
        ]);
        throw err;
      }
      const view = await this.inspectSandbox(sb.name);
      await this.settleListeners();
      return view;
    });
  }

  /** The netns mount point and, when the sandbox will have endpoints, its /etc/netns dir (DNS writes there on endpoint-up). */
  private async prepareFiles(sb: Sandbox, withEtc: boolean): Promise<void> {
    const etc = withEtc ? mkdirAsync(join(this.etcNetnsDir, sb.name), { recursive: true, mode: 0o755 }) : undefined;
    const target = prepareNetnsTarget(sb.netnsPath);
    await Promise.all([target, etc]);
  }

  private async planSandbox(req: SandboxCreate): Promise<Sandbox> {
    const now = new Date().toISOString();
    checkDnsConfig(req.dns);
    const base = {
      id: newId(),
      name: req.name,
      labels: req.labels ?? {},
      origin: req.origin ?? 'api',
      dns: { servers: req.dns?.servers ?? [], search: req.dns?.search ?? [], options: req.dns?.options ?? [] },
      state: 'pending' as const,
      created: now,
      ...(req.hostname ? { hostname: req.hostname } : {}),
    };
    if (req.join) {
      if (req.networks?.length) throw invalid('networks', `a sandbox that joins '${req.join}' shares its networks; give no --network`);
      const target = await this.sandbox(req.join);
      return { ...base, netnsPath: target.netnsPath, ownsNetns: false, joined: target.name };
    }
    const hostNet = (req.networks ?? []).find((a) => a.network === 'host');
    if (hostNet) {
      if ((req.networks ?? []).length > 1) throw invalid('networks', `a sandbox on the host network cannot join other networks`);
      return { ...base, netnsPath: this.host.netnsPath, ownsNetns: false };
    }
    if (req.netnsPath) return { ...base, netnsPath: req.netnsPath, ownsNetns: false };
    return { ...base, netnsPath: join(this.host.netnsDir, req.name), ownsNetns: true };
  }

  async deleteSandbox(ref: string): Promise<void> {
    const slow: (() => Promise<void>)[] = [];
    await this.mutex.run(async () => {
      const sb = await this.sandbox(ref);
      const members = (await this.state.sandboxes()).filter((s) => s.joined === sb.name);
      if (members.length > 0) {
        throw conflict(`sandbox '${sb.name}' is shared by ${members.map((m) => m.name).join(', ')}; remove them first`);
      }
      await this.removeSandbox(sb, slow);
    });
    // Link deletes wait for an RCU grace period; they run after the lock.
    await Promise.all(slow.map((f) => f().catch(() => undefined)));
  }

  /** Removes a sandbox and everything it holds; used by delete and by reconcile. */
  private async removeSandbox(sb: Sandbox, slow: (() => Promise<void>)[]): Promise<void> {
    const eps = (await this.state.endpoints()).filter((e) => e.sandboxId === sb.id);
    const nets = new Map((await this.state.networks()).map((n) => [n.id, n]));
    for (const ep of eps) {
      const detach = await this.forgetEndpoint(ep, nets.get(ep.networkId), sb);
      // Deleting the namespace takes its veths with it, batched by the kernel.
      if (detach && !sb.ownsNetns) slow.push(detach);
    }
    if (sb.ownsNetns) deleteNetns(sb.netnsPath);
    rmSync(join(this.etcNetnsDir, sb.name), { recursive: true, force: true });
    await this.state.deleteSandbox(sb.name);
  }

  // ---- endpoints ---------------------------------------------------------

  async connect(netRef: string, req: ConnectRequest): Promise<EndpointView> {
    if (!req || typeof req.sandbox !== 'string') throw invalid('sandbox', 'connect needs the sandbox to attach');
    return this.mutex.run(async () => {
      const net = await this.network(netRef);
      const sb = await this.sandbox(req.sandbox);
      if (sb.joined) throw invalid('sandbox', `'${sb.name}' shares the namespace of '${sb.joined}'; connect that one instead`);
      const ep = await this.attach(net, sb, req, !(await this.hasDefaultRoute(sb)));
      await this.settleListeners();
      return endpointView(ep, net, sb);
    });
  }

  async disconnect(netRef: string, sandboxRef: string): Promise<void> {
    let slow: (() => Promise<void>) | undefined;
    await this.mutex.run(async () => {
      const net = await this.network(netRef);
      const sb = await this.sandbox(sandboxRef);
      const ep = (await this.state.endpoints()).find((e) => e.networkId === net.id && e.sandboxId === sb.id);
      if (!ep) throw notFound(`sandbox '${sb.name}' is not connected to network '${net.name}'`);
      slow = await this.forgetEndpoint(ep, net, sb);
    });
    if (slow) await slow();
  }

  /** The endpoint with this id, or undefined. */
  async endpoint(id: string): Promise<Endpoint | undefined> {
    return this.state.endpoint(id);
  }

  /** Disconnect by endpoint id (Docker's DeleteEndpoint); an unknown id is fine. */
  async disconnectEndpoint(id: string): Promise<void> {
    let slow: (() => Promise<void>) | undefined;
    await this.mutex.run(async () => {
      const ep = await this.endpoint(id);
      if (!ep) return;
      const net = (await this.state.networks()).find((n) => n.id === ep.networkId);
      const sb = (await this.state.sandboxes()).find((s) => s.id === ep.sandboxId);
      slow = await this.forgetEndpoint(ep, net, sb);
    });
    if (slow) await slow();
  }

  /**
   * Replaces the ports an endpoint publishes (Docker's Program/Revoke
   * ExternalConnectivity). A host port of 0 gets a free one from the
   * ephemeral range, as Docker does.
   */
  async setEndpointPorts(id: string, want: PortMapping[]): Promise<PortMapping[]> {
    return this.mutex.run(async () => {
      const ep = await this.endpoint(id);
      if (!ep) throw notFound(`endpoint ${id.slice(0, 12)} not found`);
      const net = (await this.state.networks()).find((n) => n.id === ep.networkId);
      if (!net) throw notFound(`network ${ep.networkId.slice(0, 12)} of endpoint ${id.slice(0, 12)} not found`);
      if (want.length && (net.driver !== 'bridge' || net.internal)) {
        throw invalid('publish', `ports can be published only on a bridge network that is not internal; '${net.name}' is ${net.internal ? 'internal' : net.driver}`);
      }
      const others = (await this.state.endpoints()).filter((e) => e.id !== id);
      const chosen: PortMapping[] = [];
      for (const p of want) {
        const hostIP = p.hostIP ?? net.hostBindingIPv4;
        const base = { proto: p.proto, containerPort: p.containerPort, ...(hostIP ? { hostIP } : {}) };
        if (p.hostPort !== 0) {
          const m = { ...base, hostPort: p.hostPort };
          checkPortsFree([m], [...others, { ...ep, ports: chosen }]);
          if (!ep.ports.some((q) => samePort(q, m))) checkHostPortFree(m.proto, m.hostPort, m.hostIP);
          chosen.push(m);
          continue;
        }
        chosen.push(pickEphemeral(base, [...others, { ...ep, ports: chosen }]));
      }
      if (ep.ports.length) this.host.firewall.removePorts(firewallPorts(ep));
      const next: Endpoint = { ...ep, ports: chosen };
      try {
        if (chosen.length) this.host.firewall.addPorts(firewallPorts(next));
      } catch (err) {
        if (ep.ports.length) this.host.firewall.addPorts(firewallPorts(ep));
        throw err;
      }
      await this.state.putEndpoint(next);
      return chosen;
    });
  }

  private async hasDefaultRoute(sb: Sandbox): Promise<boolean> {
    return (await this.state.endpoints()).some((e) => e.sandboxId === sb.id && e.defaultRoute);
  }

  /** Attach inside the mutex: allocate, record pending, realize, mark ready; undo on failure. */
  private async attach(
    net: Network,
    sb: Sandbox,
    req: ConnectRequest,
    defaultRoute: boolean,
    /** Runs after the endpoint is recorded, before the kernel work (createSandbox makes the netns here). */
    beforeKernel?: () => Promise<void>,
    /** Written with the ready endpoint, in one transaction (createSandbox's last attach). */
    readySandbox?: Sandbox,
  ): Promise<Endpoint> {
    const all = await this.state.endpoints();
    const mine = all.filter((e) => e.sandboxId === sb.id);
    const prior = mine.find((e) => e.networkId === net.id);
    if (prior) {
      if (prior.state === 'ready') {
        // Idempotent: the same attach again.
        if (readySandbox) await this.state.putSandbox(readySandbox);
        return prior;
      }
      throw conflict(`sandbox '${sb.name}' is being attached to '${net.name}' already`);
    }
    const driver = driverFor(net.driver);
    const id = req.endpointId ?? newId();
    if (req.endpointId && all.some((e) => e.id === req.endpointId)) throw conflict(`endpoint ${req.endpointId.slice(0, 12)} exists already`, 'endpointId');
    if (req.hostPeer && net.driver !== 'bridge') throw invalid('hostPeer', `a host-side peer needs a bridge network; '${net.name}' is ${net.driver}`);
    const ifname = checkIfname('ifname', req.hostPeer ?? req.ifname ?? nextIfname(mine.map((e) => e.ifname)));
    if (mine.some((e) => e.ifname === ifname)) throw conflict(`sandbox '${sb.name}' already has an interface ${ifname}`, 'ifname');
    const ports = (req.publish ?? []).flatMap((p) => parsePublish(p));
    if (ports.length && (net.driver !== 'bridge' || net.internal)) {
      throw invalid('publish', `ports can be published only on a bridge network that is not internal; '${net.name}' is ${net.internal ? 'internal' : net.driver}`);
    }
    const mappings: PortMapping[] = ports.map((p) => ({
      proto: p.proto,
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      ...(p.hostIP ?? net.hostBindingIPv4 ? { hostIP: (p.hostIP ?? net.hostBindingIPv4) as string } : {}),
    }));
    checkPortsFree(mappings, all);
    const bandwidth = req.bandwidth && (shapesIngress(req.bandwidth) || shapesEgress(req.bandwidth)) ? req.bandwidth : undefined;
    if (bandwidth) {
      checkBandwidth(bandwidth);
      if (net.driver !== 'bridge') throw invalid('bandwidth', `shaping needs a bridge network; '${net.name}' is ${net.driver}`);
    }

    const ep: Endpoint = {
      id,
      networkId: net.id,
      sandboxId: sb.id,
      ifname,
      mac: '',
      aliases: req.aliases ?? [],
      ports: mappings,
      defaultRoute,
      state: 'pending',
      created: new Date().toISOString(),
      ...(net.driver === 'bridge' ? { hostIfname: hostIfnameFor(id) } : {}),
      ...(req.hostPeer ? { hostPeer: req.hostPeer } : {}),
      ...(bandwidth ? { bandwidth } : {}),
    };
    try {
      if (driver.usesIpam) {
        for (const sub of net.subnets) {
          const family = sub.subnet.includes(':') ? 6 : 4;
          const want = family === 4 ? req.ip : req.ipv6;
          const ip = await this.ipam.allocate(net.id, { family, owner: id, ...(want ? { ip: want } : {}) });
          const cidr = `${ip}/${parsePrefix(sub.subnet).len}`;
          if (family === 4) ep.ipv4 ??= cidr;
          else ep.ipv6 ??= cidr;
        }
        if (req.ip && !ep.ipv4) throw invalid('ip', `network '${net.name}' has no IPv4 subnet for ${req.ip}`);
        if (req.ipv6 && !ep.ipv6) throw invalid('ipv6', `network '${net.name}' has no IPv6 subnet for ${req.ipv6}`);
      }
      ep.mac = req.mac ? req.mac.toLowerCase() : ep.ipv4 ? macFromIPv4(ep.ipv4.split('/')[0] as string) : randomMac();
      await this.state.putEndpoint(ep);
      for (const p of mappings) checkHostPortFree(p.proto, p.hostPort, p.hostIP);
      await beforeKernel?.();
      await driver.attach(this.host, net, sb, ep);
      if (mappings.length) this.host.firewall.addPorts(firewallPorts(ep));
      const ready: Endpoint = { ...ep, state: 'ready' };
      await this.state.putEndpoint(ready, readySandbox);
      this.emit('endpoint-up', ready, net, sb);
      return ready;
    } catch (err) {
      await this.undo(`endpoint of ${sb.name} on ${net.name}`, [
        () => (mappings.length ? this.host.firewall.removePorts(firewallPorts(ep)) : undefined),
        () => driver.detach(this.host, net, sb, ep),
        () => this.ipam.releaseOwner(id, net.id),
        () => this.state.deleteEndpoint(id),
      ]);
      throw err;
    }
  }

  /**
   * The one way an endpoint goes: its published ports, its addresses and its
   * record, then listeners (DNS) are told. Returns the kernel detach for the
   * caller to run, after the mutex where it can (a link delete waits for an
   * RCU grace period); undefined when network or sandbox is gone already.
   */
  private async forgetEndpoint(ep: Endpoint, net: Network | undefined, sb: Sandbox | undefined): Promise<(() => Promise<void>) | undefined> {
    if (ep.ports.length) this.host.firewall.removePorts(firewallPorts(ep));
    await this.ipam.releaseOwner(ep.id, ep.networkId);
    await this.state.deleteEndpoint(ep.id);
    if (!net || !sb) return undefined;
    this.emit('endpoint-down', ep, net, sb);
    return async () => driverFor(net.driver).detach(this.host, net, sb, ep);
  }

  /** Runs undo steps, each even when an earlier one failed; keeps the first error's context in the log. */
  private async undo(what: string, steps: (() => unknown)[]): Promise<void> {
    // A listener's files still being written must not land after the undo removed them.
    await this.settleListeners();
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        process.stderr.write(`knit: undoing ${what}: ${messageOf(err)}\n`);
      }
    }
  }

  /** Prefixes routed in the host namespace: default pools skip them. */
  hostRoutes(): string[] {
    return this.host.routes();
  }

  /**
   * For listeners of an event: work the operation that emitted it awaits
   * before it answers, still under the mutex (e.g. a sandbox's /etc/netns
   * files, which a caller may read as soon as it has the answer). It runs
   * meanwhile, beside the rest of the operation.
   */
  beforeReply(work: Promise<unknown>): void {
    this.#beforeReply.push(work.catch(() => undefined));
  }

  private async settleListeners(): Promise<void> {
    while (this.#beforeReply.length > 0) await Promise.all(this.#beforeReply.splice(0));
  }

  /** For reconcile and the agent: run fn under the engine's mutex. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(fn);
  }

  /** For reconcile: remove a sandbox while already holding the mutex. */
  async removeSandboxLocked(sb: Sandbox): Promise<void> {
    const slow: (() => Promise<void>)[] = [];
    await this.removeSandbox(sb, slow);
    await Promise.all(slow.map((f) => f().catch(() => undefined)));
  }

  /** For undo and reconcile: remove an endpoint, kernel included, while already holding the mutex. */
  async removeEndpointLocked(ep: Endpoint, sb: Sandbox | undefined): Promise<void> {
    const net = await this.state.networks().then((all) => all.find((n) => n.id === ep.networkId));
    const detach = await this.forgetEndpoint(ep, net, sb);
    if (detach) await detach();
  }

  /** Makes sure the per-sandbox /etc/netns dir exists (DNS writes resolv.conf there). */
  etcDirFor(sb: Sandbox): string {
    const dir = join(this.etcNetnsDir, sb.name);
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  static isSandboxAlive(sb: Sandbox): boolean {
    return isNetns(sb.netnsPath);
  }
}

/** --dns servers go into resolv.conf, which takes bare addresses; search domains and options are single tokens. */
function checkDnsConfig(dns: SandboxCreate['dns']): void {
  (dns?.servers ?? []).forEach((ip, i) => {
    if (familyOf(ip) === undefined) throw invalid(`dns.servers[${i}]`, `'${ip}' is not an IP address (e.g. 10.10.0.1; resolv.conf has no port)`);
  });
  for (const key of ['search', 'options'] as const) {
    (dns?.[key] ?? []).forEach((t, i) => {
      if (!/^[^\s#;]+$/.test(t)) throw invalid(`dns.${key}[${i}]`, `'${t}' must be one word without '#' or ';' (e.g. ${key === 'search' ? 'corp.example' : 'ndots:2'})`);
    });
  }
}

function nextIfname(used: string[]): string {
  for (let i = 0; ; i++) if (!used.includes(`eth${i}`)) return `eth${i}`;
}

function sameSandboxRequest(sb: Sandbox, req: SandboxCreate): boolean {
  return (req.join ?? undefined) === (sb.joined ?? undefined) && (!req.netnsPath || req.netnsPath === sb.netnsPath);
}

export function firewallPorts(ep: Endpoint): import('../services/firewall/index.ts').PortMapping[] {
  const out: import('../services/firewall/index.ts').PortMapping[] = [];
  for (const p of ep.ports) {
    const v6Host = p.hostIP?.includes(':');
    const target = v6Host ? ep.ipv6 : ep.ipv4;
    if (!target) continue;
    out.push({
      proto: p.proto,
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      containerIP: target.split('/')[0] as string,
      ...(p.hostIP && p.hostIP !== '0.0.0.0' && p.hostIP !== '::' ? { hostIP: p.hostIP } : {}),
    });
  }
  return out;
}

/** A host port may be published once per protocol and host address (an unspecified address covers all). */
function checkPortsFree(want: PortMapping[], endpoints: Endpoint[]): void {
  const any = (ip?: string) => !ip || ip === '0.0.0.0' || ip === '::';
  for (const p of want) {
    for (const e of endpoints) {
      for (const q of e.ports) {
        if (q.proto !== p.proto || q.hostPort !== p.hostPort) continue;
        if (any(p.hostIP) || any(q.hostIP) || p.hostIP === q.hostIP) {
          throw conflict(`host port ${p.hostPort}/${p.proto} is already published by endpoint ${e.id.slice(0, 12)}; choose another host port`, 'publish');
        }
      }
    }
  }
}

function samePort(a: PortMapping, b: PortMapping): boolean {
  return a.proto === b.proto && a.hostPort === b.hostPort && (a.hostIP ?? '') === (b.hostIP ?? '');
}

/** The first host port of Docker's ephemeral range that no endpoint and no local socket uses. */
function pickEphemeral(base: Omit<PortMapping, 'hostPort'>, endpoints: Endpoint[]): PortMapping {
  for (let port = 49153; port <= 65535; port++) {
    const m: PortMapping = { ...base, hostPort: port };
    try {
      checkPortsFree([m], endpoints);
      checkHostPortFree(m.proto, port, m.hostIP);
      return m;
    } catch (err) {
      if (err instanceof KnitError && err.code === 'conflict') continue;
      throw err;
    }
  }
  throw new KnitError('exhausted', `no free host port in 49153-65535 for ${base.proto} port ${base.containerPort}`);
}

function parseInput<T>(schema: import('zod').ZodType<T>, input: unknown, what: string): T {
  const r = schema.safeParse(input);
  if (!r.success) throw zodError(r.error, what);
  return r.data;
}

export type { NetworkCreate };
