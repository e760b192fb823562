// Knit as the network and IPAM driver of a real dockerd (issue 4, "What must
// be shown"). dockerd and Knit's daemon share one throwaway namespace (see
// harness.ts); an "outside" namespace behind a veth plays the internet.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { dockerUnavailable, startDockerHost, IMAGE, type DockerHost } from './harness.ts';
import { makeNetns, sh } from '../helpers/netns.ts';

const skip = dockerUnavailable();
let h: DockerHost;
let outside: string;
const OUTSIDE_IP = '192.0.2.2';

interface KnitNet {
  id: string;
  name: string;
  bridge: string;
  mtu: number;
  internal: boolean;
  subnets: { subnet: string; gateway?: string; ipRange?: string; auxAddresses: Record<string, string> }[];
  endpoints: { id: string; ipv4?: string; mac: string }[];
}

before(async () => {
  if (skip) return;
  h = await startDockerHost();
  // The "internet": a namespace reached through a veth from the docker host.
  outside = makeNetns('kntdo').name;
  sh('ip', ['link', 'add', 'kdup0', 'netns', h.ns, 'type', 'veth', 'peer', 'name', 'kdup1', 'netns', outside]);
  sh('ip', ['-n', h.ns, 'addr', 'add', '192.0.2.1/24', 'dev', 'kdup0']);
  sh('ip', ['-n', h.ns, 'link', 'set', 'kdup0', 'up']);
  sh('ip', ['-n', outside, 'addr', 'add', `${OUTSIDE_IP}/24`, 'dev', 'kdup1']);
  sh('ip', ['-n', outside, 'link', 'set', 'kdup1', 'up']);
});

after(async () => {
  if (h) await h.close();
});

const dockerNet = (name: string) => JSON.parse(h.ok('network', 'inspect', name))[0] as { Id: string; IPAM: { Config: { Subnet: string; Gateway?: string; IPRange?: string }[] } };
const knitNet = (id: string) => h.knitJson<KnitNet[]>('network', 'inspect', id)[0] as KnitNet;
const ipOf = (c: string, net: string) => h.ok('inspect', '-f', `{{(index .NetworkSettings.Networks "${net}").IPAddress}}`, c);
const ping = (c: string, target: string) => h.docker('exec', c, 'ping', '-c', '1', '-W', '2', target).code === 0;
const knitNetworks = () => h.knitJson<{ name: string }[]>('network', 'ls').map((n) => n.name).sort();

test('Knit serves a stock dockerd as network and IPAM driver', { skip }, async (t) => {
  await t.test('network create with subnet, ip-range, gateway, aux, -o and IPv6; inspect shows what Knit allocated', () => {
    h.ok('network', 'create', '-d', 'knit', '--ipam-driver', 'knit', '--subnet', '10.198.0.0/16', '--ip-range', '10.198.5.0/24', '--gateway', '10.198.0.254', '--aux-address', 'h1=10.198.0.5', '-o', 'com.docker.network.driver.mtu=1400', '--ipv6', '--subnet', 'fd00:199::/64', 'netA');
    const d = dockerNet('netA');
    const k = knitNet(d.Id);
    assert.equal(k.id, d.Id, 'the Docker network id is the Knit network id');
    assert.equal(k.name, `docker-${d.Id.slice(0, 12)}`);
    assert.equal(k.mtu, 1400);
    const v4 = k.subnets.find((s) => s.subnet === '10.198.0.0/16');
    assert.deepEqual(v4, { subnet: '10.198.0.0/16', gateway: '10.198.0.254', ipRange: '10.198.5.0/24', auxAddresses: { h1: '10.198.0.5' } });
    assert.ok(k.subnets.some((s) => s.subnet === 'fd00:199::/64'));
    assert.match(h.inHost('ip', 'addr', 'show', k.bridge).out, /10\.198\.0\.254\/16/);
  });

  await t.test('network create without options: Knit picks the subnet', () => {
    h.ok('network', 'create', '-d', 'knit', '--ipam-driver', 'knit', 'netB');
    const d = dockerNet('netB');
    const k = knitNet(d.Id);
    assert.equal(d.IPAM.Config[0]?.Subnet, k.subnets[0]?.subnet);
    assert.equal(d.IPAM.Config[0]?.Gateway, k.subnets[0]?.gateway);
  });

  await t.test('two containers ping by address and by name; MAC is 02:42 + IPv4; --ip static', () => {
    h.ok('run', '-d', '--name', 'c1', '--network', 'netA', IMAGE, 'sleep', '600');
    h.ok('run', '-d', '--name', 'c2', '--network', 'netA', '--ip', '10.198.7.7', IMAGE, 'sleep', '600');
    assert.equal(ipOf('c2', 'netA'), '10.198.7.7');
    const ip1 = ipOf('c1', 'netA');
    assert.match(ip1, /^10\.198\.5\.\d+$/, 'dynamic addresses come from --ip-range');
    const mac = h.ok('inspect', '-f', '{{(index .NetworkSettings.Networks "netA").MacAddress}}', 'c1');
    assert.equal(mac, `02:42:${ip1.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`);
    assert.ok(ping('c1', '10.198.7.7'));
    assert.ok(ping('c1', 'c2'), 'by name through dockerd\'s embedded DNS');
    assert.ok(ping('c1', '10.198.0.254'), 'the gateway');
    const k = knitNet(dockerNet('netA').Id);
    assert.equal(k.endpoints.length, 2);
    assert.ok(k.endpoints.some((e) => e.ipv4 === '10.198.7.7/16'));
    // Both containers' host ends are on the fast path, keyed by the containers' MACs.
    const fastpath = h.inHost('nft', 'list', 'map', 'netdev', 'knit', 'ports').out;
    assert.ok(fastpath.includes(mac) && fastpath.includes('02:42:0a:c6:07:07'), fastpath);
  });

  await t.test('containers on two Knit networks cannot reach each other', () => {
    h.ok('run', '-d', '--name', 'c3', '--network', 'netB', IMAGE, 'sleep', '600');
    const ip3 = ipOf('c3', 'netB');
    assert.ok(!ping('c1', ip3));
    assert.ok(!ping('c3', ipOf('c1', 'netA')));
  });

  await t.test('outbound through dockerd\'s FORWARD DROP policy (DOCKER-USER)', () => {
    const fwd = h.inHost('iptables', '-S', 'FORWARD');
    assert.match(fwd.out, /-P FORWARD DROP/, fwd.err);
    assert.ok(ping('c1', OUTSIDE_IP), 'a Knit network reaches the outside beside dockerd');
  });

  await t.test('network connect and disconnect on a running container', () => {
    h.ok('network', 'connect', 'netB', 'c1');
    const ip3 = ipOf('c3', 'netB');
    assert.ok(ping('c1', ip3), 'c1 now shares netB with c3');
    assert.ok(ping('c1', 'c3'));
    h.ok('network', 'disconnect', 'netB', 'c1');
    assert.ok(!ping('c1', ip3));
    assert.ok(ping('c1', 'c2'), 'netA still works');
    assert.equal(knitNet(dockerNet('netB').Id).endpoints.length, 1);
  });

  await t.test('docker stop and start (a new endpoint each time) keeps working', () => {
    const before = knitNet(dockerNet('netA').Id).endpoints.map((e) => e.id);
    h.ok('stop', '-t', '0', 'c2');
    assert.equal(knitNet(dockerNet('netA').Id).endpoints.length, 1, 'stop deletes the endpoint');
    h.ok('start', 'c2');
    const after = knitNet(dockerNet('netA').Id).endpoints.map((e) => e.id);
    assert.equal(after.length, 2);
    assert.notDeepEqual(after.sort(), before.sort());
    assert.ok(ping('c1', '10.198.7.7'));
    assert.ok(ping('c2', 'c1'));
  });

  await t.test('-p 8080:80 answers from the host', () => {
    h.ok('run', '-d', '--name', 'web', '--network', 'netA', '-p', '8080:80', IMAGE, 'httpd', '-f', '-p', '80', '-h', '/bin');
    for (const addr of ['127.0.0.1', '192.0.2.1']) {
      const r = h.inHost('curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://${addr}:8080/busybox`);
      assert.equal(r.out, '200', `published port via ${addr}: ${r.err}`);
    }
    const o = sh('ip', ['netns', 'exec', outside, 'curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', 'http://192.0.2.1:8080/busybox']);
    assert.equal(o, '200', 'from another machine');
    h.ok('rm', '-f', 'web');
    assert.notEqual(h.inHost('curl', '-s', '-m', '2', 'http://127.0.0.1:8080/').code, 0, 'unpublished with the container');
  });

  await t.test('--internal has no way out', () => {
    h.ok('network', 'create', '-d', 'knit', '--ipam-driver', 'knit', '--internal', '--subnet', '10.197.0.0/24', 'netI');
    h.ok('run', '-d', '--name', 'i1', '--network', 'netI', IMAGE, 'sleep', '600');
    h.ok('run', '-d', '--name', 'i2', '--network', 'netI', IMAGE, 'sleep', '600');
    assert.ok(ping('i1', 'i2'), 'inside the internal network');
    assert.ok(!ping('i1', OUTSIDE_IP), 'no way out');
    assert.doesNotMatch(h.ok('exec', 'i1', 'ip', 'route'), /default/);
    assert.equal(h.docker('inspect', 'i1', '-f', '{{json .NetworkSettings.Networks}}').out.includes('docker_gwbridge'), false);
  });

  await t.test('Knit restarted while containers run: connectivity stays, later operations work', async () => {
    await h.stopKnit();
    assert.ok(ping('c1', 'c2'), 'the datapath lives in the kernel');
    await h.startKnit();
    assert.ok(ping('c1', 'c2'));
    // Seen failing intermittently: new flows after a restart not masqueraded (conntrack shows
    // no SNAT); the message carries what is needed to chase it.
    assert.ok(ping('c1', OUTSIDE_IP), `outbound after restart:\n${h.inHost('conntrack', '-L', '-p', 'icmp').out}\n${h.inHost('nft', 'list', 'set', 'inet', 'knit', 'nat4').out}`);
    h.ok('network', 'connect', 'netB', 'c2');
    assert.ok(ping('c2', 'c3'));
    h.ok('network', 'disconnect', 'netB', 'c2');
    h.ok('run', '-d', '--name', 'c4', '--network', 'netA', IMAGE, 'sleep', '600');
    assert.ok(ping('c4', 'c1'));
  });

  await t.test('DOCKER-USER rules come back after dockerd\'s rules are rewritten', async () => {
    h.inHost('iptables', '-F', 'DOCKER-USER');
    h.inHost('iptables', '-A', 'DOCKER-USER', '-j', 'RETURN');
    assert.ok(!ping('c1', OUTSIDE_IP), 'without the rules Docker drops Knit\'s traffic');
    // Knit re-checks periodically (and at each Activate); wait for it, no timing asserted.
    for (let i = 0; i < 100 && !/KNIT-FORWARD/.test(h.inHost('iptables', '-S', 'DOCKER-USER').out); i++) await new Promise((r) => setTimeout(r, 200));
    assert.ok(ping('c1', OUTSIDE_IP));
  });

  await t.test('bad requests: docker prints Knit\'s message and nothing is left half-made', () => {
    const nets = knitNetworks();
    let r = h.docker('network', 'create', '-d', 'knit', '--ipam-driver', 'knit', '--subnet', '10.198.9.0/24', 'bad1');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /10\.198\.9\.0\/24 overlaps 10\.198\.0\.0\/16/);
    r = h.docker('network', 'create', '-d', 'knit', '--ipam-driver', 'knit', '-o', 'frobnicate=yes', 'bad2');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /frobnicate: unknown option/);
    r = h.docker('run', '-d', '--name', 'dup', '--network', 'netA', '--ip', '10.198.7.7', IMAGE, 'sleep', '600');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /10\.198\.7\.7 is already in use/);
    h.docker('rm', '-f', 'dup');
    h.ok('network', 'create', '-d', 'knit', '--ipam-driver', 'knit', '--subnet', '10.196.0.0/30', 'tiny');
    h.ok('run', '-d', '--name', 't1', '--network', 'tiny', IMAGE, 'sleep', '600');
    r = h.docker('run', '-d', '--name', 't2', '--network', 'tiny', IMAGE, 'sleep', '600');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /no free address/);
    h.docker('rm', '-f', 't2');
    assert.deepEqual(h.docker('network', 'ls', '--format', '{{.Name}}').out.split('\n').filter((n) => n.startsWith('bad')), []);
    assert.deepEqual(knitNetworks(), [...nets, `docker-${dockerNet('tiny').Id.slice(0, 12)}`].sort(), 'refused networks left nothing in Knit');
    assert.equal(knitNet(dockerNet('tiny').Id).endpoints.length, 1, 'the refused container left no endpoint');
    // The refused subnet and address are free again.
    h.ok('network', 'create', '-d', 'knit', '--ipam-driver', 'knit', '--subnet', '10.195.0.0/24', 'good');
    h.ok('network', 'rm', 'good');
  });

  await t.test('docker network rm frees every address, link and rule', () => {
    h.ok('rm', '-f', 'c1', 'c2', 'c3', 'c4', 'i1', 'i2', 't1');
    h.ok('network', 'rm', 'netA', 'netB', 'netI', 'tiny');
    assert.deepEqual(knitNetworks(), ['host', 'none']);
    assert.deepEqual(h.knitJson<unknown[]>('sandbox', 'ls'), []);
    assert.doesNotMatch(h.inHost('ip', '-o', 'link').out, /\bk[np][-0-9a-f]/, 'no bridge or veth left');
    const rules = h.inHost('iptables', '-S', 'KNIT-FORWARD').out;
    assert.doesNotMatch(rules, /kn-/, 'no DOCKER-USER accept for a removed bridge');
    // The same subnets can be had again: nothing holds them.
    h.ok('network', 'create', '-d', 'knit', '--ipam-driver', 'knit', '--subnet', '10.198.0.0/16', 'again');
    h.ok('network', 'rm', 'again');
  });
});
