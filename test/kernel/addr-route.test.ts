import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { addAddress, deleteAddress, listAddresses } from '../../src/kernel/addr.ts';
import { createBridge, getLink } from '../../src/kernel/link.ts';
import { NetlinkError, NetlinkSocket } from '../../src/kernel/netlink/socket.ts';
import { addRoute, deleteRoute, listRoutes } from '../../src/kernel/route.ts';
import { ipIn, makeNetns } from '../helpers/netns.ts';

interface IpAddr {
  ifname: string;
  addr_info: { family: string; local: string; prefixlen: number; broadcast?: string; nodad?: boolean }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  metric?: number;
  protocol?: string;
  scope?: string;
  table?: string;
}

function addrs(ns: string, dev: string): IpAddr['addr_info'] {
  const [a] = JSON.parse(ipIn(ns, '-j', 'addr', 'show', 'dev', dev)) as IpAddr[];
  return (a?.addr_info ?? []).filter((i) => !i.local.startsWith('fe80:'));
}

function routes(ns: string, ...args: string[]): IpRoute[] {
  return JSON.parse(ipIn(ns, '-j', ...args, 'route', 'show', 'table', 'all')) as IpRoute[];
}

describe('addresses and routes', { skip: process.getuid?.() !== 0 }, () => {
  let ns: { name: string; path: string };
  let s: NetlinkSocket;
  let br: number;
  before(() => {
    ns = makeNetns();
    s = NetlinkSocket.open(ns.path);
    createBridge(s, { name: 'br0', up: true });
    br = getLink(s, 'br0')?.index ?? 0;
  });
  after(() => s.close());

  it('adds IPv4 and IPv6 addresses, idempotently, with broadcast and nodad', () => {
    addAddress(s, br, '10.9.0.1/24');
    addAddress(s, br, '10.9.0.1/24');
    addAddress(s, br, 'fd00:9::1/64', { noDad: true });
    const a = addrs(ns.name, 'br0');
    const v4 = a.find((i) => i.local === '10.9.0.1');
    assert.equal(v4?.prefixlen, 24);
    assert.equal(v4?.broadcast, '10.9.0.255');
    const v6 = a.find((i) => i.local === 'fd00:9::1');
    assert.equal(v6?.prefixlen, 64);
    assert.equal(v6?.nodad, true);
    const listed = listAddresses(s, br).filter((x) => !x.cidr.startsWith('fe80:'));
    assert.deepEqual(listed.map((x) => [x.family, x.cidr]).sort(), [[4, '10.9.0.1/24'], [6, 'fd00:9::1/64']]);
    assert.ok(listAddresses(s).some((x) => x.index === 1 && x.cidr === '127.0.0.1/8'));
    assert.deepEqual(listAddresses(s, br, 4).map((x) => x.cidr), ['10.9.0.1/24']);
  });

  it('refuses bad CIDRs and unknown interfaces', () => {
    assert.throws(() => addAddress(s, br, '10.9.0.300/24'), /cidr/);
    assert.throws(() => addAddress(s, br, '10.9.0.3/33'), /prefix length/);
    assert.throws(() => addAddress(s, 99999, '10.9.0.3/24'), (e: unknown) => e instanceof NetlinkError && e.code === 'ENODEV');
  });

  it('adds, replaces, lists and deletes routes', () => {
    addRoute(s, { family: 4, dst: '10.20.0.0/16', gateway: '10.9.0.254' });
    addRoute(s, { family: 4, dst: '10.21.0.0/16', oif: br, metric: 50 });
    addRoute(s, { family: 4, dst: 'default', gateway: '10.9.0.254', oif: br });
    addRoute(s, { family: 6, dst: 'fd00:20::/48', gateway: 'fd00:9::fe' });
    addRoute(s, { family: 4, dst: '10.22.0.0/16', oif: br, table: 1000 });
    const r = routes(ns.name);
    const find = (dst: string): IpRoute | undefined => r.find((x) => x.dst === dst);
    assert.equal(find('10.20.0.0/16')?.gateway, '10.9.0.254');
    assert.equal(find('10.21.0.0/16')?.scope, 'link');
    assert.equal(find('10.21.0.0/16')?.metric, 50);
    assert.equal(find('default')?.gateway, '10.9.0.254');
    assert.equal(find('fd00:20::/48')?.gateway, 'fd00:9::fe');
    assert.equal(find('10.22.0.0/16')?.table, '1000');
    // Replace: same destination, new gateway.
    addRoute(s, { family: 4, dst: '10.20.0.0/16', gateway: '10.9.0.253' });
    const again = routes(ns.name, '-4').filter((x) => x.dst === '10.20.0.0/16');
    assert.deepEqual(again.map((x) => x.gateway), ['10.9.0.253']);

    const main4 = listRoutes(s, 4);
    assert.ok(main4.some((x) => x.dst === 'default' && x.gateway === '10.9.0.254' && x.oif === br));
    assert.ok(main4.some((x) => x.dst === '10.21.0.0/16' && x.metric === 50 && x.scope === 'link' && x.proto === 4));
    assert.ok(main4.some((x) => x.dst === '10.9.0.0/24' && x.scope === 'link'), 'the connected route');
    assert.ok(!main4.some((x) => x.dst === '10.22.0.0/16'));
    assert.deepEqual(listRoutes(s, 4, 1000).map((x) => x.dst), ['10.22.0.0/16']);
    assert.ok(listRoutes(s, 6).some((x) => x.dst === 'fd00:20::/48' && x.family === 6));
    assert.ok(listRoutes(s).some((x) => x.family === 6) && listRoutes(s).some((x) => x.family === 4));

    for (const rt of [
      { family: 4 as const, dst: '10.20.0.0/16' },
      { family: 4 as const, dst: '10.21.0.0/16', oif: br, metric: 50 },
      { family: 4 as const, dst: 'default' },
      { family: 6 as const, dst: 'fd00:20::/48' },
      { family: 4 as const, dst: '10.22.0.0/16', table: 1000 },
    ]) {
      deleteRoute(s, rt);
      deleteRoute(s, rt); // gone already: fine
    }
    const left = routes(ns.name).map((x) => x.dst);
    for (const d of ['10.20.0.0/16', '10.21.0.0/16', 'default', 'fd00:20::/48', '10.22.0.0/16']) assert.ok(!left.includes(d), d);
    assert.throws(() => addRoute(s, { family: 4, dst: '10.0.0.0/8', gateway: 'fd00::1' }), /gateway/);
    assert.throws(() => addRoute(s, { family: 4, dst: '10.0.0.1/8' }), /host bits/);
  });

  it('deletes addresses idempotently', () => {
    deleteAddress(s, br, '10.9.0.1/24');
    deleteAddress(s, br, '10.9.0.1/24');
    deleteAddress(s, br, 'fd00:9::1/64');
    assert.deepEqual(addrs(ns.name, 'br0'), []);
    assert.deepEqual(listAddresses(s, br).filter((x) => !x.cidr.startsWith('fe80:')), []);
  });
});
