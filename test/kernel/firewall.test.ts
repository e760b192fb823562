// The `inet knit` table on the real kernel, checked with real TCP traffic:
//
//   O (outside) 192.0.2.2 / 2001:db8::2 ── veth ── H (host) 192.0.2.1 / 2001:db8::1
//   H: knA 10.1.0.1/24 fd00:1::1/64 (NAT)   S1 10.1.0.2 fd00:1::2, S2 10.1.0.3
//      knB 10.2.0.1/24 (routed, no NAT)     S3 10.2.0.2
//      knI 10.3.0.1/24 (internal)           S4 10.3.0.2
//
// Every sandbox and O run a tiny TCP server on port 80 that answers with the
// address it sees the client as; a blocked connection is a timeout.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { Nft } from '../../src/kernel/nft.ts';
import { Firewall } from '../../src/services/firewall/index.ts';
import type { FirewallNetwork, PortMapping } from '../../src/services/firewall/index.ts';
import { ipIn, makeNetns, sh, uniqueName } from '../helpers/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root' : false;

const SERVER = `
const net = require('node:net');
const dgram = require('node:dgram');
const from = (a) => 'from ' + a.replace(/^::ffff:/, '');
const u = dgram.createSocket('udp6');
u.on('message', (m, r) => u.send(from(r.address), r.port, r.address));
u.bind(80, '::', () =>
  net.createServer((s) => s.end(from(s.remoteAddress) + '\\n'))
    .listen({ port: 80, host: '::' }, () => console.log('ready')));`;

const CLIENT = `
const net = require('node:net');
const [host, port, wait] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port) });
let out = '';
s.setTimeout(Number(wait), () => { console.log('TIMEOUT'); process.exit(0); });
s.on('data', (d) => (out += d));
s.on('end', () => { console.log(out.trim()); process.exit(0); });
s.on('error', (e) => { console.log('ERR ' + e.code); process.exit(0); });`;

const UDP_CLIENT = `
const dgram = require('node:dgram');
const [host, port] = process.argv.slice(1);
const u = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
u.on('message', (m) => { console.log(String(m)); process.exit(0); });
const t = setInterval(() => u.send('hi', Number(port), host), 200);
setTimeout(() => { console.log('TIMEOUT'); process.exit(0); }, 10000);`;

const servers: ChildProcess[] = [];

function startServer(ns: string): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  servers.push(child);
  return new Promise((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`server in ${ns} exited ${code}`)));
  });
}

/**
 * What a TCP client in `ns` gets from host:port: 'from <addr>', 'TIMEOUT' or
 * 'ERR <code>'. A dropped SYN is only seen as silence, so the wait is short
 * when silence is expected (`blocked`) and long otherwise.
 */
function connect(ns: string, host: string, port = 80, blocked = false): string {
  const wait = blocked ? '1000' : '10000';
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', CLIENT, host, String(port), wait], {
    encoding: 'utf8',
  });
  return r.stdout.trim();
}

/** Asserts that a connection is dropped on the way. */
function assertBlocked(ns: string, host: string, port = 80): void {
  assert.equal(connect(ns, host, port, true), 'TIMEOUT', `${ns} -> ${host}:${port} should be dropped`);
}

/** No DAD: addresses are usable at once, and no test waits on a timer for it. */
function noDad(ns: string): void {
  inNs(ns, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0');
}

function inNs(ns: string, ...cmd: string[]): string {
  return sh('ip', ['netns', 'exec', ns, ...cmd]);
}

let H = '';
let O = '';
let S1 = '';
let S2 = '';
let S3 = '';
let S4 = '';
let nft: Nft;
let fw: Firewall;

const netA: FirewallNetwork = { bridge: 'knA', subnets: ['10.1.0.0/24', 'fd00:1::/64'], internal: false, masquerade: true };
const netB: FirewallNetwork = { bridge: 'knB', subnets: ['10.2.0.0/24'], internal: false, masquerade: false };
const netI: FirewallNetwork = { bridge: 'knI', subnets: ['10.3.0.0/24'], internal: true, masquerade: true };
const networks = [netA, netB, netI];

const web: PortMapping = { proto: 'tcp', hostPort: 8080, containerIP: '10.1.0.2', containerPort: 80 };
const web6: PortMapping = { proto: 'tcp', hostPort: 8080, containerIP: 'fd00:1::2', containerPort: 80 };
const pinned: PortMapping = { proto: 'tcp', hostIP: '192.0.2.1', hostPort: 8081, containerIP: '10.1.0.3', containerPort: 80 };

function addSandbox(bridge: string, addrs: string[], gw4: string, gw6?: string): string {
  const ns = makeNetns().name;
  noDad(ns);
  // Named as Knit names its ports (`kn…`): the bridge table's notrack rule keys on that.
  const host = uniqueName('kn');
  ipIn(H, 'link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  ipIn(H, 'link', 'set', host, 'master', bridge, 'up');
  for (const a of addrs) ipIn(ns, 'addr', 'add', a, 'dev', 'eth0', 'nodad');
  ipIn(ns, 'link', 'set', 'eth0', 'up');
  ipIn(ns, 'route', 'add', 'default', 'via', gw4);
  if (gw6 !== undefined) ipIn(ns, '-6', 'route', 'add', 'default', 'via', gw6);
  return ns;
}

before(async () => {
  if (skip) return;
  H = makeNetns().name;
  O = makeNetns().name;
  noDad(H);
  noDad(O);
  ipIn(H, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', O);
  ipIn(H, 'addr', 'add', '192.0.2.1/24', 'dev', 'up0');
  ipIn(H, 'addr', 'add', '2001:db8::1/64', 'dev', 'up0', 'nodad');
  ipIn(H, 'link', 'set', 'up0', 'up');
  ipIn(O, 'addr', 'add', '192.0.2.2/24', 'dev', 'up0');
  ipIn(O, 'addr', 'add', '2001:db8::2/64', 'dev', 'up0', 'nodad');
  ipIn(O, 'link', 'set', 'up0', 'up');
  // O can route to every Knit subnet: NAT-mode ones must still be unreachable.
  for (const s of ['10.1.0.0/24', '10.2.0.0/24', '10.3.0.0/24']) ipIn(O, 'route', 'add', s, 'via', '192.0.2.1');
  ipIn(O, '-6', 'route', 'add', 'fd00:1::/64', 'via', '2001:db8::1');

  for (const [br, addrs] of [
    ['knA', ['10.1.0.1/24', 'fd00:1::1/64']],
    ['knB', ['10.2.0.1/24']],
    ['knI', ['10.3.0.1/24']],
  ] as const) {
    ipIn(H, 'link', 'add', br, 'type', 'bridge');
    for (const a of addrs) ipIn(H, 'addr', 'add', a, 'dev', br, 'nodad');
    ipIn(H, 'link', 'set', br, 'up');
  }
  inNs(H, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
  inNs(H, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1');
  inNs(H, 'sysctl', '-qw', 'net.ipv4.conf.knA.route_localnet=1');
  // As Docker leaves it: bridged traffic also passes the inet hooks.
  inNs(H, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1');

  S1 = addSandbox('knA', ['10.1.0.2/24', 'fd00:1::2/64'], '10.1.0.1', 'fd00:1::1');
  S2 = addSandbox('knA', ['10.1.0.3/24'], '10.1.0.1');
  S3 = addSandbox('knB', ['10.2.0.2/24'], '10.2.0.1');
  S4 = addSandbox('knI', ['10.3.0.2/24'], '10.3.0.1');
  await Promise.all([O, S1, S2, S3, S4].map(startServer));

  nft = Nft.open(`/run/netns/${H}`);
  fw = new Firewall(nft);
  fw.ensure({ networks, ports: [] });
});

after(() => {
  for (const s of servers) s.kill();
  nft?.close();
});

test('the table is present after ensure, and only in the host netns', { skip }, () => {
  assert.equal(fw.isPresent(), true);
  assert.match(inNs(H, 'nft', 'list', 'tables'), /^table inet knit$/m);
  assert.doesNotMatch(inNs(O, 'nft', 'list', 'tables'), /knit/);
  assert.deepEqual(fw.listPorts(), []);
});

test('masquerade: NAT-mode sandboxes reach outside as the host', { skip }, () => {
  assert.equal(connect(S1, '192.0.2.2'), 'from 192.0.2.1');
  assert.equal(connect(S1, '2001:db8::2'), 'from 2001:db8::1');
  // A routed (non-NAT) network keeps its addresses.
  assert.equal(connect(S3, '192.0.2.2'), 'from 10.2.0.2');
  // Inside a network nothing is translated.
  assert.equal(connect(S2, '10.1.0.2'), 'from 10.1.0.3');
});

test('inbound: NAT-mode sandboxes are unreachable directly, routed ones are', { skip }, () => {
  assertBlocked(O, '10.1.0.2');
  assert.equal(connect(O, '10.2.0.2'), 'from 192.0.2.2');
});

test('isolation: no forwarding between Knit bridges', { skip }, () => {
  assertBlocked(S1, '10.2.0.2');
  assertBlocked(S3, '10.1.0.2');
});

test('internal network: nothing forwarded out or in', { skip }, () => {
  assertBlocked(S4, '192.0.2.2');
  assertBlocked(S4, '10.1.0.2');
  assertBlocked(O, '10.3.0.2');
});

test('without br_netfilter the same holds', { skip }, () => {
  inNs(H, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0');
  try {
    fw.addPorts([web]);
    assert.equal(connect(S2, '10.1.0.2'), 'from 10.1.0.3');
    assert.equal(connect(S2, '10.1.0.1', 8080), 'from 10.1.0.1');
    assert.equal(connect(S1, '192.0.2.2'), 'from 192.0.2.1');
    assertBlocked(S1, '10.2.0.2');
  } finally {
    fw.removePorts([web]);
    inNs(H, 'sysctl', '-qw', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1');
  }
});

test('published ports: from outside, the host (own address and 127.0.0.1), hairpin, other networks', { skip }, () => {
  fw.addPorts([web, web6, pinned]);
  assert.deepEqual(
    fw.listPorts().sort((a, b) => a.hostPort - b.hostPort || a.containerIP.localeCompare(b.containerIP)),
    [
      { proto: 'tcp', hostIP: undefined, hostPort: 8080, containerIP: '10.1.0.2', containerPort: 80 },
      { proto: 'tcp', hostIP: undefined, hostPort: 8080, containerIP: 'fd00:1::2', containerPort: 80 },
      { proto: 'tcp', hostIP: '192.0.2.1', hostPort: 8081, containerIP: '10.1.0.3', containerPort: 80 },
    ],
  );
  assert.equal(connect(O, '192.0.2.1', 8080), 'from 192.0.2.2');
  assert.equal(connect(O, '2001:db8::1', 8080), 'from 2001:db8::2');
  assert.equal(connect(H, '192.0.2.1', 8080), 'from 192.0.2.1');
  assert.equal(connect(H, '127.0.0.1', 8080), 'from 10.1.0.1');
  // Hairpin: S2 reaches S1 through a host address and sees the reply come back.
  assert.equal(connect(S2, '10.1.0.1', 8080), 'from 10.1.0.1');
  assert.equal(connect(S2, '192.0.2.1', 8080), 'from 10.1.0.1');
  // From another network, only through the published port.
  assert.equal(connect(S3, '192.0.2.1', 8080), 'from 10.2.0.2');
  // A pinned host address answers only there.
  assert.equal(connect(O, '192.0.2.1', 8081), 'from 192.0.2.2');
  assert.equal(connect(H, '127.0.0.1', 8081), 'ERR ECONNREFUSED');
  // UDP, the same way.
  const dns: PortMapping = { proto: 'udp', hostPort: 5353, containerIP: '10.1.0.2', containerPort: 80 };
  fw.addPorts([dns]);
  const udp = spawnSync('ip', ['netns', 'exec', O, process.execPath, '-e', UDP_CLIENT, '192.0.2.1', '5353'], {
    encoding: 'utf8',
  });
  assert.equal(udp.stdout.trim(), 'from 192.0.2.2');
  fw.removePorts([dns]);
  // The internal network cannot use published ports either.
  assertBlocked(S4, '10.3.0.1', 8080);
});

test('bridged frames skip conntrack; frames to the gateway are tracked', { skip }, () => {
  // A probe after conntrack (priority -200) and before NAT counts what it saw.
  sh('ip', ['netns', 'exec', H, 'nft', '-f', '-'], [
    'table inet probe {',
    '  chain p {',
    '    type filter hook prerouting priority -150; policy accept;',
    '    ip saddr 10.1.0.3 ip daddr 10.1.0.2 ct state untracked counter',
    '    ip saddr 10.1.0.3 ip daddr 10.1.0.2 ct state != untracked counter',
    '    ip saddr 10.1.0.3 ip daddr 10.1.0.1 ct state != untracked counter',
    '  }',
    '}',
  ].join('\n'));
  fw.addPorts([web]);
  try {
    assert.equal(connect(S2, '10.1.0.2'), 'from 10.1.0.3');
    assert.equal(connect(S2, '10.1.0.1', 8080), 'from 10.1.0.1');
    const listing = JSON.parse(inNs(H, 'nft', '-j', 'list', 'chain', 'inet', 'probe', 'p')) as {
      nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[];
    };
    const counts = listing.nftables.flatMap((i) => (i.rule ? [i.rule.expr.find((e) => e.counter)?.counter?.packets ?? -1] : []));
    assert.ok(counts[0]! > 0, `bridged S2 -> S1 should be untracked: ${counts.join(' ')}`);
    assert.equal(counts[1], 0, `bridged S2 -> S1 should never be tracked: ${counts.join(' ')}`);
    assert.ok(counts[2]! > 0, `S2 -> the gateway's published port should be tracked: ${counts.join(' ')}`);
  } finally {
    fw.removePorts([web]);
    inNs(H, 'nft', 'delete', 'table', 'inet', 'probe');
  }
});

test('ports: adds and deletes are idempotent; a taken host port is a conflict', { skip }, () => {
  fw.addPorts([web]);
  assert.throws(
    () => fw.addPorts([{ ...web, containerIP: '10.1.0.3' }]),
    (err: unknown) => err instanceof Error && 'code' in err && err.code === 'conflict' && /already published to 10\.1\.0\.2:80/.test(err.message),
  );
  // Two endpoints for one host port in one call: a conflict, and neither is added.
  const twin = { ...web, hostPort: 8090 };
  assert.throws(
    () => fw.addPorts([twin, { ...twin, containerIP: '10.1.0.3' }]),
    (err: unknown) => err instanceof Error && 'code' in err && err.code === 'conflict' && /given twice/.test(err.message),
  );
  assert.equal(fw.listPorts().some((p) => p.hostPort === 8090), false);
  // Removing someone else's mapping of the port (an undo after that conflict) leaves it alone.
  fw.removePorts([{ ...web, containerIP: '10.1.0.3' }]);
  assert.equal(connect(O, '192.0.2.1', 8080), 'from 192.0.2.2');

  fw.removePorts([web, pinned]);
  fw.removePorts([web, pinned]);
  assert.equal(connect(O, '192.0.2.1', 8080), 'ERR ECONNREFUSED');
  assert.deepEqual(fw.listPorts().map((p) => p.containerIP), ['fd00:1::2']);
  fw.removePorts([web6]);
  assert.deepEqual(fw.listPorts(), []);

  // A range is one element per port.
  const range = [0, 1, 2].map((i) => ({ ...web, hostPort: 9000 + i, containerPort: 80 + i }));
  fw.addPorts(range);
  assert.equal(fw.listPorts().length, 3);
  assert.equal(connect(O, '192.0.2.1', 9000), 'from 192.0.2.2');
  fw.removePorts(range);
});

test('networks: element removal lifts isolation, re-adding restores it; both idempotent', { skip }, () => {
  fw.removeNetwork(netB);
  fw.removeNetwork(netB);
  // knB is no Knit bridge now: S1 is forwarded there, NAT-mode, so masqueraded.
  assert.equal(connect(S1, '10.2.0.2'), 'from 10.2.0.1');
  fw.addNetwork(netB);
  fw.addNetwork(netB);
  assertBlocked(S1, '10.2.0.2');
  assert.equal(fw.isPresent(), true);
});

test('networks: another network on the same or an overlapping subnet comes and goes', { skip }, () => {
  const twin: FirewallNetwork = { ...netA, bridge: 'knT' };
  const wide: FirewallNetwork = { ...netA, bridge: 'knW', subnets: ['10.0.0.0/8'] };
  fw.addNetwork(twin);
  fw.addNetwork(wide);
  fw.removeNetwork(twin);
  fw.removeNetwork(wide);
  // netA's own elements are untouched.
  assert.equal(connect(S1, '192.0.2.2'), 'from 192.0.2.1');
  assertBlocked(S1, '10.2.0.2');
});

test('ensure replaces the table atomically; a flushed ruleset is detected', { skip }, () => {
  fw.addPorts([pinned]);
  // A reader in H never sees the table or its sets missing during replaces.
  const reader = spawn(
    'ip',
    ['netns', 'exec', H, 'sh', '-c', 'for i in $(seq 150); do nft list set inet knit bridges >/dev/null 2>&1 || echo MISSING; done; echo done'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  reader.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const finished = new Promise<void>((resolve) => reader.once('exit', () => resolve()));
  for (let i = 0; i < 30; i++) fw.ensure({ networks, ports: [web] });
  return finished.then(() => {
    assert.equal(out.trim(), 'done');
    // The rebuild has exactly the new state.
    assert.deepEqual(fw.listPorts(), [{ ...web, hostIP: undefined }]);
    assert.equal(connect(O, '192.0.2.1', 8080), 'from 192.0.2.2');
    assertBlocked(S1, '10.2.0.2');

    inNs(H, 'nft', 'flush', 'ruleset');
    assert.equal(fw.isPresent(), false);
    // Removing from a missing table is not an error either.
    fw.removePorts([web]);
    fw.ensure({ networks, ports: [] });
    assert.equal(fw.isPresent(), true);
    // A hand-deleted rule is drift too.
    inNs(H, 'nft', 'flush', 'chain', 'inet', 'knit', 'forward');
    assert.equal(fw.isPresent(), false);
    fw.ensure({ networks, ports: [] });
    assert.equal(fw.isPresent(), true);
  });
});

test('fast path: a port joins and leaves idempotently; its MAC on another port replaces the element', { skip }, () => {
  assert.equal(fw.fastpath.enabled, true, 'this kernel hooks netdev chains by name (6.16+)');
  const index = (dev: string) => (JSON.parse(inNs(H, 'ip', '-j', 'link', 'show', dev)) as { ifindex: number }[])[0]?.ifindex as number;
  const list = () => inNs(H, 'nft', 'list', 'table', 'netdev', 'knit');
  const p = { ifname: 'knfp0', group: 7, mac: '02:42:0a:01:00:09', ifindex: index('up0') };
  fw.fastpath.add(p);
  fw.fastpath.add(p);
  assert.match(list(), /device "knfp0"/);
  assert.match(list(), /7 \. 02:42:0a:01:00:09 : "up0"/);
  // The same MAC on a new port (a crash left the old element): the new one wins.
  fw.fastpath.add({ ...p, ifname: 'knfp1', ifindex: index('knA') });
  assert.match(list(), /7 \. 02:42:0a:01:00:09 : "knA"/);
  fw.fastpath.remove({ ...p, ifname: 'knfp1' });
  fw.fastpath.remove({ ...p, ifname: 'knfp1' });
  fw.fastpath.remove(p);
  // Without a group (its bridge is gone) only the device leaves.
  fw.fastpath.remove({ ...p, group: undefined });
  assert.doesNotMatch(list(), /knfp|02:42:0a:01:00:09/);
  // The table flushed away under it: attaches go on, over the bridge, until the next load.
  inNs(H, 'nft', 'delete', 'table', 'netdev', 'knit');
  fw.fastpath.add(p);
  assert.equal(fw.fastpath.enabled, false);
  fw.fastpath.remove(p);
  fw.fastpath.load([]);
  assert.equal(fw.fastpath.enabled, true);
});
