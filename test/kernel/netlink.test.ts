import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { addAddressRequest, listAddresses } from '../../src/kernel/addr.ts';
import { createBridge, getLink } from '../../src/kernel/link.ts';
import { macFromIPv4, parseMac, randomMac } from '../../src/kernel/mac.ts';
import * as C from '../../src/kernel/netlink/constants.ts';
import { attrStr, attrU32, message, nested, parseAttrs, splitMessages, str, u16be, u32 } from '../../src/kernel/netlink/message.ts';
import { NetlinkError, NetlinkSocket } from '../../src/kernel/netlink/socket.ts';
import { makeNetns } from '../helpers/netns.ts';

describe('netlink codec', () => {
  it('encodes attributes with padding, nesting and byte order', () => {
    assert.deepEqual([...str(3, 'ab')], [7, 0, 3, 0, 0x61, 0x62, 0, 0]);
    assert.deepEqual([...u16be(15, 4789)], [6, 0, 15, 0, 0x12, 0xb5, 0, 0]);
    const n = nested(18, [str(1, 'veth'), u32(2, 5)]);
    assert.equal(n.readUInt16LE(2), 18 | C.NLA_F_NESTED);
    const inner = parseAttrs(parseAttrs(n).get(18)!);
    assert.equal(attrStr(inner.get(1)), 'veth');
    assert.equal(attrU32(inner.get(2)), 5);
  });

  it('frames messages and splits datagrams', () => {
    const a = message(C.RTM_NEWLINK, C.NLM_F_CREATE, Buffer.alloc(16), [str(3, 'x')]);
    assert.equal(a.readUInt32LE(0), a.length);
    a.writeUInt32LE(7, 8);
    const b = message(C.NLMSG_DONE, 0, Buffer.alloc(4));
    b.writeUInt32LE(8, 8);
    const both = Buffer.concat([a, b]);
    const parts = splitMessages(both, both.length);
    assert.deepEqual(parts.map((p) => [p.type, p.seq, p.body.length]), [[C.RTM_NEWLINK, 7, 24], [C.NLMSG_DONE, 8, 4]]);
  });

  it('makes MACs: Docker-style from IPv4, random locally administered', () => {
    assert.equal(macFromIPv4('10.1.0.2'), '02:42:0a:01:00:02');
    assert.throws(() => macFromIPv4('fd00::1'), /IPv4/);
    for (let i = 0; i < 50; i++) {
      const m = parseMac(randomMac());
      assert.equal(m[0]! & 0x03, 0x02, 'unicast, locally administered');
    }
    assert.throws(() => parseMac('02:42:0a:01:00'), /MAC/);
  });
});

describe('netlink socket', { skip: process.getuid?.() !== 0 }, () => {
  let ns: { name: string; path: string };
  let s: NetlinkSocket;
  let br: number;
  before(() => {
    ns = makeNetns();
    s = NetlinkSocket.open(ns.path);
    createBridge(s, { name: 'br0' });
    br = getLink(s, 'br0')?.index ?? 0;
  });
  after(() => s.close());

  it('reports which message of a batch failed, and applies the others', () => {
    const reqs = [addAddressRequest(br, '10.50.0.1/24'), addAddressRequest(99999, '10.50.1.1/24'), addAddressRequest(br, '10.50.2.1/24')];
    assert.throws(() => s.batch(reqs), (e: unknown) => e instanceof NetlinkError && e.index === 1 && e.code === 'ENODEV' && /10\.50\.1\.1/.test(e.message));
    assert.deepEqual(listAddresses(s, br).map((a) => a.cidr).sort(), ['10.50.0.1/24', '10.50.2.1/24']);
  });

  it('carries the kernel extended-ack text', () => {
    const msg = message(C.RTM_NEWLINK, C.NLM_F_CREATE | C.NLM_F_EXCL, Buffer.alloc(16), [
      str(C.IFLA_IFNAME, 'bogus0'),
      nested(C.IFLA_LINKINFO, [str(C.IFLA_INFO_KIND, 'no-such-kind')]),
    ]);
    assert.throws(() => s.request(msg, 'create bogus0'), (e: unknown) => e instanceof NetlinkError && e.op === 'create bogus0' && e.errno === 95 && /Unknown device type/.test(e.message));
  });

  it('reads multi-part dumps', () => {
    const reqs = [];
    for (let i = 0; i < 600; i++) reqs.push(addAddressRequest(br, `10.51.${i >> 8}.${i & 255}/32`));
    s.batch(reqs);
    const got = listAddresses(s, br, 4).filter((a) => a.cidr.startsWith('10.51.'));
    assert.equal(got.length, 600);
  });

  it('runs async requests concurrently with sync ones on the same socket', async () => {
    const p = [];
    for (let i = 0; i < 8; i++) p.push(s.requestAsync(addAddressRequest(br, `10.52.0.${i + 1}/32`).msg, `add ${i}`));
    assert.equal(getLink(s, 'br0')?.index, br); // sync while async in flight
    await Promise.all(p);
    await assert.rejects(s.batchAsync([addAddressRequest(99999, '10.52.1.1/32')]), (e: unknown) => e instanceof NetlinkError && e.code === 'ENODEV');
    assert.equal(listAddresses(s, br, 4).filter((a) => a.cidr.startsWith('10.52.0.')).length, 8);
  });
});
