// The protocol translation and the plugin's HTTP transport, without dockerd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CreateNetworkRequest,
  macFromDocker,
  networkCreateFromDocker,
  parseRequest,
  portMappingsFromDocker,
  sandboxNameFor,
  peerNameFor,
} from '../../src/docker/translate.ts';
import { parseDockerChains, restoreText } from '../../src/docker/docker-user.ts';
import { pluginHandler, type Route } from '../../src/docker/server.ts';
import { ipamError, networkError } from '../../src/docker/translate.ts';
import { invalid } from '../../src/lib/errors.ts';

test('CreateNetwork as observed from dockerd 20.10 becomes a Knit network create', () => {
  const req = parseRequest(
    CreateNetworkRequest,
    {
      NetworkID: 'ab'.repeat(32),
      Options: {
        'com.docker.network.enable_ipv6': true,
        'com.docker.network.generic': { 'com.docker.network.driver.mtu': '1400', 'com.docker.network.bridge.enable_icc': 'false' },
        'com.docker.network.internal': true,
      },
      IPv4Data: [{ AddressSpace: 'KnitLocal', AuxAddresses: { host1: '10.198.0.5/16' }, Gateway: '10.198.0.254/16', Pool: '10.198.0.0/16' }],
      IPv6Data: [{ AddressSpace: 'KnitLocal', Gateway: 'fd00:199::1/64', Pool: 'fd00:199::/64' }],
    },
    'CreateNetwork',
  );
  const out = networkCreateFromDocker(req, (s) => (s === '10.198.0.0/16' ? { subnet: s, ipRange: '10.198.5.0/24' } : undefined));
  assert.equal(out.id, 'ab'.repeat(32));
  assert.equal(out.name, 'docker-abababababab');
  assert.equal(out.internal, true);
  assert.equal(out.ipv6, true);
  assert.deepEqual(out.options, { 'com.docker.network.driver.mtu': '1400', 'com.docker.network.bridge.enable_icc': 'false', dns: 'false' });
  assert.deepEqual(out.subnets, [
    { subnet: '10.198.0.0/16', gateway: '10.198.0.254', ipRange: '10.198.5.0/24', auxAddresses: { host1: '10.198.0.5' } },
    { subnet: 'fd00:199::/64', gateway: 'fd00:199::1', auxAddresses: {} },
  ]);
});

test('an empty body and null maps decode as Go zero values', () => {
  const req = parseRequest(CreateNetworkRequest, { NetworkID: 'x1', Options: null, IPv4Data: null }, 'CreateNetwork');
  assert.deepEqual(req.Options, {});
  assert.deepEqual(req.IPv4Data, []);
  assert.throws(() => parseRequest(CreateNetworkRequest, {}, 'CreateNetwork'), /NetworkID: CreateNetwork request is malformed/);
});

test('port maps: numeric protocols, host address, 0 = pick a port; sctp refused', () => {
  const ports = portMappingsFromDocker({
    'com.docker.network.portmap': [
      { Proto: 6, IP: '', Port: 80, HostIP: '', HostPort: 18080, HostPortEnd: 18080 },
      { Proto: 17, IP: '', Port: 81, HostIP: '127.0.0.1', HostPort: 0, HostPortEnd: 0 },
    ],
  });
  assert.deepEqual(ports, [
    { proto: 'tcp', containerPort: 80, hostPort: 18080 },
    { proto: 'udp', containerPort: 81, hostPort: 0, hostIP: '127.0.0.1' },
  ]);
  assert.deepEqual(portMappingsFromDocker({}), []);
  assert.throws(() => portMappingsFromDocker({ 'com.docker.network.portmap': [{ Proto: 132, IP: '', Port: 1, HostIP: '', HostPort: 1, HostPortEnd: 1 }] }), /protocol 132/);
});

test('MACs, sandbox and peer names', () => {
  assert.equal(macFromDocker('02:AA:bb:cc:dd:ee', {}), '02:aa:bb:cc:dd:ee');
  assert.equal(macFromDocker('', { 'com.docker.network.endpoint.macaddress': 'AhEiM0RV' }), '02:11:22:33:44:55');
  assert.equal(macFromDocker('', {}), undefined);
  assert.equal(sandboxNameFor('/var/run/docker/netns/2f28883134ea'), 'docker-2f28883134ea');
  assert.ok(Buffer.byteLength(peerNameFor('f'.repeat(64))) <= 15);
});

test('DOCKER-USER: state read from nft JSON, restore text keeps Docker\'s bridges Docker\'s', () => {
  const listing = {
    nftables: [
      { chain: { name: 'DOCKER-USER' } },
      { chain: { name: 'DOCKER-ISOLATION-STAGE-2' } },
      { rule: { chain: 'DOCKER-USER', expr: [{ counter: {} }, { return: null }] } },
      { rule: { chain: 'DOCKER-ISOLATION-STAGE-2', expr: [{ match: { op: '==', left: { meta: { key: 'oifname' } }, right: 'mybr' } }, { drop: null }] } },
    ],
  };
  const st = parseDockerChains(listing);
  assert.deepEqual(st, { dockerUser: true, jumpFirst: false, knitRules: undefined, dockerBridges: ['mybr'] });
  const { text, rules } = restoreText(['kn-1'], st.dockerBridges, true);
  assert.match(text, /-A KNIT-FORWARD -o mybr -j RETURN\n/);
  assert.match(text, /-A KNIT-FORWARD -i kn-1 -j ACCEPT\n-A KNIT-FORWARD -o kn-1 -j ACCEPT\n-I DOCKER-USER 1 -j KNIT-FORWARD\nCOMMIT/);
  assert.equal(rules, 10);
  assert.equal(parseDockerChains({ nftables: [] }).dockerUser, false);
});

test('transport: empty bodies, Err for the network driver, Error for IPAM, 404 for unknown calls', async () => {
  const routes = new Map<string, Route>([
    ['/Plugin.Activate', { handle: () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }), error: networkError }],
    ['/NetworkDriver.CreateNetwork', { handle: () => { throw invalid('opt x', 'unknown option'); }, error: networkError }],
    ['/IpamDriver.RequestPool', { handle: () => { throw new Error('pool overlaps'); }, error: ipamError }],
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'knit-plugin-'));
  const sock = join(dir, 'p.sock');
  const server = createServer(pluginHandler(routes, () => undefined));
  await new Promise<void>((r) => server.listen(sock, r));
  const post = (path: string, body = '') =>
    new Promise<{ status: number; body: string; type: string }>((resolve, reject) => {
      const req = request({ socketPath: sock, method: 'POST', path }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b, type: String(res.headers['content-type']) }));
      });
      req.on('error', reject);
      req.end(body);
    });
  try {
    const a = await post('/Plugin.Activate');
    assert.equal(a.status, 200);
    assert.deepEqual(JSON.parse(a.body), { Implements: ['NetworkDriver', 'IpamDriver'] });
    assert.equal(a.type, 'application/vnd.docker.plugins.v1.2+json');
    assert.deepEqual(JSON.parse((await post('/NetworkDriver.CreateNetwork', '{"NetworkID":"x"}\n')).body), { Err: 'opt x: unknown option' });
    assert.deepEqual(JSON.parse((await post('/IpamDriver.RequestPool', '{}')).body), { Error: 'pool overlaps' });
    assert.equal((await post('/VolumeDriver.Create')).status, 404);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
