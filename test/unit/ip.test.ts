import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { canonicalIP, containsIP, formatPrefix, isIPv4, isIPv6, overlaps, parsePrefix, within } from '../../src/lib/ip.ts';

test('parses and formats v4 and v6 prefixes', () => {
  assert.equal(formatPrefix(parsePrefix('10.1.0.0/16')), '10.1.0.0/16');
  assert.equal(formatPrefix(parsePrefix('fd00:0:0:1::/64')), 'fd00:0:0:1::/64');
  assert.equal(canonicalIP('FD00:0000::0001'), 'fd00::1');
  assert.equal(canonicalIP('::ffff:10.0.0.1'), '::ffff:a00:1');
  assert.equal(formatPrefix(parsePrefix('10.1.2.3/16', 'subnet', false)), '10.1.0.0/16');
});

test('refuses bad prefixes with the field named', () => {
  assert.throws(() => parsePrefix('10.1.2.3/16'), /subnet: .*host bits.*10\.1\.0\.0\/16/);
  assert.throws(() => parsePrefix('10.1.0.0/33'), /prefix length/);
  assert.throws(() => parsePrefix('nope', 'subnet'), /subnet: 'nope' is not a CIDR/);
  assert.throws(() => parsePrefix('10.1.0.300/24'), /not an IP address/);
});

test('overlap and containment', () => {
  assert.ok(overlaps(parsePrefix('10.0.0.0/8'), parsePrefix('10.2.0.0/16')));
  assert.ok(!overlaps(parsePrefix('10.1.0.0/16'), parsePrefix('10.2.0.0/16')));
  assert.ok(!overlaps(parsePrefix('10.1.0.0/16'), parsePrefix('fd00::/8')));
  assert.ok(within(parsePrefix('10.1.2.0/24'), parsePrefix('10.1.0.0/16')));
  assert.ok(containsIP(parsePrefix('fd00::/64'), 'fd00::1'));
});

test("isIPv4 and isIPv6 agree with node:net's on every form, good and bad", () => {
  const cases = [
    '1.2.3.4', '255.255.255.255', '256.1.1.1', '01.2.3.4', '1.2.3', '1.2.3.4.5', '', ' 1.2.3.4', '1.2.3.4 ',
    '::', '::1', '1::', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7::', '::ffff:1.2.3.4',
    '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3.4', '::ffff:01.2.3.4', '::ffff:1.2.3',
    '1:2:3:4:5::1.2.3.4', '1:2:3:4:5:6::1.2.3.4', 'fe80::1%eth0', 'fe80::1%eth0.100', 'fe80::1%',
    '1::2::3', ':::', '1:', '1::2:', ':1::2', '12345::', 'g::1', 'a:b:c:d:e:f:0:1',
  ];
  for (const c of cases) {
    assert.equal(isIPv4(c), net.isIPv4(c), `isIPv4(${JSON.stringify(c)})`);
    assert.equal(isIPv6(c), net.isIPv6(c), `isIPv6(${JSON.stringify(c)})`);
  }
});
