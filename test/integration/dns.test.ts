// Issue 5 on the real kernel: the daemon's embedded DNS server answers
// sandboxes by name on their networks' gateways, forwards the rest to a test
// upstream (in its own namespace, never a real resolver), follows attach and
// detach at once, survives a restart, and tells sandboxes about itself
// through /etc/netns/NAME/resolv.conf. Queries are made with dig and getent
// from inside the sandboxes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { startTestHost, inNs, removeNetnsWithPrefix, ROOT, type TestHost } from '../helpers/daemon.ts';
import { makeNetns, uniqueName, ipIn } from '../helpers/netns.ts';
import type { NetworkView, SandboxView } from '../../src/model/api.ts';

// The CLI bundle in dist/ may predate --dns; the daemon always runs from source.
process.env.KNIT_FROM_SOURCE = '1';

const UPSTREAM_IP = '10.199.0.2';
const EXTERNAL = 'external.knit-test.example';
const EXTERNAL_IP = '198.51.100.7';

let h: TestHost;
let upstream: ChildProcess | undefined;
const prefix = uniqueName('knd').slice(0, 10);
let n = 0;
const sbName = () => `${prefix}${(n++).toString(36)}`;
const ip4 = (sb: SandboxView, i = 0) => (sb.endpoints[i]?.ipv4 ?? '').split('/')[0] as string;
const ip6 = (sb: SandboxView, i = 0) => (sb.endpoints[i]?.ipv6 ?? '').split('/')[0] as string;

interface Dig {
  status: string;
  answers: string[];
}

/** dig from inside a sandbox; answers are the record data in the server's order. */
function dig(sb: string, server: string, name: string, type = 'A'): Dig {
  const args = ['+time=2', '+tries=2', '+noall', '+comments', '+answer', `@${server}`];
  const r = type === 'PTR' ? inNs(sb, 'dig', ...args, '-x', name) : inNs(sb, 'dig', ...args, name, type);
  const status = /status: (\w+)/.exec(r.out)?.[1] ?? `no reply (${r.out.trim().split('\n').pop() ?? ''})`;
  const answers = r.out
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith(';'))
    .map((l) => l.split(/\s+/).pop() as string);
  return { status, answers };
}

function sandbox(...args: string[]): SandboxView {
  return h.json<SandboxView>('sandbox', 'create', sbName(), ...args);
}

before(async () => {
  // The upstream lives in its own namespace; the daemon's host namespace reaches it over a veth.
  const up = makeNetns('kndu');
  ipIn(up.name, 'addr', 'add', `${UPSTREAM_IP}/32`, 'dev', 'lo');
  upstream = spawn('nsenter', [`--net=${up.path}`, process.execPath, join(ROOT, 'test/integration/fixtures/dns-upstream.ts'), UPSTREAM_IP, `${EXTERNAL}=${EXTERNAL_IP}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<string>((resolve, reject) => {
    let out = '';
    upstream?.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
    upstream?.once('exit', (code) => reject(new Error(`test upstream exited (${code})`)));
  });
  h = await startTestHost({ daemonArgs: ['--dns', `${UPSTREAM_IP}:${port}`] });
  const [a, b] = [uniqueName('kdv'), uniqueName('kdv')];
  ipIn(h.ns, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', up.name);
  ipIn(h.ns, 'addr', 'add', '10.199.1.1/30', 'dev', a);
  ipIn(h.ns, 'link', 'set', a, 'up');
  ipIn(up.name, 'addr', 'add', '10.199.1.2/30', 'dev', b);
  ipIn(up.name, 'link', 'set', b, 'up');
  ipIn(h.ns, 'route', 'add', `${UPSTREAM_IP}/32`, 'via', '10.199.1.2');
});

after(() => {
  upstream?.kill();
  removeNetnsWithPrefix(prefix);
});

test('names, hostnames, aliases and NAME.NETWORK resolve from a sandbox; PTR too', () => {
  h.json('network', 'create', 'dnsa', '--subnet', '10.81.0.0/24');
  const a = sandbox('--network', 'dnsa', '--hostname', 'host-a', '--alias', 'web', '--alias', 'www');
  const b = sandbox('--network', 'dnsa');
  for (const name of [a.name, 'host-a', 'web', 'www', `${a.name}.dnsa`, `web.dnsa`, 'WEB.dnsa.']) {
    assert.deepEqual(dig(b.name, '10.81.0.1', name), { status: 'NOERROR', answers: [ip4(a)] }, name);
  }
  const ptr = dig(b.name, '10.81.0.1', ip4(a), 'PTR');
  assert.equal(ptr.status, 'NOERROR');
  assert.equal(ptr.answers[0], `${a.name}.dnsa.`);
  assert.ok(ptr.answers.includes('web.dnsa.'), ptr.answers.join(' '));
  assert.equal(dig(b.name, '10.81.0.1', 'nosuchname').status, 'NXDOMAIN');
  // A name with no AAAA on a v4-only network: NODATA, not NXDOMAIN.
  assert.deepEqual(dig(b.name, '10.81.0.1', a.name, 'AAAA'), { status: 'NOERROR', answers: [] });
});

test('AAAA on a dual-stack network, asked over IPv4 and IPv6', () => {
  h.json('network', 'create', 'dns6', '--subnet', '10.82.0.0/24', '--subnet', 'fd00:82::/64', '--ipv6');
  const c = sandbox('--network', 'dns6');
  const d = sandbox('--network', 'dns6');
  assert.ok(ip6(d).startsWith('fd00:82::'), ip6(d));
  assert.deepEqual(dig(c.name, '10.82.0.1', d.name, 'AAAA').answers, [ip6(d)]);
  assert.deepEqual(dig(c.name, 'fd00:82::1', d.name, 'AAAA').answers, [ip6(d)]);
  assert.deepEqual(dig(c.name, 'fd00:82::1', d.name, 'A').answers, [ip4(d)]);
  const ptr = dig(c.name, 'fd00:82::1', ip6(d), 'PTR');
  assert.deepEqual(ptr.answers, [`${d.name}.dns6.`]);
});

test('answers are scoped to shared networks; a sandbox on two networks sees both', () => {
  h.json('network', 'create', 'dnsb', '--subnet', '10.83.0.0/24');
  h.json('network', 'create', 'dnsc', '--subnet', '10.84.0.0/24');
  const p = sandbox('--network', 'dnsb');
  const q = sandbox('--network', 'dnsc');
  const both = sandbox('--network', 'dnsb', '--network', 'dnsc');
  assert.equal(dig(q.name, '10.84.0.1', p.name).status, 'NXDOMAIN', 'q is not on dnsb');
  assert.equal(dig(p.name, '10.83.0.1', q.name).status, 'NXDOMAIN', 'p is not on dnsc');
  // Asking another network's server does not widen the view: the source address decides.
  assert.equal(dig(q.name, '10.83.0.1', p.name).status, 'NXDOMAIN');
  assert.deepEqual(dig(both.name, '10.83.0.1', p.name).answers, [ip4(p)]);
  assert.deepEqual(dig(both.name, '10.83.0.1', q.name).answers, [ip4(q)]);
  assert.deepEqual(dig(both.name, '10.84.0.1', `${p.name}.dnsb`).answers, [ip4(p)]);
});

test('an alias shared by three sandboxes answers all three, rotating', () => {
  h.json('network', 'create', 'dnsr', '--subnet', '10.85.0.0/24');
  const members = [1, 2, 3].map(() => sandbox('--network', 'dnsr', '--alias', 'pool'));
  const client = sandbox('--network', 'dnsr');
  const want = members.map((m) => ip4(m)).sort();
  const firsts = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const r = dig(client.name, '10.85.0.1', 'pool');
    assert.deepEqual([...r.answers].sort(), want);
    firsts.add(r.answers[0] as string);
  }
  assert.equal(firsts.size, 3, `the first answer rotates: ${[...firsts].join(' ')}`);
});

test('attach, query, detach, query: the name appears and goes with no delay', () => {
  h.json<NetworkView>('network', 'create', 'dnsd', '--subnet', '10.86.0.0/24');
  const watcher = sandbox('--network', 'dnsd');
  const late = sandbox();
  assert.equal(dig(watcher.name, '10.86.0.1', 'latecomer').status, 'NXDOMAIN');
  assert.equal(h.knit('network', 'connect', 'dnsd', late.name, '--ip', '10.86.0.77', '--alias', 'latecomer').code, 0);
  assert.deepEqual(dig(watcher.name, '10.86.0.1', 'latecomer').answers, ['10.86.0.77']);
  assert.deepEqual(dig(watcher.name, '10.86.0.1', late.name).answers, ['10.86.0.77']);
  assert.equal(h.knit('network', 'disconnect', 'dnsd', late.name).code, 0);
  assert.equal(dig(watcher.name, '10.86.0.1', 'latecomer').status, 'NXDOMAIN');
  assert.equal(dig(watcher.name, '10.86.0.1', late.name).status, 'NXDOMAIN');
  // Removing a sandbox removes its names too.
  const gone = sandbox('--network', 'dnsd');
  assert.equal(dig(watcher.name, '10.86.0.1', gone.name).status, 'NOERROR');
  assert.equal(h.knit('sandbox', 'rm', gone.name).code, 0);
  assert.equal(dig(watcher.name, '10.86.0.1', gone.name).status, 'NXDOMAIN');
});

test('names Knit does not own go to the upstream given by knit daemon --dns', () => {
  const s = sandbox('--network', 'dnsa');
  assert.deepEqual(dig(s.name, '10.81.0.1', EXTERNAL), { status: 'NOERROR', answers: [EXTERNAL_IP] });
  assert.equal(dig(s.name, '10.81.0.1', 'unknown.knit-test.example').status, 'NXDOMAIN');
});

test('a sandbox gets resolv.conf and hosts; getent finds peers through them', () => {
  const peer = sandbox('--network', 'dnsa', '--alias', 'peer');
  const s = sandbox('--network', 'dnsa', '--hostname', 'me');
  const conf = inNs(s.name, 'cat', '/etc/resolv.conf').out;
  assert.match(conf, /^nameserver 10\.81\.0\.1$/m);
  assert.match(conf, /^search dnsa$/m);
  assert.match(inNs(s.name, 'cat', '/etc/hosts').out, new RegExp(`^${ip4(s).replace(/\./g, '\\.')}\\tme ${s.name}$`, 'm'));
  const peerHit = inNs(s.name, 'getent', 'hosts', 'peer');
  assert.equal(peerHit.code, 0, peerHit.out);
  assert.ok(peerHit.out.startsWith(ip4(peer)), peerHit.out);
  const byName = inNs(s.name, 'getent', 'ahostsv4', peer.name);
  assert.ok(byName.out.startsWith(ip4(peer)), byName.out);
  const ext = inNs(s.name, 'getent', 'hosts', EXTERNAL);
  assert.ok(ext.out.startsWith(EXTERNAL_IP), ext.out);

  // --dns, --dns-search and --dns-option override.
  const own = sandbox('--network', 'dnsa', '--dns', '10.81.0.1', '--dns', '192.0.2.53', '--dns-search', 'corp.test', '--dns-option', 'ndots:2');
  const ownConf = inNs(own.name, 'cat', '/etc/resolv.conf').out;
  assert.match(ownConf, /^nameserver 10\.81\.0\.1\nnameserver 192\.0\.2\.53$/m);
  assert.match(ownConf, /^search dnsa corp\.test$/m);
  assert.match(ownConf, /^options ndots:2$/m);

  const bad = h.knit('sandbox', 'create', sbName(), '--network', 'dnsa', '--dns', '10.81.0.1:53');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /dns\.servers\[0\]/);

  // A sandbox on a DNS-enabled dual-stack network is told both gateways.
  const v6 = sandbox('--network', 'dns6');
  assert.match(inNs(v6.name, 'cat', '/etc/resolv.conf').out, /^nameserver 10\.82\.0\.1\nnameserver fd00:82::1$/m);
});

test('a connect that fails in the kernel leaves the sandbox files as they were', () => {
  // The files are written while the kernel work runs; a failure must take the new lines out again.
  const s = sandbox('--network', 'dnsa');
  const hosts = inNs(s.name, 'cat', '/etc/hosts').out;
  const conf = inNs(s.name, 'cat', '/etc/resolv.conf').out;
  // eth1, the name the next attach would take, is held by someone else's veth.
  ipIn(s.name, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'other1');
  const r = h.knit('network', 'connect', 'dnsb', s.name);
  assert.notEqual(r.code, 0, 'connect should fail: eth1 is taken');
  assert.match(r.stderr, /eth1/);
  assert.equal(inNs(s.name, 'cat', '/etc/hosts').out, hosts);
  assert.equal(inNs(s.name, 'cat', '/etc/resolv.conf').out, conf);
  assert.equal(dig(s.name, '10.81.0.1', s.name).answers.length, 1);
});

test('--opt dns=false: no listener and no names on that network', () => {
  h.json('network', 'create', 'nodns', '--subnet', '10.87.0.0/24', '--opt', 'dns=false');
  const s = sandbox('--network', 'nodns');
  sandbox('--network', 'nodns', '--alias', 'unseen');
  const listeners = h.inHost('ss', '-Hlnu');
  assert.ok(!listeners.includes('10.87.0.1:53'), listeners);
  assert.ok(listeners.includes('10.81.0.1:53'), listeners);
  assert.match(dig(s.name, '10.87.0.1', 'unseen').status, /no reply/);
  // Nothing of Knit's to ask, and the daemon's upstream is on a port resolv.conf cannot name.
  assert.doesNotMatch(inNs(s.name, 'cat', '/etc/resolv.conf').out, /10\.87\.0\.1/);
});

test('a daemon restart serves the same names; a removed network stops its listener', async () => {
  const a = sandbox('--network', 'dnsa', '--alias', 'survivor');
  const b = sandbox('--network', 'dnsa');
  await h.stop();
  await h.start();
  assert.deepEqual(dig(b.name, '10.81.0.1', 'survivor').answers, [ip4(a)]);
  assert.deepEqual(dig(b.name, '10.81.0.1', a.name).answers, [ip4(a)]);
  assert.deepEqual(dig(b.name, '10.81.0.1', EXTERNAL).answers, [EXTERNAL_IP]);
  assert.match(inNs(b.name, 'cat', '/etc/resolv.conf').out, /^nameserver 10\.81\.0\.1$/m);

  h.json('network', 'create', 'dnsgone', '--subnet', '10.88.0.0/24');
  const s = sandbox('--network', 'dnsgone');
  assert.ok(h.inHost('ss', '-Hlnu').includes('10.88.0.1:53'));
  assert.equal(h.knit('sandbox', 'rm', s.name).code, 0);
  assert.equal(h.knit('network', 'rm', 'dnsgone').code, 0);
  assert.ok(!h.inHost('ss', '-Hlnu').includes('10.88.0.1:53'));
  assert.ok(!h.inHost('ss', '-Hlnt').includes('10.88.0.1:53'));
});
