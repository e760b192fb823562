// End to end: two namespaces attached to a bridge with the kernel layer only,
// then real traffic between them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { addAddress, addAddressRequest } from '../../src/kernel/addr.ts';
import { sendGratuitousArp, sendUnsolicitedNeighborAdvert } from '../../src/kernel/arp.ts';
import { createBridge, createVeth, getLink, setLinkRequests } from '../../src/kernel/link.ts';
import { macFromIPv4 } from '../../src/kernel/mac.ts';
import { NetlinkSocket } from '../../src/kernel/netlink/socket.ts';
import { listNeighbors } from '../../src/kernel/neigh.ts';
import { closeFd, openNetnsFd } from '../../src/kernel/netns.ts';
import { addRouteRequest } from '../../src/kernel/route.ts';
import { setSysctl } from '../../src/kernel/sysctl.ts';
import { makeNetns, sh } from '../helpers/netns.ts';

describe('attachment over a bridge', { skip: process.getuid?.() !== 0 }, () => {
  let host: { name: string; path: string };
  let hs: NetlinkSocket;
  let br: number;
  const sockets: NetlinkSocket[] = [];
  before(() => {
    host = makeNetns();
    hs = NetlinkSocket.open(host.path);
    createBridge(hs, { name: 'br0', up: true });
    br = getLink(hs, 'br0')?.index ?? 0;
    addAddress(hs, br, '10.30.0.1/24');
    addAddress(hs, br, 'fd00:30::1/64', { noDad: true });
  });
  after(() => {
    hs.close();
    for (const s of sockets) s.close();
  });

  /** The fast path: peer born in the netns, then one batch inside it. */
  function attach(n: number): { ns: { name: string; path: string }; ip: string; mac: string } {
    const ns = makeNetns();
    const ip = `10.30.0.${n}`;
    const mac = macFromIPv4(ip);
    const fd = openNetnsFd(ns.path);
    try {
      createVeth(hs, { name: `vh${n}`, peerName: 'eth0', peerNetnsFd: fd, peerMac: mac, master: br, up: true });
    } finally {
      closeFd(fd);
    }
    const cs = NetlinkSocket.open(ns.path);
    sockets.push(cs);
    const eth0 = getLink(cs, 'eth0');
    assert.ok(eth0);
    cs.batch([
      addAddressRequest(eth0.index, `${ip}/24`),
      addAddressRequest(eth0.index, `fd00:30::${n}/64`, { noDad: true }),
      ...setLinkRequests(cs, eth0.index, { up: true }),
      ...setLinkRequests(cs, 1, { up: true }),
      addRouteRequest({ family: 4, dst: 'default', gateway: '10.30.0.1' }),
    ]);
    return { ns, ip, mac };
  }

  it('pings between two namespaces over IPv4 and IPv6', () => {
    const t0 = performance.now();
    const a = attach(2);
    const b = attach(3);
    const per = (performance.now() - t0) / 2;
    process.stderr.write(`# attachment (incl. ip netns add): ${per.toFixed(2)} ms each\n`);
    const route = JSON.parse(sh('ip', ['-n', a.ns.name, '-j', 'route', 'show', 'default'])) as { gateway: string }[];
    assert.equal(route[0]?.gateway, '10.30.0.1');
    sh('ip', ['netns', 'exec', a.ns.name, 'ping', '-c', '1', '-W', '5', b.ip]);
    sh('ip', ['netns', 'exec', b.ns.name, 'ping', '-c', '1', '-W', '5', '10.30.0.1']);
    sh('ip', ['netns', 'exec', a.ns.name, 'ping', '-6', '-c', '1', '-W', '5', 'fd00:30::3']);
    const seen = listNeighbors(sockets[0]!).find((x) => x.ip === b.ip);
    assert.equal(seen?.mac, b.mac);
  });

  it('sends a gratuitous ARP that a neighbour with arp_accept learns', () => {
    const a = attach(4);
    const b = attach(5);
    const bs = sockets[sockets.length - 1]!;
    setSysctl('net/ipv4/conf/eth0/arp_accept', '1', b.ns.path);
    assert.equal(listNeighbors(bs).find((x) => x.ip === a.ip), undefined);
    // Delivery through the bridge is synchronous in softirq context on the
    // sending CPU, but allow the receive path a few polls (and resend now and then).
    let got: string | undefined;
    for (let i = 0; i < 200 && got === undefined; i++) {
      if (i % 20 === 0) sendGratuitousArp(a.ns.path, 'eth0', a.ip, a.mac);
      got = listNeighbors(bs).find((x) => x.ip === a.ip)?.mac;
      if (got === undefined) sh('sleep', ['0.01']);
    }
    assert.equal(got, a.mac);
    assert.throws(() => sendGratuitousArp(a.ns.path, 'nosuch0', a.ip, a.mac), /nosuch0/);
    assert.throws(() => sendGratuitousArp(a.ns.path, 'eth0', 'fd00::1', a.mac), /IPv4/);
  });

  it('sends an unsolicited neighbour advertisement that a router accepting untracked NAs learns', () => {
    const a = attach(6);
    const b = attach(7);
    const bs = sockets[sockets.length - 1]!;
    // RFC 9131: only a router (forwarding on) creates entries from untracked NAs.
    setSysctl('net/ipv6/conf/eth0/forwarding', '1', b.ns.path);
    setSysctl('net/ipv6/conf/eth0/accept_untracked_na', '1', b.ns.path);
    const ip = 'fd00:30::6';
    assert.equal(listNeighbors(bs).find((x) => x.ip === ip), undefined);
    let got: string | undefined;
    for (let i = 0; i < 200 && got === undefined; i++) {
      // Sent again now and then: on a busy machine the first may go out before the new port forwards.
      if (i % 20 === 0) sendUnsolicitedNeighborAdvert(a.ns.path, 'eth0', ip, a.mac);
      got = listNeighbors(bs).find((x) => x.ip === ip)?.mac;
      if (got === undefined) sh('sleep', ['0.01']);
    }
    assert.equal(got, a.mac);
  });
});
