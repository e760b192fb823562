import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KnitError } from '../../src/lib/errors.ts';
import { parsePrefix, within } from '../../src/lib/ip.ts';
import { pickDefaultSubnet, pickDefaultV6Subnet } from '../../src/ipam/defaults.ts';
import { parseSortableIP, sortableIP } from '../../src/ipam/keys.ts';
import { checkOverlap, findOverlap } from '../../src/ipam/overlap.ts';
import { rangeOf, validateSubnets } from '../../src/ipam/pool.ts';

function invalidAt(field: string, text: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof KnitError, String(e));
    assert.equal(e.code, 'invalid');
    assert.equal(e.field, field);
    assert.match(e.message, text);
    return true;
  };
}

test('validateSubnets fills in the gateway and canonicalises', () => {
  assert.deepEqual(validateSubnets([{ subnet: '10.1.0.0/16' }, { subnet: 'FD00:1:0:0::/64' }]), [
    { subnet: '10.1.0.0/16', gateway: '10.1.0.1', auxAddresses: {} },
    { subnet: 'fd00:1::/64', gateway: 'fd00:1::1', auxAddresses: {} },
  ]);
  assert.deepEqual(
    validateSubnets([{ subnet: '10.2.0.0/24', gateway: '10.2.0.254', ipRange: '10.2.0.128/25', auxAddresses: { router: '10.2.0.2' } }]),
    [{ subnet: '10.2.0.0/24', gateway: '10.2.0.254', ipRange: '10.2.0.128/25', auxAddresses: { router: '10.2.0.2' } }],
  );
});

test('validateSubnets names the field and shows a valid value', () => {
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0' }]), invalidAt('subnets[0].subnet', /not a CIDR \(e\.g\. 10\.1\.0\.0\/24/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.5/16' }]), invalidAt('subnets[0].subnet', /did you mean 10\.1\.0\.0\/16/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/31' }]), invalidAt('subnets[0].subnet', /too small.*\/30 or shorter \(e\.g\. 10\.1\.0\.0\/24\)/));
  assert.throws(() => validateSubnets([{ subnet: 'fd00::/127' }]), invalidAt('subnets[0].subnet', /too small.*fd00::\/64/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', gateway: '10.2.0.1' }]), invalidAt('subnets[0].gateway', /10\.2\.0\.1 is not within subnet 10\.1\.0\.0\/24 \(e\.g\. 10\.1\.0\.1\)/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', gateway: '10.1.0.0' }]), invalidAt('subnets[0].gateway', /the network address/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', gateway: '10.1.0.255' }]), invalidAt('subnets[0].gateway', /the broadcast address/));
  assert.throws(() => validateSubnets([{ subnet: 'fd00::/64', gateway: 'fd00::' }]), invalidAt('subnets[0].gateway', /subnet-router anycast/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', gateway: 'fd00::1' }]), invalidAt('subnets[0].gateway', /not within subnet/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', gateway: 'nope' }]), invalidAt('subnets[0].gateway', /not an IP address/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', ipRange: '10.1.1.0/25' }]), invalidAt('subnets[0].ipRange', /not within subnet 10\.1\.0\.0\/24 \(e\.g\. 10\.1\.0\.0\/25\)/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', ipRange: '10.1.0.0/23' }]), invalidAt('subnets[0].ipRange', /not within/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', ipRange: '10.1.0.0/32' }]), invalidAt('subnets[0].ipRange', /holds no address/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', auxAddresses: { r: '10.9.0.1' } }]), invalidAt('subnets[0].auxAddresses.r', /not within subnet/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', auxAddresses: { r: '10.1.0.1' } }]), invalidAt('subnets[0].auxAddresses.r', /is the gateway/));
  assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', auxAddresses: { r: '10.1.0.255' } }]), invalidAt('subnets[0].auxAddresses.r', /broadcast/));
  assert.throws(
    () => validateSubnets([{ subnet: '10.1.0.0/16' }, { subnet: '10.1.2.0/24' }]),
    invalidAt('subnets[1].subnet', /10\.1\.2\.0\/24 overlaps 10\.1\.0\.0\/16 \(subnets\[0\]\) of the same network/),
  );
});

test('rangeOf: dynamic range skips network/broadcast (v4) and ::0 (v6), and honours ip-range', () => {
  const [v4, v6, ranged] = validateSubnets([
    { subnet: '10.1.0.0/24', auxAddresses: { a: '10.1.0.9' } },
    { subnet: 'fd00::/120' },
    { subnet: '10.2.0.0/24', ipRange: '10.2.0.0/28' },
  ]);
  const r4 = rangeOf(v4!);
  assert.deepEqual([r4.first, r4.last], [(10n << 24n) | (1n << 16n) | 1n, (10n << 24n) | (1n << 16n) | 254n]);
  assert.deepEqual([...r4.reserved].sort(), [(10n << 24n) | (1n << 16n) | 1n, (10n << 24n) | (1n << 16n) | 9n]);
  const r6 = rangeOf(v6!);
  assert.equal(r6.first, (0xfdn << 120n) + 1n);
  assert.equal(r6.last, (0xfdn << 120n) + 255n);
  const rr = rangeOf(ranged!);
  assert.deepEqual([rr.first & 0xffn, rr.last & 0xffn], [1n, 15n]);
});

test('overlap: names both subnets and the other network', () => {
  const others = [
    { network: 'net2', subnets: ['10.1.2.0/24'] },
    { network: 'net3', subnets: ['fd00:1::/64'] },
  ];
  assert.throws(() => checkOverlap(['10.1.0.0/16'], others), (e: unknown) => e instanceof KnitError && e.code === 'conflict' && e.message === 'subnet 10.1.0.0/16 overlaps 10.1.2.0/24 of network net2');
  assert.deepEqual(findOverlap(['fd00::/16'], others), { subnet: 'fd00::/16', other: 'fd00:1::/64', network: 'net3' });
  assert.equal(findOverlap(['10.2.0.0/16', 'fd00:2::/64'], others), undefined);
  checkOverlap(['10.1.3.0/24'], others);
});

test('pickDefaultSubnet walks 172.17-31/16 then 192.168/20s, skipping used prefixes and host routes', () => {
  assert.equal(pickDefaultSubnet([], []), '172.17.0.0/16');
  assert.equal(pickDefaultSubnet(['172.17.0.0/16'], []), '172.18.0.0/16');
  assert.equal(pickDefaultSubnet(['172.17.5.0/24'], ['172.18.0.0/15', '0.0.0.0/0', 'fd00::/8']), '172.20.0.0/16');
  assert.equal(pickDefaultSubnet([], ['172.16.0.0/12']), '192.168.0.0/20');
  assert.equal(pickDefaultSubnet(['192.168.0.0/20', '192.168.17.0/24'], ['172.16.0.0/12']), '192.168.32.0/20');
  assert.throws(() => pickDefaultSubnet(['192.168.0.0/16'], ['172.16.0.0/12']), (e: unknown) => e instanceof KnitError && e.code === 'exhausted' && /give a subnet/.test(e.message));
});

test('pickDefaultV6Subnet: a stable ULA /64 per network id, skipping used ones', () => {
  const a = pickDefaultV6Subnet('net1', []);
  assert.equal(a, pickDefaultV6Subnet('net1', []));
  assert.notEqual(a, pickDefaultV6Subnet('net2', []));
  const p = parsePrefix(a);
  assert.equal(p.len, 64);
  assert.ok(within(p, parsePrefix('fd00::/8')));
  const b = pickDefaultV6Subnet('net1', [a, '10.0.0.0/8']);
  assert.notEqual(b, a);
  assert.ok(within(parsePrefix(b), parsePrefix('fd00::/8')));
});

test('allocation keys sort in address order and parse back', () => {
  const addrs = [0n, 1n, 9n, 10n, 99n, 100n, 255n, 256n, 65535n, 0xffffffffn];
  const keys = addrs.map((a) => sortableIP(4, a));
  assert.deepEqual([...keys].sort(), keys);
  assert.equal(sortableIP(4, (10n << 24n) | (1n << 16n) | 5n), '010.001.000.005');
  for (const a of addrs) assert.deepEqual(parseSortableIP(sortableIP(4, a)), { family: 4, addr: a });
  const v6 = [1n, 0xfd00n << 112n, (0xfd00n << 112n) + 0xabcdn];
  assert.equal(sortableIP(6, 1n), '0000:0000:0000:0000:0000:0000:0000:0001');
  assert.deepEqual(v6.map((a) => sortableIP(6, a)).sort(), v6.map((a) => sortableIP(6, a)));
  for (const a of v6) assert.deepEqual(parseSortableIP(sortableIP(6, a)), { family: 6, addr: a });
  assert.equal(parseSortableIP('10.1.0.5'), undefined);
});
