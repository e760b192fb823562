import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { createNetns, currentNetnsPath, deleteNetns, isNetns, keepSpareNetns, prepareNetnsTarget, spareNetnsCount, spareNetnsStats, withNetns } from '../../src/kernel/netns.ts';
import { makeNetns, sh, uniqueName } from '../helpers/netns.ts';

const nsId = (path: string): string => readlinkSync(path);
const own = nsId('/proc/thread-self/ns/net');

/** The netns of every thread of this process. */
function threadNetns(): Set<string> {
  return new Set(readdirSync('/proc/self/task').map((t) => nsId(`/proc/self/task/${t}/ns/net`)));
}

/** Namespaces other than our own held open by an fd of this process (the spares). */
function heldNetnsFds(): string[] {
  const ids: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const id = readlinkSync(`/proc/self/fd/${fd}`);
      if (id.startsWith('net:[') && id !== own) ids.push(id);
    } catch {
      // closed meanwhile (readdir's own fd)
    }
  }
  return ids;
}

/** Waits (by turns of the event loop, not by a clock) until cond holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.fail(`gave up waiting for ${what}`);
}

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

  it('makes spares on a worker thread, hands them out, refills them, and leaves every thread home', async () => {
    keepSpareNetns(2);
    try {
      await until(() => spareNetnsCount() === 2, 'two spares');
      const s0 = spareNetnsStats();
      assert.equal(s0.maker, 'worker');
      assert.ok(s0.madeOffThread >= 2);
      assert.equal(s0.madeOnMainThread, 0);
      // Held by fd only: nothing mounted, and every thread (the worker's too) is back in the original netns.
      const held = heldNetnsFds();
      assert.equal(held.length, 2);
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
      for (const id of held) assert.ok(!mounts.includes(` ${id} `), `${id} is mounted somewhere`);
      assert.deepEqual(threadNetns(), new Set([own]));

      const a = `${tmp}/netns/spare-a`;
      const b = `${tmp}/netns/spare-b`;
      await prepareNetnsTarget(a);
      assert.ok(existsSync(a) && !isNetns(a), 'the prepared target is a plain file until createNetns');
      createNetns(a);
      assert.equal(spareNetnsCount(), 1);
      await until(() => spareNetnsCount() === 2, 'the refill');
      assert.equal(spareNetnsStats().madeOffThread, s0.madeOffThread + 1);
      createNetns(b);
      assert.ok(isNetns(a) && isNetns(b));
      const ida = withNetns(a, () => nsId('/proc/thread-self/ns/net'));
      const idb = withNetns(b, () => nsId('/proc/thread-self/ns/net'));
      assert.notEqual(ida, idb);
      assert.notEqual(ida, own);
      assert.equal(nsId('/proc/thread-self/ns/net'), own);
      // The mounted namespaces are no longer held by fd.
      assert.ok(!heldNetnsFds().includes(ida) && !heldNetnsFds().includes(idb));
      // A fresh namespace: only a loopback, down.
      const links = sh('nsenter', [`--net=${a}`, 'ip', '-o', 'link']).trim().split('\n');
      assert.equal(links.length, 1);
      assert.match(links[0] as string, /lo:.*state DOWN/);
      deleteNetns(a);
      deleteNetns(b);
      assert.ok(!existsSync(a) && !existsSync(b));
      await until(() => spareNetnsCount() === 2, 'the second refill');
      assert.equal(spareNetnsStats().madeOnMainThread, 0);
      assert.deepEqual(threadNetns(), new Set([own]));
    } finally {
      keepSpareNetns(0);
    }
    // Freed at once, and the worker stops.
    assert.equal(spareNetnsCount(), 0);
    await until(() => spareNetnsStats().maker === 'none', 'the worker to exit');
    assert.deepEqual(heldNetnsFds(), []);
      });

  it('keepSpareNetns(0) while the worker is making one leaks nothing; a later keepSpareNetns starts it again', async () => {
    for (let round = 0; round < 5; round++) {
      keepSpareNetns(4);
      keepSpareNetns(0);
      await until(() => spareNetnsStats().maker === 'none', 'the worker to exit');
      assert.deepEqual(heldNetnsFds(), []);
    }
    keepSpareNetns(1);
    await until(() => spareNetnsCount() === 1, 'a spare');
    keepSpareNetns(0);
    await until(() => spareNetnsStats().maker === 'none', 'the worker to exit');
    assert.deepEqual(heldNetnsFds(), []);
    assert.deepEqual(threadNetns(), new Set([own]));
  });

  it('a process keeping spares exits on its own, and falls back to the main thread without the worker', () => {
    const url = new URL('../../src/kernel/netns.ts', import.meta.url).href;
    const script = `
      const ns = await import(${JSON.stringify(url)});
      ns.keepSpareNetns(2);
      while (ns.spareNetnsCount() < 2) await new Promise((r) => setTimeout(r, 5));
      ns.createNetns(process.argv[1]);
      ns.deleteNetns(process.argv[1]);
      console.log(JSON.stringify(ns.spareNetnsStats()));
    `;
    for (const worker of ['1', '0']) {
      const target = `${tmp}/netns/child-${worker}`;
      // The timeout only detects a hang (an exit held up by the worker).
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, target], {
        env: { ...process.env, KNIT_SPARE_NETNS_WORKER: worker },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(r.status, 0, `child (worker ${worker}) exited with ${r.status} ${r.signal}: ${r.stderr}`);
      const st = JSON.parse(r.stdout) as ReturnType<typeof spareNetnsStats>;
      if (worker === '1') {
        assert.equal(st.maker, 'worker');
        assert.equal(st.madeOnMainThread, 0);
        assert.ok(st.madeOffThread >= 2);
      } else {
        assert.equal(st.maker, 'main-thread');
        assert.equal(st.madeOffThread, 0);
        assert.ok(st.madeOnMainThread >= 2);
      }
      assert.ok(!existsSync(target));
    }
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
