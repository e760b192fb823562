import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Result100 } from '../../src/cni/types.ts';
import {
  ALL_VERSIONS,
  convertResult,
  formatResult,
  parseVersion,
  reconcile,
  selectVersion,
} from '../../src/cni/version.ts';
import { createResult, createResultFromJSON, parsePrevResult } from '../../src/cni/decode.ts';

const r110: Result100 = {
  cniVersion: '1.1.0',
  interfaces: [
    { name: 'cni0', mac: '00:11:22:33:44:55' },
    { name: 'veth1', mac: '55:44:33:22:11:11' },
    { name: 'eth0', mac: '99:88:77:66:55:44', mtu: 1400, sandbox: '/var/run/netns/blue', socketPath: '/run/x.sock', pciID: '0000:04:00.5' },
  ],
  ips: [
    { address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 2 },
    { address: '10.2.0.5/16', interface: 2 },
    { address: '2001:db8::5/64', gateway: '2001:db8::1', interface: 0 },
  ],
  routes: [
    { dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, table: 100, scope: 0 },
    { dst: '::/0' },
    { dst: '192.168.0.0/16', priority: 5 },
  ],
  dns: { nameservers: ['10.1.0.1'], domain: 'example', search: ['a.example'], options: ['ndots:5'] },
};

describe('versions', () => {
  it('parses like version.ParseVersion', () => {
    assert.deepEqual(parseVersion(''), [0, 1, 0]);
    assert.deepEqual(parseVersion('1'), [1, 0, 0]);
    assert.deepEqual(parseVersion('0.4'), [0, 4, 0]);
    assert.throws(() => parseVersion('1.0.0.0'), /too many parts/);
    assert.throws(() => parseVersion('1.x'), /minor version part "x"/);
  });

  it('selects the highest version no newer than 1.1.0', () => {
    assert.equal(selectVersion('0.4.0', ['0.3.1', '1.0.0']), '1.0.0');
    assert.equal(selectVersion('1.0.0', ['1.1.0', '2.0.0', '1.5.0']), '1.1.0');
    assert.equal(selectVersion('', ['0.3.1']), '0.3.1');
    assert.equal(selectVersion('3.0.0', ['4.0.0']), '3.0.0');
    assert.equal(selectVersion('0.4.0', undefined), '0.4.0');
    assert.throws(() => selectVersion('', ['a.b']), /invalid cniVersions entry a.b at index 0/);
  });

  it('reconciles by exact membership', () => {
    assert.equal(reconcile('1.0.0', ['0.4.0', '1.0.0']), undefined);
    const err = reconcile('1.1.0', ['0.4.0', '1.0.0']);
    assert.equal(err?.code, 1);
    assert.equal(err?.msg, 'incompatible CNI versions');
    assert.equal(err?.details, 'config is "1.1.0", plugin supports ["0.4.0" "1.0.0"]');
  });
});

describe('result conversion', () => {
  it('converts between every pair of versions', () => {
    for (const from of ALL_VERSIONS) {
      const src = convertResult(r110, from);
      assert.equal(src.cniVersion, from);
      for (const to of ALL_VERSIONS) {
        const out = convertResult(src, to);
        assert.equal(out.cniVersion, to, `${from} -> ${to}`);
        // Every output decodes again in its own version.
        assert.deepEqual(createResult(to, JSON.parse(formatResult(out))), out, `${from} -> ${to} round trip`);
      }
    }
  });

  it('1.1.0 -> 1.0.0 copies every field', () => {
    const r = convertResult(r110, '1.0.0') as Result100;
    assert.deepEqual({ ...r, cniVersion: '1.1.0' }, r110);
  });

  it('1.x -> 0.4.0 adds ip versions and drops new interface fields', () => {
    const r = convertResult(r110, '0.4.0');
    assert.deepEqual(JSON.parse(formatResult(r)), {
      cniVersion: '0.4.0',
      interfaces: [
        { name: 'cni0', mac: '00:11:22:33:44:55' },
        { name: 'veth1', mac: '55:44:33:22:11:11' },
        { name: 'eth0', mac: '99:88:77:66:55:44', sandbox: '/var/run/netns/blue' },
      ],
      ips: [
        { version: '4', interface: 2, address: '10.1.0.5/16', gateway: '10.1.0.1' },
        { version: '4', interface: 2, address: '10.2.0.5/16' },
        { version: '6', interface: 0, address: '2001:db8::5/64', gateway: '2001:db8::1' },
      ],
      routes: [
        { dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1400, table: 100, scope: 0 },
        { dst: '::/0' },
        { dst: '192.168.0.0/16', priority: 5 },
      ],
      dns: r110.dns,
    });
  });

  it('-> 0.2.0 keeps the first address per family and routes by family', () => {
    const r = convertResult(r110, '0.2.0');
    assert.deepEqual(JSON.parse(formatResult(r)), {
      cniVersion: '0.2.0',
      ip4: {
        ip: '10.1.0.5/16',
        gateway: '10.1.0.1',
        routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }, { dst: '192.168.0.0/16' }],
      },
      ip6: { ip: '2001:db8::5/64', gateway: '2001:db8::1', routes: [{ dst: '::/0' }] },
      dns: r110.dns,
    });
  });

  it('0.1.0 -> 1.0.0 lists ip4 then ip6 without interface index', () => {
    const r = createResult('0.1.0', {
      ip4: { ip: '10.0.0.2/24', gateway: '10.0.0.1', routes: [{ dst: '0.0.0.0/0' }] },
      ip6: { ip: 'FD00::0002/64' },
      dns: {},
    });
    assert.equal(r.cniVersion, '0.1.0');
    assert.deepEqual(convertResult(r, '1.0.0'), {
      cniVersion: '1.0.0',
      ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1' }, { address: 'fd00::2/64' }],
      routes: [{ dst: '0.0.0.0/0' }],
    });
  });

  it('prints 1.x without empty dns and 0.4.0 with "dns":{}', () => {
    const bare: Result100 = { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24', interface: 0 }] };
    assert.equal(formatResult(bare).includes('dns'), false);
    assert.match(formatResult(convertResult(bare, '0.4.0')), /"dns": \{\}/);
    // interface index 0 survives.
    assert.match(formatResult(bare), /"interface": 0/);
  });

  it('refuses what libcni refuses', () => {
    assert.throws(() => convertResult(r110, '0.5.0'), /no converter for CNI result version 1.1.0 to 0.5.0/);
    assert.throws(() => convertResult(r110, '2.0.0'), /no converter/);
    assert.throws(() => convertResult({ cniVersion: '1.0.0' }, '0.2.0'), /cannot convert: no valid IP addresses/);
    assert.throws(() => createResult('0.9.0', {}), /unsupported CNI result version "0.9.0"/);
    assert.throws(() => createResult('1.0.0', { cniVersion: '0.4.0' }), /result type supports \[1.0.0 1.1.0\] but unmarshalled CNIVersion is "0.4.0"/);
    assert.throws(() => createResult('1.0.0', { cniVersion: '1.0.0', ips: [{ address: '10.0.0.1' }] }), /ips\[0\]\.address: invalid CIDR address/);
    assert.throws(() => createResult('0.4.0', { cniVersion: '0.4.0', routes: [{ dst: '0.0.0.0/0', gw: 'nope' }] }), /routes\[0\]\.gw: invalid IP address/);
  });

  it('an empty target version means 0.1.0', () => {
    assert.equal(convertResult(r110, '').cniVersion, '0.1.0');
  });

  it('decodes like Go: unknown keys dropped, nulls absent, addresses canonical', () => {
    const r = createResultFromJSON({
      cniVersion: '1.0.0',
      extra: 1,
      interfaces: null,
      ips: [{ address: '2001:DB8:0:0::1/64', gateway: '', interface: null, foo: 'x' }],
    });
    assert.deepEqual(r, { cniVersion: '1.0.0', ips: [{ address: '2001:db8::1/64' }] });
    assert.equal(createResultFromJSON({ ip4: { ip: '1.2.3.4/8' } }).cniVersion, '0.1.0');
  });

  it('parses prevResult in the configuration version', () => {
    const conf = { cniVersion: '0.4.0', name: 'n', prevResult: { ips: [{ version: '4', address: '10.0.0.2/24' }] } };
    const r = parsePrevResult(conf);
    assert.equal(r?.cniVersion, '0.4.0');
    assert.equal(parsePrevResult({ cniVersion: '1.0.0' }), undefined);
    assert.throws(
      () => parsePrevResult({ cniVersion: '1.0.0', prevResult: { cniVersion: '0.3.1' } }),
      (e: Error & { code?: number }) => e.code === 6 && /could not parse prevResult/.test(e.message),
    );
  });
});
