import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createVeth, getLink } from '../../src/kernel/link.ts';
import { LinkReaper } from '../../src/kernel/link-reaper.ts';
import { NetlinkSocket } from '../../src/kernel/netlink/socket.ts';
import { closeFd, openNetnsFd } from '../../src/kernel/netns.ts';
import { canRunKernelTests, makeNetns } from '../helpers/netns.ts';

const GROUP = 4242;

describe('LinkReaper', { skip: canRunKernelTests() ? false : 'needs root' }, () => {
  let host: { name: string; path: string };
  let ctr: { name: string; path: string };
  let s: NetlinkSocket;
  let ctrNl: NetlinkSocket;

  before(() => {
    host = makeNetns('kntrp');
    ctr = makeNetns('kntrc');
    s = NetlinkSocket.open(host.path);
    ctrNl = NetlinkSocket.open(ctr.path);
  });
  after(() => {
    s?.close();
    ctrNl?.close();
  });

  function veth(name: string, peer: string): void {
    const fd = openNetnsFd(ctr.path);
    try {
      createVeth(s, { name, peerName: peer, peerNetnsFd: fd, up: true });
    } finally {
      closeFd(fd);
    }
  }

  it('takes retired links down at once and deletes them all, peers included, in the background', async () => {
    const errors: unknown[] = [];
    const r = new LinkReaper(s, GROUP, (e) => errors.push(e));
    for (let i = 0; i < 5; i++) veth(`kntr${i}`, `eth${i}`);
    for (let i = 0; i < 5; i++) r.retire(`kntr${i}`, { netnsPath: ctr.path, ifname: `eth${i}` });
    const l = getLink(s, 'kntr0');
    assert.ok(l, 'still there right after retire');
    assert.equal(l.up, false);
    assert.equal(l.group, GROUP);
    assert.equal(r.size, 5);
    await r.drain();
    assert.equal(r.size, 0);
    for (let i = 0; i < 5; i++) {
      assert.equal(getLink(s, `kntr${i}`), undefined);
      assert.equal(getLink(ctrNl, `eth${i}`), undefined, 'the peer in the sandbox goes too');
    }
    assert.deepEqual(errors, []);
  });

  it('clear() waits until no retired link holds that name in that namespace, so it can be made again', async () => {
    const r = new LinkReaper(s, GROUP);
    veth('kntra', 'eth0');
    r.retire('kntra', { netnsPath: ctr.path, ifname: 'eth0' });
    await r.clear({ netnsPath: ctr.path, ifname: 'eth0' });
    assert.equal(getLink(ctrNl, 'eth0'), undefined);
    veth('kntrb', 'eth0'); // the same name in the same namespace, at once
    assert.ok(getLink(ctrNl, 'eth0'));
    // Nothing pending for a name: clear() returns without waiting for anything.
    await r.clear({ netnsPath: ctr.path, ifname: 'eth9' });
    r.retire('kntrb', { netnsPath: ctr.path, ifname: 'eth0' });
    await r.drain();
  });

  it('retiring a link that is already gone is fine', async () => {
    const r = new LinkReaper(s, GROUP);
    r.retire('kntnope');
    assert.equal(r.size, 0);
    await r.drain();
  });
});
