import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readlinkSync, rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { createNetns, currentNetnsPath, deleteNetns, isNetns, keepSpareNetns, prepareNetnsTarget, spareNetnsCount, withNetns } from '../../src/kernel/netns.ts';
import { makeNetns, sh, uniqueName } from '../helpers/netns.ts';

const nsId = (path: string): string => readlinkSync(path);
const own = nsId('/proc/thread-self/ns/net');

describe('netns', { skip: process.getuid?.() !== 0 }, () => {
  const tmp = `/run/knit-test-${randomBytes(4).toString('hex')}`;
  after(() => {
    try {
      sh('umount', ['-R', '-l', `${tmp}/netns`]);
    } catch {
      // never mounted
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  it('takes a namespace made ahead: distinct, working, and never the same twice', async () => {
    keepSpareNetns(1);
    try {
      await new Promise((r) => setImmediate(r));
      assert.equal(spareNetnsCount(), 1);
      const a = `${tmp}/netns/spare-a`;
      const b = `${tmp}/netns/spare-b`;
      await prepareNetnsTarget(a);
      assert.ok(existsSync(a) && !isNetns(a), 'the prepared target is a plain file until createNetns');
      createNetns(a);
      assert.equal(spareNetnsCount(), 0);
      await new Promise((r) => setImmediate(r));
      assert.equal(spareNetnsCount(), 1, 'refilled after the turn');
      createNetns(b);
      assert.ok(isNetns(a) && isNetns(b));
      const ida = withNetns(a, () => nsId('/proc/thread-self/ns/net'));
      const idb = withNetns(b, () => nsId('/proc/thread-self/ns/net'));
      assert.notEqual(ida, idb);
      assert.notEqual(ida, own);
      assert.equal(nsId('/proc/thread-self/ns/net'), own);
      // A fresh namespace: only a loopback, down.
      const links = sh('nsenter', [`--net=${a}`, 'ip', '-o', 'link']).trim().split('\n');
      assert.equal(links.length, 1);
      assert.match(links[0] as string, /lo:.*state DOWN/);
      deleteNetns(a);
      deleteNetns(b);
      assert.ok(!existsSync(a) && !existsSync(b));
    } finally {
      keepSpareNetns(0);
    }
    assert.equal(spareNetnsCount(), 0);
  });

  it('creates and deletes a netns under a private directory, idempotently', () => {
    const path = `${tmp}/netns/x`;
    createNetns(path);
    assert.ok(isNetns(path));
    const id = withNetns(path, () => nsId('/proc/thread-self/ns/net'));
    assert.notEqual(id, own);
    createNetns(path); // kept, not replaced
    assert.equal(withNetns(path, () => nsId('/proc/thread-self/ns/net')), id);
    assert.equal(nsId('/proc/thread-self/ns/net'), own);
    // The directory is a shared mount point, as iproute2 makes /run/netns.
    const mi = sh('findmnt', ['-n', '-o', 'PROPAGATION', `${tmp}/netns`]);
    assert.match(mi, /shared/);
    deleteNetns(path);
    assert.ok(!existsSync(path));
    assert.ok(!isNetns(path));
    deleteNetns(path); // gone already: fine
  });

  it('creates a netns under /run/netns that ip netns exec can use', () => {
    const name = uniqueName('kntc');
    const path = `/run/netns/${name}`;
    try {
      createNetns(path);
      assert.ok(sh('ip', ['netns', 'list']).includes(name));
      const out = sh('ip', ['netns', 'exec', name, 'ip', '-j', 'link', 'show']);
      const links = JSON.parse(out) as { ifname: string }[];
      assert.deepEqual(links.map((l) => l.ifname), ['lo']);
    } finally {
      deleteNetns(path);
    }
    assert.ok(!sh('ip', ['netns', 'list']).includes(name));
  });

  it('isNetns is false for ordinary files and missing paths', () => {
    assert.equal(isNetns('/etc/hostname'), false);
    assert.equal(isNetns('/nonexistent/x'), false);
    assert.equal(isNetns('/proc/self/ns/net'), true);
  });

  it('withNetns restores the original netns when fn throws, and nests', () => {
    const a = makeNetns();
    const b = makeNetns();
    assert.throws(() => withNetns(a.path, () => {
      throw new Error('boom');
    }), /boom/);
    assert.equal(nsId('/proc/thread-self/ns/net'), own);
    const idA = withNetns(a.path, () => nsId('/proc/thread-self/ns/net'));
    const seen = withNetns(a.path, () => {
      const inner = withNetns(b.path, () => nsId('/proc/thread-self/ns/net'));
      return [inner, nsId('/proc/thread-self/ns/net')];
    });
    assert.notEqual(seen[0], idA);
    assert.equal(seen[1], idA);
    assert.equal(nsId('/proc/thread-self/ns/net'), own);
    assert.throws(() => withNetns('/nonexistent/ns', () => 1), /ENOENT/);
    assert.equal(nsId('/proc/thread-self/ns/net'), own);
  });

  it('currentNetnsPath names the original netns, even inside a window', () => {
    const a = makeNetns();
    const p = currentNetnsPath();
    assert.equal(withNetns(p, () => nsId('/proc/thread-self/ns/net')), own);
    assert.equal(withNetns(a.path, () => withNetns(p, () => nsId('/proc/thread-self/ns/net'))), own);
  });
});
