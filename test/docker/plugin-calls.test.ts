// The plugin's calls as dockerd makes them, without a dockerd: the paths a
// stock dockerd rarely takes (a Join repeated, a Join after Knit restarted
// between CreateEndpoint and Join, a bridge made again under the same name,
// icc=false) and what a Join leaves in the kernel. The test plays dockerd's
// part of the contract too: it moves the peer into the "container" and back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { apiCall, startTestHost, type TestHost } from '../helpers/daemon.ts';
import { makeNetns, sh } from '../helpers/netns.ts';

let h: TestHost;
let pluginDir: string;
let plugin: string;
let netId: string;
let poolId: string;
let bridge: string;

type Body = Record<string, unknown> & { Err?: string; Error?: string };

async function call(path: string, body: unknown): Promise<Body> {
  const r = await apiCall<Body>(plugin, 'POST', `/${path}`, body);
  assert.equal(r.status, 200, `${path} -> ${r.status}`);
  return r.body;
}

async function ok(path: string, body: unknown): Promise<Body> {
  const r = await call(path, body);
  assert.equal(r.Err ?? r.Error, undefined, `${path}: ${r.Err ?? r.Error}`);
  return r;
}

/** A Docker network on Knit as dockerd makes one: pool, gateway, CreateNetwork. */
async function dockerNetwork(subnet: string, generic: Record<string, string> = {}): Promise<{ netId: string; poolId: string; bridge: string }> {
  const pool = await ok('IpamDriver.RequestPool', { AddressSpace: 'KnitLocal', Pool: subnet, SubPool: '', Options: {}, V6: false });
  const gw = await ok('IpamDriver.RequestAddress', { PoolID: pool.PoolID, Address: '', Options: { RequestAddressType: 'com.docker.network.gateway' } });
  const id = randomBytes(32).toString('hex');
  await ok('NetworkDriver.CreateNetwork', {
    NetworkID: id,
    Options: { 'com.docker.network.generic': generic },
    IPv4Data: [{ AddressSpace: 'KnitLocal', Pool: subnet, Gateway: gw.Address, AuxAddresses: null }],
    IPv6Data: [],
  });
  const net = h.json<{ bridge: string }[]>('network', 'inspect', id)[0] as { bridge: string };
  return { netId: id, poolId: pool.PoolID as string, bridge: net.bridge };
}

interface Ep {
  id: string;
  address: string;
  ns: string;
}

async function createEndpoint(net = { netId, poolId }): Promise<Ep> {
  const { Address } = await ok('IpamDriver.RequestAddress', { PoolID: net.poolId, Address: '', Options: {} });
  const id = randomBytes(32).toString('hex');
  await ok('NetworkDriver.CreateEndpoint', { NetworkID: net.netId, EndpointID: id, Interface: { Address, AddressIPv6: '', MacAddress: '' }, Options: {} });
  return { id, address: Address as string, ns: makeNetns('kntdc').name };
}

const join_ = (ep: Ep, net = netId) => call('NetworkDriver.Join', { NetworkID: net, EndpointID: ep.id, SandboxKey: `/run/netns/${ep.ns}`, Options: {} });

/** dockerd's side after Join: the peer into the container as eth1. */
function moveIn(ep: Ep, peer: string): void {
  sh('ip', ['-n', h.ns, 'link', 'set', peer, 'netns', ep.ns]);
  sh('ip', ['-n', ep.ns, 'link', 'set', peer, 'name', 'eth1']);
  sh('ip', ['-n', ep.ns, 'link', 'set', 'eth1', 'up']);
}

/** dockerd's side of Leave and DeleteEndpoint, then ReleaseAddress. */
async function remove(ep: Ep, moved: boolean, net = { netId, poolId }): Promise<void> {
  await ok('NetworkDriver.Leave', { NetworkID: net.netId, EndpointID: ep.id });
  const peer = `kp${ep.id.slice(0, 11)}`;
  if (moved) {
    sh('ip', ['-n', ep.ns, 'link', 'set', 'eth1', 'down']);
    sh('ip', ['-n', ep.ns, 'link', 'set', 'eth1', 'name', peer]);
    sh('ip', ['-n', ep.ns, 'link', 'set', peer, 'netns', h.ns]);
  }
  await ok('NetworkDriver.DeleteEndpoint', { NetworkID: net.netId, EndpointID: ep.id });
  await ok('IpamDriver.ReleaseAddress', { PoolID: net.poolId, Address: ep.address });
}

/** `ip -d -j link show` of a host-side link: master, bridge port flags. */
function port(name: string): { master?: string; hairpin?: boolean; isolated?: boolean; alias?: string; operstate?: string } | undefined {
  try {
    const [l] = JSON.parse(h.inHost('ip', '-d', '-j', 'link', 'show', name)) as { master?: string; ifalias?: string; operstate?: string; linkinfo?: { info_slave_data?: { hairpin?: boolean; isolated?: boolean } } }[];
    if (!l) return undefined;
    return { master: l.master, hairpin: l.linkinfo?.info_slave_data?.hairpin, isolated: l.linkinfo?.info_slave_data?.isolated, alias: l.ifalias, operstate: l.operstate };
  } catch {
    return undefined;
  }
}

const endpointsOf = (id: string) => (h.json<{ endpoints: { id: string; ipv4?: string }[] }[]>('network', 'inspect', id)[0]?.endpoints ?? []);

before(async () => {
  pluginDir = mkdtempSync(join(tmpdir(), 'knit-plugin-'));
  h = await startTestHost({ defaultBridge: false, daemonArgs: ['--docker-plugin-dir', pluginDir] });
  plugin = join(pluginDir, 'knit.sock');
  ({ netId, poolId, bridge } = await dockerNetwork('10.231.0.0/24'));
});

after(async () => {
  await h?.stop();
  if (pluginDir) rmSync(pluginDir, { recursive: true, force: true });
});

test('Join makes the veth on the bridge, hairpin on, not isolated, alias naming the endpoint', async () => {
  const ep = await createEndpoint();
  const r = await join_(ep);
  assert.equal(r.Err, undefined);
  const hostIf = `kn${ep.id.slice(0, 11)}`;
  assert.deepEqual(port(hostIf), { master: bridge, hairpin: true, isolated: false, alias: `knit:ep:${ep.id}`, operstate: 'LOWERLAYERDOWN' });
  const peer = (r.InterfaceName as { SrcName: string }).SrcName;
  assert.match(h.inHost('ip', 'link', 'show', peer), /link\/ether 02:42:0a:e7:00:/);
  moveIn(ep, peer);
  assert.equal(port(hostIf)?.operstate, 'UP');
  await remove(ep, true);
  await h.settle();
  assert.equal(port(hostIf), undefined, 'the veth goes with DeleteEndpoint');
  assert.equal(port(peer), undefined, 'and its container end with it');
  assert.deepEqual(endpointsOf(netId), []);
});

test('DeleteEndpoint while the peer is still in the container (dockerd did not take it back): the veth goes all the same', async () => {
  const ep = await createEndpoint();
  const r = await join_(ep);
  moveIn(ep, (r.InterfaceName as { SrcName: string }).SrcName);
  await ok('NetworkDriver.Leave', { NetworkID: netId, EndpointID: ep.id });
  await ok('NetworkDriver.DeleteEndpoint', { NetworkID: netId, EndpointID: ep.id });
  await ok('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: ep.address });
  await h.settle();
  assert.equal(port(`kn${ep.id.slice(0, 11)}`), undefined);
  assert.doesNotMatch(sh('ip', ['-n', ep.ns, '-o', 'link', 'show']), /eth1/);
  assert.deepEqual(endpointsOf(netId), []);
});

test('a Join repeated before dockerd moved the peer answers the same and keeps one veth', async () => {
  const ep = await createEndpoint();
  const a = await join_(ep);
  const b = await join_(ep);
  assert.equal(b.Err, undefined);
  assert.deepEqual(b, a);
  assert.equal(endpointsOf(netId).length, 1);
  assert.equal(port(`kn${ep.id.slice(0, 11)}`)?.master, bridge);
  await remove(ep, false);
  await h.settle();
  assert.deepEqual(endpointsOf(netId), []);
});

test('a veth left under the endpoint\'s names by someone else is replaced', async () => {
  const ep = await createEndpoint();
  const hostIf = `kn${ep.id.slice(0, 11)}`;
  h.inHost('ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', `kp${ep.id.slice(0, 11)}`);
  const r = await join_(ep);
  assert.equal(r.Err, undefined);
  assert.equal(port(hostIf)?.alias, `knit:ep:${ep.id}`);
  assert.equal(port(hostIf)?.master, bridge);
  assert.equal(port(hostIf)?.hairpin, true);
  // Made anew, not adopted: the container end has the endpoint's MAC.
  assert.match(h.inHost('ip', 'link', 'show', `kp${ep.id.slice(0, 11)}`), /link\/ether 02:42:0a:e7:00:/);
  await remove(ep, false);
  await h.settle();
});

test('CreateEndpoint, Knit restarts, then EndpointOperInfo and Join still know the endpoint', async () => {
  const ep = await createEndpoint();
  await h.stop();
  await h.start();
  const info = await ok('NetworkDriver.EndpointOperInfo', { NetworkID: netId, EndpointID: ep.id });
  assert.equal((info.Value as { ipv4?: string }).ipv4, ep.address);
  const r = await join_(ep);
  assert.equal(r.Err, undefined);
  assert.deepEqual(endpointsOf(netId).map((e) => e.ipv4), [ep.address]);
  await remove(ep, false);
  assert.deepEqual(endpointsOf(netId), []);
  // The address is free again: asking for it by name gets it.
  const again = await ok('IpamDriver.RequestAddress', { PoolID: poolId, Address: ep.address.split('/')[0], Options: {} });
  assert.equal(again.Address, ep.address);
  await ok('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: ep.address });
});

test('a repair at start keeps the veth a running container is on: taken off its bridge, it is put back, not made again', async () => {
  const ep = await createEndpoint();
  const r = await join_(ep);
  assert.equal(r.Err, undefined);
  moveIn(ep, (r.InterfaceName as { SrcName: string }).SrcName);
  const hostIf = `kn${ep.id.slice(0, 11)}`;
  const indexOf = () => (JSON.parse(h.inHost('ip', '-j', 'link', 'show', hostIf)) as { ifindex: number }[])[0]?.ifindex;
  const before = indexOf();
  h.inHost('ip', 'link', 'set', hostIf, 'nomaster');
  await h.stop();
  await h.start();
  assert.equal(port(hostIf)?.master, bridge, 'back on its bridge');
  assert.equal(indexOf(), before, 'the same veth');
  assert.match(sh('ip', ['-n', ep.ns, 'link', 'show', 'eth1']), /eth1/, 'the container keeps its interface');
  await remove(ep, true);
  await h.settle();
});

test('the bridge made again under its name (new ifindex): the next Join finds it', async () => {
  const first = await createEndpoint();
  assert.equal((await join_(first)).Err, undefined);
  await remove(first, false);
  await h.settle();
  // Someone deletes the bridge; it comes back under the same name.
  h.inHost('ip', 'link', 'del', bridge);
  h.inHost('ip', 'link', 'add', bridge, 'type', 'bridge');
  h.inHost('ip', 'link', 'set', bridge, 'up');
  const ep = await createEndpoint();
  const r = await join_(ep);
  assert.equal(r.Err, undefined);
  assert.equal(port(`kn${ep.id.slice(0, 11)}`)?.master, bridge);
  await remove(ep, false);
  await h.settle();
  // Gone for good: the Join says which bridge is missing.
  h.inHost('ip', 'link', 'del', bridge);
  const gone = await createEndpoint();
  const e = await join_(gone);
  assert.match(String(e.Err), new RegExp(`bridge ${bridge} of network .* is missing`));
  await ok('NetworkDriver.DeleteEndpoint', { NetworkID: netId, EndpointID: gone.id });
  await ok('IpamDriver.ReleaseAddress', { PoolID: poolId, Address: gone.address });
});

test('icc=false: the port is isolated', async () => {
  const net = await dockerNetwork('10.232.0.0/24', { icc: 'false' });
  const ep = await createEndpoint(net);
  assert.equal((await join_(ep, net.netId)).Err, undefined);
  assert.equal(port(`kn${ep.id.slice(0, 11)}`)?.isolated, true);
  await remove(ep, false, net);
});
