import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsRecords, reverseNameToIP } from '../../src/services/dns/records.ts';
import { KnitError } from '../../src/lib/errors.ts';

function v4(r: DnsRecords, client: string, asked: string | undefined, name: string): string[] | undefined {
  return r.lookup(client, asked, name)?.v4.map((e) => e.ipv4!);
}

test('bare and NAME.NETWORK names, case and trailing dot normalised on add', () => {
  const r = new DnsRecords();
  r.addEndpoint({ id: 'e1', network: 'Front', names: ['Web.', 'web-host', 'api'], ipv4: '10.1.0.2' });
  for (const n of ['web', 'web-host', 'api', 'web.front', 'api.front']) assert.deepEqual(v4(r, '10.1.0.9', 'front', n), ['10.1.0.2']);
  assert.equal(r.lookup('10.1.0.9', 'front', 'web.back'), undefined);
});

test('scope: a client sees only its own networks; unknown clients see the asked one', () => {
  const r = new DnsRecords();
  r.addEndpoint({ id: 'a', network: 'n1', names: ['a'], ipv4: '10.1.0.2' });
  r.addEndpoint({ id: 'b', network: 'n2', names: ['b'], ipv4: '10.2.0.2' });
  r.addEndpoint({ id: 'c1', sandbox: 'c', network: 'n1', names: ['c'], ipv4: '10.1.0.3' });
  r.addEndpoint({ id: 'c2', sandbox: 'c', network: 'n2', names: ['c'], ipv4: '10.2.0.3' });
  assert.equal(v4(r, '10.1.0.2', 'n1', 'b'), undefined);
  assert.deepEqual(v4(r, '10.2.0.2', 'n2', 'b'), ['10.2.0.2']);
  // c is on both networks: sees a and b, whichever gateway it asks.
  assert.deepEqual(v4(r, '10.1.0.3', 'n1', 'b'), ['10.2.0.2']);
  assert.deepEqual(v4(r, '10.2.0.3', 'n2', 'a'), ['10.1.0.2']);
  assert.deepEqual(new Set(v4(r, '10.1.0.2', 'n1', 'c')), new Set(['10.1.0.3']));
  // The host (unknown address) sees the network whose gateway it asked.
  assert.deepEqual(v4(r, '192.168.1.1', 'n2', 'b'), ['10.2.0.2']);
  assert.equal(v4(r, '192.168.1.1', 'n1', 'b'), undefined);
});

test('round robin rotates all addresses of a shared alias', () => {
  const r = new DnsRecords();
  for (const i of [2, 3, 4]) r.addEndpoint({ id: `e${i}`, network: 'n', names: [`s${i}`, 'db'], ipv4: `10.0.0.${i}` });
  const seen = [0, 1, 2].map(() => v4(r, '10.0.0.9', 'n', 'db')!);
  for (const s of seen) assert.deepEqual([...s].sort(), ['10.0.0.2', '10.0.0.3', '10.0.0.4']);
  assert.deepEqual(new Set(seen.map((s) => s[0])).size, 3);
});

test('remove is immediate and replace by id swaps names atomically', () => {
  const r = new DnsRecords();
  r.addEndpoint({ id: 'e', network: 'n', names: ['old'], ipv4: '10.0.0.2' });
  r.addEndpoint({ id: 'e', network: 'n', names: ['new'], ipv4: '10.0.0.3' });
  assert.equal(r.lookup('x', 'n', 'old'), undefined);
  assert.deepEqual(v4(r, 'x', 'n', 'new'), ['10.0.0.3']);
  assert.equal(r.reverse('x', 'n', '10.0.0.2'), undefined);
  r.removeEndpoint('e');
  r.removeEndpoint('e');
  assert.equal(r.lookup('x', 'n', 'new'), undefined);
  assert.equal(r.size, 0);
});

test('reverse lookups name every name as NAME.NETWORK, primary first, scoped', () => {
  const r = new DnsRecords();
  r.addEndpoint({ id: 'e', network: 'n', names: ['web', 'alias'], ipv4: '10.0.0.2', ipv6: 'fd00:0:0::2' });
  assert.deepEqual(r.reverse('x', 'n', '10.0.0.2'), ['web.n', 'alias.n']);
  assert.deepEqual(r.reverse('x', 'n', 'fd00::2'), ['web.n', 'alias.n']);
  assert.equal(r.reverse('x', 'other', '10.0.0.2'), undefined);
  assert.equal(reverseNameToIP('2.0.0.10.in-addr.arpa'), '10.0.0.2');
  assert.equal(reverseNameToIP(`2.${'0.'.repeat(29)}d.f.ip6.arpa`), 'fd00::2');
  assert.equal(reverseNameToIP('0.10.in-addr.arpa'), undefined);
  assert.equal(reverseNameToIP('256.0.0.10.in-addr.arpa'), undefined);
});

test('invalid endpoints are refused with the field named', () => {
  const r = new DnsRecords();
  const bad = (e: Parameters<DnsRecords['addEndpoint']>[0], field: string): void => {
    assert.throws(() => r.addEndpoint(e), (err: unknown) => err instanceof KnitError && err.field === field);
  };
  bad({ id: 'e', network: 'n', names: [], ipv4: '10.0.0.2' }, 'names');
  bad({ id: 'e', network: 'n', names: ['a..b'] }, 'names[0]');
  bad({ id: 'e', network: 'n', names: ['x'.repeat(64)] }, 'names[0]');
  bad({ id: 'e', network: 'n', names: ['a'], ipv4: 'fd00::1' }, 'ipv4');
  bad({ id: 'e', network: 'n', names: ['a'], ipv6: '10.0.0.1' }, 'ipv6');
  assert.equal(r.size, 0);
});
