// Issue 6: unicast between sandboxes of one network goes from port to port
// at the veth's ingress (table netdev knit), never through the bridge; other
// networks' ports stay out of reach; removal, icc=false and restarts keep
// the map exact.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestHost, ping, inNs, removeNetnsWithPrefix, type TestHost } from '../helpers/daemon.ts';
import { uniqueName } from '../helpers/netns.ts';
import type { SandboxView } from '../../src/model/api.ts';

let h: TestHost;
const prefix = uniqueName('knf').slice(0, 10);
let n = 0;
const sbName = () => `${prefix}${(n++).toString(36)}`;
const ip4 = (sb: SandboxView) => (sb.endpoints[0]?.ipv4 ?? '').split('/')[0] as string;
const hostIf = (sb: SandboxView) => sb.endpoints[0]?.hostIfname as string;
const counterTable = uniqueName('knft');

before(async () => {
  h = await startTestHost({ defaultBridge: false });
  // Counts ICMP the bridge forwards between its ports: the fast path leaves it at 0. Before
  // br_netfilter (priority -1): for IPv4 it resumes the bridge hooks only past priority 0.
  h.inHost('nft', `add table bridge ${counterTable}; add chain bridge ${counterTable} counted { type filter hook forward priority -200; }; add rule bridge ${counterTable} counted ip protocol icmp counter`);
});
after(() => removeNetnsWithPrefix(prefix));

interface Fastpath {
  devices: string[];
  /** "group . mac" -> port name */
  elements: Map<string, string>;
}

// nft 1.0.6's JSON leaves a netdev chain's devices out: the text has them.
function fastpath(): Fastpath {
  const text = h.inHost('nft', 'list', 'table', 'netdev', 'knit');
  const one = /device "([^"]+)"/.exec(text)?.[1];
  const many = /devices = \{([^}]*)\}/.exec(text)?.[1];
  const devices = one !== undefined ? [one] : (many ?? '').split(',').map((d) => d.trim().replaceAll('"', '')).filter(Boolean);
  const elements = new Map<string, string>();
  for (const m of text.matchAll(/(\d+) \. ([0-9a-f:]{17}) : "?([^",\s}]+)"?/g)) elements.set(`${m[1]} . ${m[2]}`, m[3] as string);
  return { devices, elements };
}

function bridgedIcmp(): number {
  const out = h.inHost('nft', '-j', 'list', 'chain', 'bridge', counterTable, 'counted');
  const m = /"packets":\s*(\d+)/.exec(out);
  return Number(m?.[1] ?? NaN);
}

test('unicast between sandboxes of one network skips the bridge', () => {
  h.json('network', 'create', 'fpa', '--subnet', '10.81.0.0/24');
  const a1 = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpa');
  const a2 = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpa');
  const fp = fastpath();
  for (const sb of [a1, a2]) {
    assert.ok(fp.devices.includes(hostIf(sb)), `${hostIf(sb)} is hooked`);
    assert.ok([...fp.elements].some(([k, v]) => v === hostIf(sb) && k.endsWith(sb.endpoints[0]?.mac as string)), `${sb.name}'s MAC maps to its port`);
  }
  const before = bridgedIcmp();
  assert.ok(ping(a1.name, ip4(a2)), 'a1 pings a2');
  assert.equal(bridgedIcmp(), before, 'no ICMP crossed the bridge');
  // The gateway is not a sandbox: that traffic still takes the bridge.
  assert.ok(ping(a1.name, '10.81.0.1'));
  assert.equal(h.knit('sandbox', 'rm', a1.name, a2.name).code, 0);
  const left = fastpath();
  for (const sb of [a1, a2]) {
    assert.ok(!left.devices.includes(hostIf(sb)), `${hostIf(sb)} is unhooked after rm`);
    assert.ok(![...left.elements.values()].includes(hostIf(sb)), `${hostIf(sb)} left the map`);
  }
});

test('a frame addressed to another network sandbox MAC is not delivered', () => {
  h.json('network', 'create', 'fpb', '--subnet', '10.82.0.0/24');
  h.json('network', 'create', 'fpc', '--subnet', '10.83.0.0/24');
  const b = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpb');
  const c = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpc');
  // b believes c is on its own link: frames leave b with c's MAC as destination.
  assert.equal(inNs(b.name, 'ip', 'route', 'add', `${ip4(c)}/32`, 'dev', 'eth0').code, 0);
  assert.equal(inNs(b.name, 'ip', 'neigh', 'replace', ip4(c), 'lladdr', c.endpoints[0]?.mac as string, 'dev', 'eth0', 'nud', 'permanent').code, 0);
  assert.ok(!ping(b.name, ip4(c)), 'b must not reach c on another network');
  h.knit('sandbox', 'rm', b.name, c.name);
});

test('icc=false networks stay off the fast path', () => {
  h.json('network', 'create', 'fpd', '--subnet', '10.84.0.0/24', '--opt', 'icc=false');
  const d1 = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpd');
  const d2 = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpd');
  const fp = fastpath();
  assert.ok(!fp.devices.includes(hostIf(d1)));
  assert.ok(![...fp.elements.values()].includes(hostIf(d1)));
  assert.ok(!ping(d1.name, ip4(d2)), 'icc=false still isolates');
  h.knit('sandbox', 'rm', d1.name, d2.name);
});

test('a restart rebuilds the fast path from the ports there are', async () => {
  h.json('network', 'create', 'fpe', '--subnet', '10.85.0.0/24');
  const e1 = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpe');
  const e2 = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpe');
  await h.stop();
  h.inHost('nft', 'delete', 'table', 'netdev', 'knit');
  await h.start();
  const fp = fastpath();
  for (const sb of [e1, e2]) assert.ok(fp.devices.includes(hostIf(sb)) && [...fp.elements.values()].includes(hostIf(sb)), `${sb.name} is back on the fast path`);
  assert.ok(!fp.devices.includes('knit-fastpath'), 'the placeholder device is gone');
  const before = bridgedIcmp();
  assert.ok(ping(e1.name, ip4(e2)));
  assert.equal(bridgedIcmp(), before);
  h.knit('sandbox', 'rm', e1.name, e2.name);
});

test('fastpath=false keeps a network on the bridge', () => {
  h.json('network', 'create', 'fpf', '--subnet', '10.86.0.0/24', '--opt', 'fastpath=false');
  const f1 = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpf');
  const f2 = h.json<SandboxView>('sandbox', 'create', sbName(), '--network', 'fpf');
  assert.ok(![...fastpath().elements.values()].includes(hostIf(f1)));
  const before = bridgedIcmp();
  assert.ok(ping(f1.name, ip4(f2)));
  assert.ok(bridgedIcmp() > before, 'the ICMP crossed the bridge');
  assert.notEqual(h.knit('network', 'create', 'fpg', '--opt', 'fastpath=maybe').code, 0);
  h.knit('sandbox', 'rm', f1.name, f2.name);
});
