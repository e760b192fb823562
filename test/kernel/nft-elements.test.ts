// Set and map elements written as raw nf_tables netlink must be the very
// bytes libnftables writes for the same text: the table is loaded once with
// the elements in its text, once empty and filled through Firewall (netlink),
// and `nft -j list` must show the same elements for both.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Nft } from '../../src/kernel/nft.ts';
import { concat, inetProto, inetService, ipv4Addr, MAX_BATCH, NftElementError } from '../../src/kernel/nft-elements.ts';
import { Firewall } from '../../src/services/firewall/index.ts';
import { MAPS, rulesetText, SETS } from '../../src/services/firewall/ruleset.ts';
import type { FirewallState } from '../../src/services/firewall/index.ts';
import { makeNetns, sh } from '../helpers/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root' : false;

const state: FirewallState = {
  networks: [
    { bridge: 'knA', subnets: ['10.1.0.0/24', 'fd00:1::/64'], internal: false, masquerade: true },
    { bridge: 'knB', subnets: ['10.2.0.0/16'], internal: false, masquerade: false },
    { bridge: 'kn-i.9', subnets: ['10.3.0.0/28', '2001:db8:ff::/48'], internal: true, masquerade: true },
    { bridge: 'knW', subnets: ['10.0.0.0/8'], internal: false, masquerade: true },
  ],
  ports: [
    { proto: 'tcp', hostPort: 8080, containerIP: '10.1.0.2', containerPort: 80 },
    { proto: 'udp', hostPort: 53, containerIP: '10.1.0.3', containerPort: 5353 },
    { proto: 'tcp', hostIP: '192.0.2.1', hostPort: 443, containerIP: '10.1.0.4', containerPort: 8443 },
    { proto: 'udp', hostIP: '198.51.100.7', hostPort: 65535, containerIP: '10.2.255.254', containerPort: 1 },
    { proto: 'tcp', hostPort: 8080, containerIP: 'fd00:1::2', containerPort: 80 },
    { proto: 'udp', hostIP: '2001:db8::1', hostPort: 9999, containerIP: 'fd00:1::ffff:1', containerPort: 65535 },
  ],
};

let ref = '';
let mine = '';
let nftRef: Nft;
let nftMine: Nft;

before(() => {
  if (skip) return;
  ref = makeNetns().name;
  mine = makeNetns().name;
  nftRef = Nft.open(`/run/netns/${ref}`);
  nftMine = Nft.open(`/run/netns/${mine}`);
  nftRef.run(rulesetText(state));
});

after(() => {
  nftRef?.close();
  nftMine?.close();
});

function elements(ns: string, kind: 'set' | 'map', name: string): unknown[] {
  const out = JSON.parse(sh('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', kind, 'inet', 'knit', name])) as {
    nftables: Record<string, { elem?: unknown[] }>[];
  };
  const elems = out.nftables.flatMap((i) => i[kind]?.elem ?? []);
  return elems.map((e) => JSON.stringify(e)).sort();
}

test('netlink elements list exactly as libnftables-written ones', { skip }, () => {
  const fw = new Firewall(nftMine);
  fw.ensure({ networks: [], ports: [] });
  for (const n of state.networks) fw.addNetwork(n);
  fw.addPorts(state.ports);
  for (const m of Object.keys(MAPS)) {
    const want = elements(ref, 'map', m);
    assert.ok(want.length > 0, `reference map ${m} has elements`);
    assert.deepEqual(elements(mine, 'map', m), want, `map ${m}`);
  }
  for (const s of Object.keys(SETS)) {
    const want = elements(ref, 'set', s);
    assert.ok(want.length > 0, `reference set ${s} has elements`);
    assert.deepEqual(elements(mine, 'set', s), want, `set ${s}`);
  }
  // And what libnftables loaded, netlink removes: nothing left.
  const fwRef = new Firewall(nftRef);
  fwRef.removePorts(state.ports);
  for (const n of state.networks) fwRef.removeNetwork(n);
  for (const m of Object.keys(MAPS)) assert.deepEqual(elements(ref, 'map', m), [], `map ${m} emptied`);
  for (const s of Object.keys(SETS)) assert.deepEqual(elements(ref, 'set', s), [], `set ${s} emptied`);
  fwRef.ensure(state);
});

const key = (port: number): Buffer => concat([ipv4Addr('192.0.2.1'), inetProto('tcp'), inetService(port)]);
const data = (last: number): Buffer => concat([ipv4Addr(`10.9.0.${last}`), inetService(80)]);
const add = (port: number, last = 2) =>
  ({ verb: 'add', table: 'knit', set: 'pub4', elem: { key: key(port), data: data(last) }, label: `port ${port}` }) as const;
const del = (port: number) => ({ verb: 'delete', table: 'knit', set: 'pub4', elem: { key: key(port) }, label: `port ${port}` }) as const;

test('errors: EEXIST for another value, ENOENT for an absent element; a failed batch applies nothing', { skip }, () => {
  new Firewall(nftMine).ensure({ networks: [], ports: [] });
  const el = nftMine.elements;
  el.commit([add(1000)]);
  el.commit([add(1000)]); // same value: fine
  const errs = el.apply([add(1001), add(1000, 3)]);
  assert.equal(errs[0], undefined);
  assert.ok(errs[1] instanceof NftElementError);
  assert.equal(errs[1].code, 'conflict');
  assert.equal(errs[1].errnoCode, 'EEXIST');
  assert.equal(errs[1].index, 1);
  assert.match(errs[1].message, /add element knit pub4 \{ port 1000 \}/);
  assert.equal(el.get('knit', 'pub4', key(1001)), undefined, 'the batch was undone');
  assert.deepEqual(el.get('knit', 'pub4', key(1000))?.data, data(2));

  const gone = el.apply([del(1000), del(1002)]);
  assert.equal(gone[0], undefined);
  assert.equal(gone[1]?.errnoCode, 'ENOENT');
  assert.equal(gone[1]?.code, 'not-found');
  assert.notEqual(el.get('knit', 'pub4', key(1000)), undefined, 'the batch was undone');
  el.commit([del(1000)]);
  assert.equal(el.get('knit', 'pub4', key(1000)), undefined);

  assert.throws(() => el.commit([{ ...add(5), set: 'nosuchmap' }]), (e: unknown) => e instanceof NftElementError && e.errnoCode === 'ENOENT');
});

test('big changes: several batches; many failures at once are all reported', { skip }, () => {
  new Firewall(nftMine).ensure({ networks: [], ports: [] });
  const el = nftMine.elements;
  const n = MAX_BATCH * 2 + 10;
  const ports = Array.from({ length: n }, (_, i) => 20000 + i);
  assert.deepEqual(el.apply(ports.map((p) => add(p))).filter((e) => e !== undefined), []);
  assert.equal(elements(mine, 'map', 'pub4').length, n);
  el.commit(ports.map(del));
  // Every delete fails now: one answer each, none lost to the receive buffer.
  const errs = el.apply(ports.slice(0, MAX_BATCH).map(del));
  assert.equal(errs.filter((e) => e?.errnoCode === 'ENOENT').length, MAX_BATCH);
  // The socket is still in step: a plain change works.
  el.commit([add(7)]);
  el.commit([del(7)]);
  assert.deepEqual(elements(mine, 'map', 'pub4'), []);
});

test('Firewall.addPorts past one batch: a conflict in a later batch adds none', { skip }, () => {
  const fw = new Firewall(nftMine);
  fw.ensure({ networks: [], ports: [{ proto: 'tcp', hostPort: 40000, containerIP: '10.7.0.9', containerPort: 80 }] });
  const range = Array.from({ length: MAX_BATCH + 10 }, (_, i) => ({
    proto: 'tcp' as const,
    hostPort: 40000 - MAX_BATCH - 9 + i,
    containerIP: '10.7.0.2',
    containerPort: 80,
  }));
  assert.throws(
    () => fw.addPorts(range),
    (err: unknown) => err instanceof Error && 'code' in err && err.code === 'conflict' && /already published to 10\.7\.0\.9:80/.test(err.message),
  );
  assert.deepEqual(fw.listPorts(), [{ proto: 'tcp', hostIP: undefined, hostPort: 40000, containerIP: '10.7.0.9', containerPort: 80 }]);
  fw.addPorts(range.slice(0, -1));
  assert.equal(fw.listPorts().length, MAX_BATCH + 10);
  fw.removePorts(range);
  assert.equal(fw.listPorts().length, 1, 'the other endpoint keeps its port');
});
