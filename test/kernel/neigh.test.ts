import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createBridge, createVeth, createVxlan, getLink } from '../../src/kernel/link.ts';
import { NetlinkSocket } from '../../src/kernel/netlink/socket.ts';
import { addFdb, addNeighbor, deleteFdb, deleteNeighbor, listFdb, listNeighbors } from '../../src/kernel/neigh.ts';
import { ipIn, makeNetns, sh } from '../helpers/netns.ts';

interface IpNeigh {
  dst: string;
  dev: string;
  lladdr?: string;
  state: string[];
}
interface BridgeFdb {
  mac: string;
  ifname: string;
  dst?: string;
  master?: string;
  flags: string[];
  state: string;
}

describe('neighbours and fdb', { skip: process.getuid?.() !== 0 }, () => {
  let ns: { name: string; path: string };
  let s: NetlinkSocket;
  let br: number;
  let vx: number;
  let port: number;
  before(() => {
    ns = makeNetns();
    s = NetlinkSocket.open(ns.path);
    createBridge(s, { name: 'br0', up: true });
    br = getLink(s, 'br0')?.index ?? 0;
    createVxlan(s, { name: 'vx0', vni: 7, local: '127.0.0.1', learning: false, master: br, up: true });
    vx = getLink(s, 'vx0')?.index ?? 0;
    createVeth(s, { name: 'p0', peerName: 'p0peer', master: br, up: true });
    port = getLink(s, 'p0')?.index ?? 0;
  });
  after(() => s.close());

  const neigh = (): IpNeigh[] => JSON.parse(ipIn(ns.name, '-j', 'neigh', 'show', 'dev', 'br0')) as IpNeigh[];
  const fdb = (): BridgeFdb[] => JSON.parse(sh('bridge', ['-n', ns.name, '-j', 'fdb', 'show'])) as BridgeFdb[];

  it('adds (replacing), lists and deletes permanent neighbours', () => {
    addNeighbor(s, { index: br, ip: '10.9.0.2', mac: '02:00:00:00:00:02' });
    addNeighbor(s, { index: br, ip: '10.9.0.2', mac: '02:00:00:00:00:22' });
    addNeighbor(s, { index: br, ip: 'fd00::2', mac: '02:00:00:00:00:03' });
    const n = neigh();
    const v4 = n.find((x) => x.dst === '10.9.0.2');
    assert.equal(v4?.lladdr, '02:00:00:00:00:22');
    assert.ok(v4?.state.includes('PERMANENT'));
    assert.equal(n.find((x) => x.dst === 'fd00::2')?.lladdr, '02:00:00:00:00:03');
    const listed = listNeighbors(s, br);
    assert.ok(listed.some((x) => x.ip === '10.9.0.2' && x.mac === '02:00:00:00:00:22' && x.state === 0x80));
    assert.ok(listed.some((x) => x.ip === 'fd00::2'));
    deleteNeighbor(s, { index: br, ip: '10.9.0.2' });
    deleteNeighbor(s, { index: br, ip: '10.9.0.2' });
    deleteNeighbor(s, { index: br, ip: 'fd00::2' });
    assert.deepEqual(neigh().filter((x) => x.state.includes('PERMANENT')), []);
    assert.ok(!listNeighbors(s, br).some((x) => x.state === 0x80));
  });

  it('appends vxlan fdb entries with remotes (self) and bridge entries (master)', () => {
    addFdb(s, { index: vx, mac: '00:00:00:00:00:00', dst: '127.0.0.2' });
    addFdb(s, { index: vx, mac: '00:00:00:00:00:00', dst: '127.0.0.3' });
    addFdb(s, { index: vx, mac: '00:00:00:00:00:00', dst: '127.0.0.3' }); // again: fine
    addFdb(s, { index: vx, mac: '02:00:00:00:00:09', dst: '127.0.0.4', self: true });
    addFdb(s, { index: port, mac: '02:00:00:00:00:0a', master: true });
    addFdb(s, { index: port, mac: '02:00:00:00:00:0a', master: true });
    let f = fdb();
    const zero = f.filter((e) => e.ifname === 'vx0' && e.mac === '00:00:00:00:00:00').map((e) => e.dst).sort();
    assert.deepEqual(zero, ['127.0.0.2', '127.0.0.3']);
    assert.ok(f.some((e) => e.ifname === 'vx0' && e.mac === '02:00:00:00:00:09' && e.dst === '127.0.0.4'));
    const m = f.find((e) => e.ifname === 'p0' && e.mac === '02:00:00:00:00:0a');
    assert.equal(m?.master, 'br0');
    assert.equal(m?.state, 'permanent');
    const listed = listFdb(s, vx);
    assert.deepEqual(listed.filter((e) => e.mac === '00:00:00:00:00:00').map((e) => e.dst).sort(), ['127.0.0.2', '127.0.0.3']);
    assert.ok(listed.every((e) => e.index === vx));
    assert.ok(listFdb(s, port).some((e) => e.mac === '02:00:00:00:00:0a' && e.master === br && !e.self));

    deleteFdb(s, { index: vx, mac: '00:00:00:00:00:00', dst: '127.0.0.2' });
    deleteFdb(s, { index: vx, mac: '00:00:00:00:00:00', dst: '127.0.0.2' });
    deleteFdb(s, { index: port, mac: '02:00:00:00:00:0a', master: true });
    f = fdb();
    assert.deepEqual(f.filter((e) => e.ifname === 'vx0' && e.mac === '00:00:00:00:00:00').map((e) => e.dst), ['127.0.0.3']);
    assert.ok(!f.some((e) => e.mac === '02:00:00:00:00:0a'));
  });
});
