// Relaying names Knit does not own to upstream resolvers. The upstreams are
// test servers on 127.0.0.0/8 started here; no query leaves the machine.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { DnsRecords } from '../../src/services/dns/records.ts';
import { DnsServer } from '../../src/services/dns/server.ts';
import { parseUpstream } from '../../src/services/dns/forward.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchHostUpstreams } from '../../src/services/dns/resolvconf.ts';
import { ask, data, encodeQuery, loopback, TestUpstream } from './client.ts';

const records = new DnsRecords();
const up = new TestUpstream(loopback());
const second = new TestUpstream(loopback());
let upstreams: string[] = [];
const server = new DnsServer({ records, upstreams: () => upstreams, timeoutMs: 600 });
const gw = loopback();
let port = 0;
const client = loopback();
const o = (extra: object = {}) => ({ server: gw, port, from: client, ...extra });

before(async () => {
  await up.start();
  await second.start();
  upstreams = [up.spec];
  port = (await server.listen({ ip: gw, port: 0, network: 'n' })).port;
  records.addEndpoint({ id: 'e', network: 'n', names: ['mine'], ipv4: '10.9.0.2' });
  up.names.set('example.test', { kind: 'answer', a: ['192.0.2.10'] });
  up.names.set('gone.test', { kind: 'nxdomain' });
  up.names.set('broken.test', { kind: 'servfail' });
  up.names.set('big.test', { kind: 'truncate', a: ['192.0.2.1', '192.0.2.2'] });
  up.names.set('hang.test', { kind: 'silent' });
});
after(async () => {
  await server.close();
  await up.stop();
  await second.stop();
});

test('a name Knit does not own is answered by the upstream, with the client\'s query ID', async () => {
  const r = await ask('example.test', 'A', o());
  assert.equal(r.rcode, 'NOERROR');
  assert.deepEqual(data(r, 'A'), ['192.0.2.10']);
  assert.equal(r.flag_aa, false);
  assert.equal(up.seen.at(-1)?.name, 'example.test');
  // Knit's own names never reach the upstream.
  const before = up.seen.length;
  assert.deepEqual(data(await ask('mine', 'A', o()), 'A'), ['10.9.0.2']);
  assert.equal(up.seen.length, before);
});

test('NXDOMAIN and SERVFAIL from the upstream pass through', async () => {
  assert.equal((await ask('gone.test', 'A', o())).rcode, 'NXDOMAIN');
  assert.equal((await ask('broken.test', 'A', o())).rcode, 'SERVFAIL');
});

test('a truncated UDP reply is fetched again over TCP', async () => {
  const r = await ask('big.test', 'A', o());
  assert.equal(r.flag_tc, false);
  assert.deepEqual(data(r, 'A'), ['192.0.2.1', '192.0.2.2']);
  const mine = up.seen.filter((s) => s.name === 'big.test').map((s) => s.transport);
  assert.deepEqual(mine, ['udp', 'tcp']);
});

test('a client asking over TCP is relayed too', async () => {
  assert.deepEqual(data(await ask('example.test', 'A', o({ tcp: true })), 'A'), ['192.0.2.10']);
  assert.deepEqual(data(await ask('big.test', 'A', o({ tcp: true })), 'A'), ['192.0.2.1', '192.0.2.2']);
});

test('an upstream that never answers gives SERVFAIL within the timeout', async () => {
  // The client waits longer than the server's 600 ms deadline; SERVFAIL must come first.
  const r = await ask('hang.test', 'A', o({ timeoutMs: 5000 }));
  assert.equal(r.rcode, 'SERVFAIL');
});

test('a silent first upstream is backed up by the next one', async () => {
  const dead = dgram.createSocket('udp4');
  dead.bind({ address: loopback(), port: 0 });
  await once(dead, 'listening');
  second.names.set('example.test', { kind: 'answer', a: ['192.0.2.99'] });
  upstreams = [`${dead.address().address}:${dead.address().port}`, second.spec];
  try {
    assert.deepEqual(data(await ask('example.test', 'A', o({ timeoutMs: 5000 })), 'A'), ['192.0.2.99']);
  } finally {
    upstreams = [up.spec];
    dead.close();
  }
});

test('no upstream at all: SERVFAIL at once', async () => {
  upstreams = [];
  try {
    assert.equal((await ask('example.test', 'A', o())).rcode, 'SERVFAIL');
  } finally {
    upstreams = [up.spec];
  }
});

test('upstream specs: ip, ip:port, [v6]:port, bare v6; garbage refused', () => {
  assert.deepEqual(parseUpstream('10.0.0.1'), { ip: '10.0.0.1', port: 53 });
  assert.deepEqual(parseUpstream('10.0.0.1:5353'), { ip: '10.0.0.1', port: 5353 });
  assert.deepEqual(parseUpstream('[fd00::1]:5353'), { ip: 'fd00::1', port: 5353 });
  assert.deepEqual(parseUpstream('fd00::1'), { ip: 'fd00::1', port: 53 });
  assert.equal(parseUpstream('resolver.example'), undefined);
  assert.equal(parseUpstream('10.0.0.1:99999'), undefined);
});

test('a flood of relayed queries from one client does not starve another', async () => {
  const flooder = dgram.createSocket('udp4');
  flooder.bind({ address: loopback(), port: 0 });
  await once(flooder, 'listening');
  let refused = 0;
  flooder.on('message', (m) => {
    if ((m[3]! & 0xf) === 5) refused += 1;
  });
  for (let i = 0; i < 1000; i++) flooder.send(encodeQuery('hang.test', 'A'), port, gw);
  try {
    // The flood's queries to a silent upstream sit in flight; another client still gets through.
    assert.deepEqual(data(await ask('example.test', 'A', o()), 'A'), ['192.0.2.10']);
    assert.deepEqual(data(await ask('mine', 'A', o()), 'A'), ['10.9.0.2']);
    for (let i = 0; i < 100 && refused === 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(refused > 0, 'queries beyond the per-client limit are refused');
  } finally {
    flooder.close();
  }
});

test('the server never relays to itself', async () => {
  upstreams = [`${gw}:${port}`];
  try {
    assert.equal((await ask('example.test', 'A', o())).rcode, 'SERVFAIL');
  } finally {
    upstreams = [up.spec];
  }
});

test('watchHostUpstreams re-reads resolv.conf, at most once per refresh interval', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'knit-resolv-'));
  try {
    const path = join(dir, 'resolv.conf');
    writeFileSync(path, 'nameserver 192.0.2.1\n');
    const get = watchHostUpstreams(path, join(dir, 'none'), 0);
    assert.deepEqual(get(), ['192.0.2.1']);
    writeFileSync(path, 'nameserver 192.0.2.2\n');
    assert.deepEqual(get(), ['192.0.2.2']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
