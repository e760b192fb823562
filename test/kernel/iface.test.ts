// configureInterface: an interface's addresses, link state, loopback and
// routes in one netlink batch; a repeat (a retried attach) is accepted.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { addAddressRequest, listAddresses } from '../../src/kernel/addr.ts';
import { LOOPBACK_INDEX, configureInterface } from '../../src/kernel/iface.ts';
import { createVeth, getLink } from '../../src/kernel/link.ts';
import { NetlinkError, NetlinkSocket } from '../../src/kernel/netlink/socket.ts';
import { listRoutes } from '../../src/kernel/route.ts';
import { makeNetns } from '../helpers/netns.ts';

describe('configureInterface', { skip: process.getuid?.() !== 0 }, () => {
  let ns: { name: string; path: string };
  let s: NetlinkSocket;
  let index: number;
  before(() => {
    ns = makeNetns();
    s = NetlinkSocket.open(ns.path);
    createVeth(s, { name: 'vh0', peerName: 'eth0' });
    index = getLink(s, 'eth0')?.index ?? 0;
  });
  after(() => s.close());

  const setup = () => ({
    index,
    addresses: [{ cidr: '10.41.0.2/24' }, { cidr: 'fd00:41::2/64', noDad: true }],
    up: true,
    loopbackUp: true,
    routes: [
      { family: 4 as const, dst: 'default', gateway: '10.41.0.1' },
      { family: 6 as const, dst: 'default', gateway: 'fd00:41::1' },
    ],
  });

  it('sets addresses, link and loopback up, and default routes through the interface', () => {
    configureInterface(s, setup());
    const link = getLink(s, index);
    assert.equal(link?.up, true);
    assert.equal(getLink(s, LOOPBACK_INDEX)?.name, 'lo');
    assert.equal(getLink(s, LOOPBACK_INDEX)?.up, true);
    const cidrs = listAddresses(s, index).map((a) => a.cidr);
    assert.ok(cidrs.includes('10.41.0.2/24'), cidrs.join(' '));
    assert.ok(cidrs.includes('fd00:41::2/64'), cidrs.join(' '));
    const v4 = listRoutes(s, 4).find((r) => r.dst === 'default');
    assert.equal(v4?.gateway, '10.41.0.1');
    assert.equal(v4?.oif, index);
    assert.equal(listRoutes(s, 6).find((r) => r.dst === 'default')?.gateway, 'fd00:41::1');
  });

  it('accepts addresses and routes already present (a retried attach)', () => {
    configureInterface(s, setup());
    assert.equal(listAddresses(s, index, 4).filter((a) => a.cidr === '10.41.0.2/24').length, 1);
  });

  it('throws the failing step, with its errno and name, when one is refused', () => {
    assert.throws(
      () => configureInterface(s, { index: 9999, addresses: [{ cidr: '10.41.1.2/24' }], up: true, routes: [] }),
      (e: unknown) => e instanceof NetlinkError && e.code === 'ENODEV' && e.message.includes('10.41.1.2/24'),
    );
  });

  it('batchSettled reports each request by position', () => {
    // The same address twice: the first is accepted, the second is EEXIST.
    const errs = s.batchSettled([
      { msg: addAddressRequest(index, '10.41.2.2/24').msg, op: 'first' },
      { msg: addAddressRequest(index, '10.41.2.2/24').msg, op: 'second' },
    ]);
    assert.equal(errs.length, 2);
    assert.equal(errs[0], undefined);
    assert.equal(errs[1]?.code, 'EEXIST');
    assert.equal(errs[1]?.index, 1);
  });
});
