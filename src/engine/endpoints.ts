// Endpoints: a sandbox's interface on a network. An attach allocates its
// addresses, records it pending, realizes it through the network's driver
// and marks it ready; forgetting one releases the same in reverse and leaves
// the kernel detach to the caller, to run after the mutex where it can.
import type { ConnectRequest, EndpointView } from '../model/api.ts';
import { type Endpoint, type Network, type PortMapping, type Sandbox, checkIfname } from '../model/index.ts';
import { conflict, invalid, notFound } from '../lib/errors.ts';
import { parsePrefix } from '../lib/ip.ts';
import { checkBandwidth, shapesEgress, shapesIngress } from '../drivers/bandwidth.ts';
import { driverFor } from '../drivers/index.ts';
import { macFromIPv4, randomMac } from '../kernel/mac.ts';
import { parsePublish, checkHostPortFree } from '../services/ports.ts';
import { newId, hostIfnameFor } from './ids.ts';
import { endpointView } from './views.ts';
import { findNetwork, findSandbox } from './lookups.ts';
import { checkPortsFree, firewallPorts } from './published-ports.ts';
import { type EngineContext, undo } from './context.ts';

export async function connect(ctx: EngineContext, netRef: string, req: ConnectRequest): Promise<EndpointView> {
  if (!req || typeof req.sandbox !== 'string') throw invalid('sandbox', 'connect needs the sandbox to attach');
  return ctx.mutex.run(async () => {
    const net = await findNetwork(ctx.state, netRef);
    const sb = await findSandbox(ctx.state, req.sandbox);
    if (sb.joined) throw invalid('sandbox', `'${sb.name}' shares the namespace of '${sb.joined}'; connect that one instead`);
    const ep = await attach(ctx, net, sb, req, !(await hasDefaultRoute(ctx, sb)));
    return endpointView(ep, net, sb);
  });
}

export async function disconnect(ctx: EngineContext, netRef: string, sandboxRef: string): Promise<void> {
  let slow: (() => Promise<void>) | undefined;
  await ctx.mutex.run(async () => {
    const net = await findNetwork(ctx.state, netRef);
    const sb = await findSandbox(ctx.state, sandboxRef);
    const ep = (await ctx.state.endpoints()).find((e) => e.networkId === net.id && e.sandboxId === sb.id);
    if (!ep) throw notFound(`sandbox '${sb.name}' is not connected to network '${net.name}'`);
    slow = await forgetEndpoint(ctx, ep, net, sb);
  });
  if (slow) await slow();
}

/** Engine.disconnectEndpoint: by endpoint id (Docker's DeleteEndpoint); an unknown id is fine. */
export async function disconnectEndpoint(ctx: EngineContext, id: string): Promise<void> {
  let slow: (() => Promise<void>) | undefined;
  await ctx.mutex.run(async () => {
    const ep = await ctx.state.endpoint(id);
    if (!ep) return;
    const net = (await ctx.state.networks()).find((n) => n.id === ep.networkId);
    const sb = (await ctx.state.sandboxes()).find((s) => s.id === ep.sandboxId);
    slow = await forgetEndpoint(ctx, ep, net, sb);
  });
  if (slow) await slow();
}

/** Engine.removeEndpointLocked: for undo and reconcile, the caller holds the mutex; kernel included. */
export async function removeEndpointLocked(ctx: EngineContext, ep: Endpoint, sb: Sandbox | undefined): Promise<void> {
  const net = await ctx.state.networks().then((all) => all.find((n) => n.id === ep.networkId));
  const detach = await forgetEndpoint(ctx, ep, net, sb);
  if (detach) await detach();
}

async function hasDefaultRoute(ctx: EngineContext, sb: Sandbox): Promise<boolean> {
  return (await ctx.state.endpoints()).some((e) => e.sandboxId === sb.id && e.defaultRoute);
}

/** What createSandbox adds to an attach. */
export interface AttachSteps {
  /** A sandbox not recorded yet: created in the transaction that records the endpoint pending. */
  newSandbox?: Sandbox;
  /** Runs after the endpoint is recorded, before the kernel work (createSandbox makes the netns here). */
  beforeKernel?: () => Promise<void>;
  /** Written with the ready endpoint, in one transaction (createSandbox's last attach). */
  readySandbox?: Sandbox;
}

/** Attach inside the mutex: allocate, record pending, realize, mark ready; undo on failure. */
export async function attach(ctx: EngineContext, net: Network, sb: Sandbox, req: ConnectRequest, defaultRoute: boolean, steps: AttachSteps = {}): Promise<Endpoint> {
  const { newSandbox, beforeKernel, readySandbox } = steps;
  const all = await ctx.state.endpoints();
  const mine = all.filter((e) => e.sandboxId === sb.id);
  const prior = mine.find((e) => e.networkId === net.id);
  if (prior) {
    if (prior.state === 'ready') {
      // Idempotent: the same attach again.
      if (readySandbox) await ctx.state.putSandbox(readySandbox);
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
    ...(net.driver === 'bridge' ? { hostIfname: hostIfnameFor(id), hostMac: randomMac() } : {}),
    ...(req.hostPeer ? { hostPeer: req.hostPeer } : {}),
    ...(bandwidth ? { bandwidth } : {}),
  };
  try {
    if (driver.usesIpam) {
      for (const sub of net.subnets) {
        const family = sub.subnet.includes(':') ? 6 : 4;
        const want = family === 4 ? req.ip : req.ipv6;
        const ip = await ctx.ipam.allocate(net.id, { family, owner: id, ...(want ? { ip: want } : {}) });
        const cidr = `${ip}/${parsePrefix(sub.subnet).len}`;
        if (family === 4) ep.ipv4 ??= cidr;
        else ep.ipv6 ??= cidr;
      }
      if (req.ip && !ep.ipv4) throw invalid('ip', `network '${net.name}' has no IPv4 subnet for ${req.ip}`);
      if (req.ipv6 && !ep.ipv6) throw invalid('ipv6', `network '${net.name}' has no IPv6 subnet for ${req.ipv6}`);
    }
    ep.mac = req.mac ? req.mac.toLowerCase() : ep.ipv4 ? macFromIPv4(ep.ipv4.split('/')[0] as string) : randomMac();
    await ctx.state.putEndpoint(ep, newSandbox, newSandbox !== undefined);
    for (const p of mappings) checkHostPortFree(p.proto, p.hostPort, p.hostIP);
    await beforeKernel?.();
    await driver.attach(ctx.host, net, sb, ep);
    if (mappings.length) ctx.host.firewall.addPorts(firewallPorts(ep));
    const ready: Endpoint = { ...ep, state: 'ready' };
    await ctx.state.putEndpoint(ready, readySandbox);
    ctx.emit('endpoint-up', ready, net, sb);
    return ready;
  } catch (err) {
    await undo(`endpoint of ${sb.name} on ${net.name}`, [
      () => (mappings.length ? ctx.host.firewall.removePorts(firewallPorts(ep)) : undefined),
      () => driver.forget?.(ctx.host, net, ep),
      () => driver.detach(ctx.host, net, sb, ep),
      () => ctx.ipam.releaseOwner(id, net.id),
      () => ctx.state.deleteEndpoint(id),
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
export async function forgetEndpoint(ctx: EngineContext, ep: Endpoint, net: Network | undefined, sb: Sandbox | undefined): Promise<(() => Promise<void>) | undefined> {
  if (ep.ports.length) ctx.host.firewall.removePorts(firewallPorts(ep));
  if (net) driverFor(net.driver).forget?.(ctx.host, net, ep);
  await ctx.ipam.releaseOwner(ep.id, ep.networkId);
  await ctx.state.deleteEndpoint(ep.id);
  if (!net || !sb) return undefined;
  ctx.emit('endpoint-down', ep, net, sb);
  return async () => driverFor(net.driver).detach(ctx.host, net, sb, ep);
}

function nextIfname(used: string[]): string {
  for (let i = 0; ; i++) if (!used.includes(`eth${i}`)) return `eth${i}`;
}
