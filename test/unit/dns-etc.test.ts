// What Knit writes into /etc/netns/NAME for a sandbox: which resolver, which
// search domains, and when no file at all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpareDirs } from '../../src/lib/spare-dirs.ts';
import { sandboxEtc, sandboxEtcSpares, sandboxHosts, sandboxResolvConf, writeSandboxEtc, type Attachment } from '../../src/agent/etc-netns.ts';
import { dnsAddresses, servesDns } from '../../src/agent/dns.ts';
import type { Network, Sandbox } from '../../src/model/index.ts';

function net(name: string, over: Partial<Network> = {}): Network {
  return {
    id: `id-${name}`, name, tenant: 'default', driver: 'bridge', scope: 'local', ipv6: false, internal: false, mtu: 1500,
    icc: true, masquerade: true, dns: true, fastpath: true, options: {}, labels: {}, origin: 'api', created: '2026-01-01T00:00:00Z',
    subnets: [{ subnet: '10.1.0.0/24', gateway: '10.1.0.1', auxAddresses: {} }],
    ...over,
  };
}

function sandbox(over: Partial<Sandbox> = {}): Sandbox {
  return {
    id: 'sb', name: 'web', netnsPath: '/run/netns/web', ownsNetns: true, dns: { servers: [], search: [], options: [] },
    labels: {}, origin: 'api', state: 'ready', created: '2026-01-01T00:00:00Z', ...over,
  };
}

function att(n: Network, ipv4 = '10.1.0.5/24', ipv6?: string): Attachment {
  return {
    net: n,
    ep: { id: `ep-${n.name}`, networkId: n.id, sandboxId: 'sb', ifname: 'eth0', mac: '', ipv4, ...(ipv6 ? { ipv6 } : {}), aliases: [], ports: [], defaultRoute: true, state: 'ready', created: '' },
  };
}

const how = { servesDns, upstreams: () => ['127.0.0.53', '192.0.2.1', '192.0.2.2:5353'] };

test('the first DNS-enabled network names the resolver; every DNS network is a search domain', () => {
  const v6 = net('b', { subnets: [{ subnet: 'fd00::/64', gateway: 'fd00::1', auxAddresses: {} }, { subnet: '10.2.0.0/24', gateway: '10.2.0.1', auxAddresses: {} }] });
  const conf = sandboxResolvConf(sandbox({ dns: { servers: [], search: ['corp.test'], options: ['ndots:2'] } }), [att(net('off', { dns: false })), att(v6), att(net('a'))], how);
  assert.deepEqual(conf, { nameservers: ['10.2.0.1', 'fd00::1'], search: ['b', 'a', 'corp.test'], options: ['ndots:2'] });
  assert.deepEqual(dnsAddresses(v6), ['10.2.0.1', 'fd00::1']);
});

test('--dns servers override; no DNS network falls back to usable upstreams; nothing at all: no file', () => {
  assert.deepEqual(sandboxResolvConf(sandbox({ dns: { servers: ['9.9.9.9'], search: [], options: [] } }), [att(net('a'))], how)?.nameservers, ['9.9.9.9']);
  assert.deepEqual(sandboxResolvConf(sandbox(), [att(net('off', { dns: false }))], how)?.nameservers, ['192.0.2.1']);
  assert.equal(sandboxResolvConf(sandbox(), [], how), undefined);
});

test('built-in and non-bridge networks serve no names', () => {
  assert.equal(servesDns(net('bridge', { origin: 'builtin' })), false);
  assert.equal(servesDns(net('h', { driver: 'host' })), false);
  assert.equal(servesDns(net('a')), true);
});

test('hosts gives the sandbox its own names on each address', () => {
  const text = sandboxHosts(sandbox({ hostname: 'h1' }), [att(net('a'), '10.1.0.5/24', 'fd00::5/64')]);
  assert.match(text, /^127\.0\.0\.1\tlocalhost$/m);
  assert.match(text, /^10\.1\.0\.5\th1 web$/m);
  assert.match(text, /^fd00::5\th1 web$/m);
});

test('a spare put in place and a dir made the plain way hold the same files; both are emptied when nothing is left to say', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'knit-etc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const files = (dir: string): Record<string, string> =>
    Object.fromEntries(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f), 'utf8')]));
  const plainRoot = join(root, 'plain');
  const spareRoot = join(root, 'spare');
  mkdirSync(spareRoot);
  const spares = sandboxEtcSpares(spareRoot, { keep: 2 });
  t.after(() => spares.close());
  while (spares.ready < 2) await new Promise((r) => setTimeout(r, 5));
  writeSandboxEtc(sandboxEtc(plainRoot, sandbox(), [att(net('a'))], how));
  writeSandboxEtc(sandboxEtc(spareRoot, sandbox(), [att(net('a'))], how), spares);
  assert.equal(spares.ready, 1, 'the new dir was a spare');
  const plain = join(plainRoot, 'web');
  const spare = join(spareRoot, 'web');
  assert.deepEqual(Object.keys(files(plain)), ['hosts', 'resolv.conf']);
  assert.deepEqual(files(spare), files(plain), 'no temporary file left, same contents');
  assert.match(files(spare)['resolv.conf'] ?? '', /^nameserver 10\.1\.0\.1$/m);
  // An existing dir is written in place; the spares are left alone.
  writeSandboxEtc(sandboxEtc(spareRoot, sandbox(), [att(net('a')), att(net('b'), '10.2.0.5/24')], how), spares);
  assert.match(files(spare).hosts ?? '', /^10\.2\.0\.5\t/m);
  writeSandboxEtc(sandboxEtc(spareRoot, sandbox(), [], how), spares);
  writeSandboxEtc(sandboxEtc(plainRoot, sandbox(), [], how));
  assert.deepEqual(files(spare), {});
  assert.deepEqual(files(plain), {});
});

test('a removed sandbox dir becomes a spare only when it holds just the expected files; extra spares go when quiet', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'knit-etc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const spares = sandboxEtcSpares(root, { keep: 4, hold: 5, trimAfterMs: 50 });
  t.after(() => spares.close());
  while (spares.ready < 4) await new Promise((r) => setTimeout(r, 5));
  writeSandboxEtc(sandboxEtc(root, sandbox({ name: 'one' }), [att(net('a'))], how), spares);
  writeSandboxEtc(sandboxEtc(root, sandbox({ name: 'two' }), [att(net('a'))], how), spares);
  writeFileSync(join(root, 'two', 'nsswitch.conf'), 'hosts: files\n');
  while (spares.ready < 4) await new Promise((r) => setTimeout(r, 5));
  spares.retire(join(root, 'one'));
  spares.retire(join(root, 'two'));
  spares.retire(join(root, 'never-made'));
  assert.equal(spares.ready, 5, "one's dir is a spare now; two's held a file of someone else's");
  assert.ok(!existsSync(join(root, 'one')) && !existsSync(join(root, 'two')));
  writeSandboxEtc(sandboxEtc(root, sandbox({ name: 'extra' }), [att(net('a'))], how));
  spares.retire(join(root, 'extra'));
  assert.equal(spares.ready, 5, 'no more than `hold` are kept');
  assert.ok(!existsSync(join(root, 'extra')));
  while (spares.ready > 4) await new Promise((r) => setTimeout(r, 10));
  // Every spare is used up before a dir is made the plain way: none carries the other file.
  for (let i = 0; i < 6; i++) writeSandboxEtc(sandboxEtc(root, sandbox({ name: `n${i}` }), [att(net('a'))], how), spares);
  for (let i = 0; i < 6; i++) assert.deepEqual(readdirSync(join(root, `n${i}`)).sort(), ['hosts', 'resolv.conf']);
});

test('a start removes the spares of a daemon that is gone, not of one that runs', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'knit-etc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, '.knit-spare-999999999'));
  mkdirSync(join(root, `.knit-spare-${process.ppid}`));
  const spares = sandboxEtcSpares(root, { keep: 0, hold: 0 });
  t.after(() => spares.close());
  assert.ok(!existsSync(join(root, '.knit-spare-999999999')));
  assert.ok(existsSync(join(root, `.knit-spare-${process.ppid}`)));
});

test('a reused spare holds exactly the new text, shorter than the old', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'knit-etc-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const spares = new SpareDirs(root, ['hosts', 'resolv.conf'], { keep: 0, hold: 4 });
  t.after(() => spares.close());
  mkdirSync(join(root, 'old'));
  writeFileSync(join(root, 'old', 'hosts'), 'a long line that the next holder must not see\n'.repeat(4));
  writeFileSync(join(root, 'old', 'resolv.conf'), 'nameserver 10.9.9.9\n');
  spares.retire(join(root, 'old'));
  assert.equal(spares.ready, 1);
  assert.equal(spares.install(join(root, 'new'), { hosts: 'short\n', 'resolv.conf': undefined }), true);
  assert.equal(readFileSync(join(root, 'new', 'hosts'), 'utf8'), 'short\n');
  assert.deepEqual(readdirSync(join(root, 'new')), ['hosts']);
});
