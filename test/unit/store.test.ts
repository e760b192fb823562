import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { z } from 'zod';
import { KnitError } from '../../src/lib/errors.ts';
import { Records } from '../../src/store/records.ts';
import { openSqliteStore } from '../../src/store/sqlite.ts';
import { prefixEnd, type Store, type WatchEvent } from '../../src/store/store.ts';

const dirs: string[] = [];
process.on('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempPath(name = 'knit.db'): string {
  const d = mkdtempSync(join(tmpdir(), 'knit-store-'));
  dirs.push(d);
  return join(d, name);
}

async function withStore(fn: (s: Store, path: string) => Promise<void>): Promise<void> {
  const path = tempPath();
  const s = openSqliteStore(path);
  try {
    await fn(s, path);
  } finally {
    await s.close();
  }
}

/** Collects watch events until `n` have arrived. */
function collect(s: Store, prefix: string, from: number, n: number): { events: WatchEvent[]; done: Promise<WatchEvent[]>; cancel: () => void } {
  const events: WatchEvent[] = [];
  let resolve!: (e: WatchEvent[]) => void;
  let reject!: (e: Error) => void;
  const done = new Promise<WatchEvent[]>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const cancel = s.watch(
    prefix,
    from,
    (batch) => {
      events.push(...batch);
      if (events.length >= n) resolve(events);
    },
    reject,
  );
  return { events, done, cancel };
}

test('prefixEnd is the first key past the prefix', () => {
  assert.equal(prefixEnd('/a/'), '/a0');
  assert.equal(prefixEnd('abc'), 'abd');
  assert.equal(prefixEnd(''), '');
});

test('put, get and revisions follow etcd: one revision per txn, createRevision kept on update', async () => {
  await withStore(async (s) => {
    assert.equal(await s.revision(), 0);
    assert.equal(await s.get('/k'), undefined);
    const r1 = await s.txn([], [{ put: '/k', value: 'a' }, { put: '/j', value: 'b' }]);
    assert.deepEqual(r1, { ok: true, revision: 1 });
    assert.deepEqual(await s.get('/k'), { key: '/k', value: 'a', createRevision: 1, modRevision: 1 });
    const r2 = await s.txn([], [{ put: '/k', value: 'c' }]);
    assert.equal(r2.revision, 2);
    assert.deepEqual(await s.get('/k'), { key: '/k', value: 'c', createRevision: 1, modRevision: 2 });
    assert.equal((await s.get('/j'))?.modRevision, 1);
    assert.equal(await s.revision(), 2);
  });
});

test('compare-and-set: create-if-absent, update-if-unchanged, nothing applied on failure', async () => {
  await withStore(async (s) => {
    assert.equal((await s.txn([{ key: '/x', modRevision: 0 }], [{ put: '/x', value: '1' }])).ok, true);
    const second = await s.txn([{ key: '/x', modRevision: 0 }], [{ put: '/x', value: '2' }, { put: '/y', value: '2' }]);
    assert.deepEqual(second, { ok: false, revision: 1 });
    assert.equal((await s.get('/x'))?.value, '1');
    assert.equal(await s.get('/y'), undefined);
    const rev = (await s.get('/x'))?.modRevision ?? -1;
    assert.equal((await s.txn([{ key: '/x', modRevision: rev + 5 }], [{ delete: '/x' }])).ok, false);
    assert.equal((await s.txn([{ key: '/x', modRevision: rev }], [{ delete: '/x' }])).ok, true);
    assert.equal(await s.get('/x'), undefined);
    // After a delete the key counts as absent again.
    assert.equal((await s.txn([{ key: '/x', modRevision: 0 }], [{ put: '/x', value: '3' }])).ok, true);
    assert.equal((await s.get('/x'))?.createRevision, await s.revision());
  });
});

test('deletes: by key and by prefix; deleting nothing does not bump the revision', async () => {
  await withStore(async (s) => {
    await s.txn([], [{ put: '/n/a/1', value: '' }, { put: '/n/a/2', value: '' }, { put: '/n/ab', value: '' }, { put: '/n/b', value: '' }]);
    const rev = await s.revision();
    assert.deepEqual(await s.txn([], [{ delete: '/missing' }, { deletePrefix: '/zzz/' }]), { ok: true, revision: rev });
    await s.txn([], [{ deletePrefix: '/n/a/' }]);
    assert.deepEqual((await s.list('/n/')).map((kv) => kv.key), ['/n/ab', '/n/b']);
    assert.equal(await s.revision(), rev + 1);
  });
});

test('range and list are ordered by key and honour limits', async () => {
  await withStore(async (s) => {
    await s.txn([], ['/r/c', '/r/a', '/r/b', '/r/d', '/q', '/s'].map((k) => ({ put: k, value: k })));
    assert.deepEqual((await s.list('/r/')).map((kv) => kv.key), ['/r/a', '/r/b', '/r/c', '/r/d']);
    assert.deepEqual((await s.range('/r/b', '/r/d')).map((kv) => kv.key), ['/r/b', '/r/c']);
    assert.deepEqual((await s.range('/r/', '', { limit: 2 })).map((kv) => kv.key), ['/r/a', '/r/b']);
    assert.deepEqual((await s.list('')).length, 6);
  });
});

test('a txn may name each key only once', async () => {
  await withStore(async (s) => {
    await assert.rejects(s.txn([], [{ put: '/d', value: '1' }, { delete: '/d' }]), (e: unknown) => e instanceof KnitError && e.code === 'invalid');
  });
});

test('watch delivers puts and deletes under the prefix, grouped, after the txn', async () => {
  await withStore(async (s) => {
    const w = collect(s, '/w/', 0, 4);
    await s.txn([], [{ put: '/w/a', value: '1' }, { put: '/other', value: 'x' }, { put: '/w/b', value: '2' }]);
    assert.equal(w.events.length, 0, 'events must not be delivered inside txn()');
    await s.txn([], [{ put: '/w/a', value: '3' }]);
    await s.txn([], [{ delete: '/w/b' }]);
    const events = await w.done;
    w.cancel();
    assert.deepEqual(
      events.map((e) => [e.type, e.kv.key, e.kv.value, e.kv.modRevision, e.kv.createRevision]),
      [
        ['put', '/w/a', '1', 1, 1],
        ['put', '/w/b', '2', 1, 1],
        ['put', '/w/a', '3', 2, 1],
        ['delete', '/w/b', '', 3, 1],
      ],
    );
  });
});

test('watch reports each key removed by a deletePrefix', async () => {
  await withStore(async (s) => {
    await s.txn([], [{ put: '/dp/a', value: '1' }, { put: '/dp/b', value: '2' }, { put: '/dq', value: '3' }]);
    const w = collect(s, '/d', 0, 2);
    await s.txn([], [{ deletePrefix: '/dp/' }]);
    assert.deepEqual((await w.done).map((e) => [e.type, e.kv.key, e.kv.modRevision]), [['delete', '/dp/a', 2], ['delete', '/dp/b', 2]]);
    w.cancel();
  });
});

test('watch from an earlier revision replays history; cancel stops delivery', async () => {
  await withStore(async (s) => {
    await s.txn([], [{ put: '/h/1', value: 'a' }]);
    await s.txn([], [{ put: '/h/2', value: 'b' }]);
    await s.txn([], [{ put: '/h/3', value: 'c' }]);
    const w = collect(s, '/h/', 2, 2);
    assert.deepEqual((await w.done).map((e) => e.kv.key), ['/h/2', '/h/3']);
    w.cancel();
    await s.txn([], [{ put: '/h/4', value: 'd' }]);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(w.events.length, 2);
  });
});

test('watching from compacted history reports an error', async () => {
  const path = tempPath();
  const s = openSqliteStore(path, { historyRevisions: 10 });
  try {
    for (let i = 0; i < 1000; i++) await s.txn([], [{ put: '/c', value: String(i) }]);
    const err = await new Promise<Error>((resolve) => s.watch('/c', 5, () => {}, resolve));
    assert.match(err.message, /compacted.*watch from 1001/);
    // Recent history is still there.
    const w = collect(s, '/c', 995, 6);
    assert.deepEqual((await w.done).map((e) => e.kv.value), ['994', '995', '996', '997', '998', '999']);
    w.cancel();
  } finally {
    await s.close();
  }
});

test('a second connection sees writes and its watch picks up the other connection`s commits', async () => {
  await withStore(async (a, path) => {
    const b = openSqliteStore(path, { pollIntervalMs: 5 });
    try {
      const w = collect(b, '/x/', 0, 2);
      await a.txn([], [{ put: '/x/1', value: 'one' }]);
      await a.txn([], [{ put: '/x/2', value: 'two' }]);
      assert.deepEqual((await w.done).map((e) => e.kv.value), ['one', 'two']);
      w.cancel();
      assert.equal((await b.get('/x/2'))?.value, 'two');
      assert.equal(await b.revision(), 2);
      // Revisions stay global across connections.
      assert.equal((await b.txn([], [{ put: '/x/3', value: '' }])).revision, 3);
    } finally {
      await b.close();
    }
  });
});

test('state survives close and reopen; the directory is created; WAL mode is on', async () => {
  const path = join(tempPath('nested'), 'deeper', 'knit.db');
  const s = openSqliteStore(path);
  await s.txn([], [{ put: '/p', value: 'kept' }]);
  await s.close();
  assert.ok(existsSync(path));
  const again = openSqliteStore(path);
  assert.equal((await again.get('/p'))?.value, 'kept');
  assert.equal(await again.revision(), 1);
  await again.close();
  const raw = new DatabaseSync(path);
  assert.equal((raw.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal');
  raw.close();
  await assert.rejects(again.get('/p'), /closed/);
});

function runChild(path: string, mode: string, count: number, killAfterRounds?: number): Promise<{ signal: NodeJS.Signals | null; rounds: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures', 'store-child.ts'), path, mode, String(count)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let rounds = 0;
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      rounds += lines.length;
      if (killAfterRounds !== undefined && rounds >= killAfterRounds) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('exit', (_code, signal) => resolve({ signal, rounds }));
  });
}

test('a process killed in the middle of a txn leaves none of it', async () => {
  const path = tempPath();
  const s = openSqliteStore(path);
  await s.txn([], [{ put: '/crash/0000', value: 'before' }]);
  await s.close();
  const { signal } = await runChild(path, 'die-mid-txn', 200);
  assert.equal(signal, 'SIGKILL');
  const after = openSqliteStore(path);
  try {
    assert.equal(await after.revision(), 1);
    assert.deepEqual((await after.list('/crash/')).map((kv) => [kv.key, kv.value]), [['/crash/0000', 'before']]);
    // And the store still takes writes.
    assert.equal((await after.txn([], [{ put: '/crash/0001', value: 'after' }])).revision, 2);
  } finally {
    await after.close();
  }
});

test('kill -9 at arbitrary points of a stream of txns leaves whole txns only', async () => {
  const path = tempPath();
  const keys = 100;
  for (let run = 0; run < 5; run++) {
    const { signal, rounds } = await runChild(path, 'loop', keys, 3 + run * 7);
    assert.equal(signal, 'SIGKILL');
    const s = openSqliteStore(path);
    try {
      const kvs = await s.list('/crash/');
      assert.equal(kvs.length, keys);
      const values = new Set(kvs.map((kv) => kv.value));
      assert.equal(values.size, 1, `run ${run}: keys from different txns: ${[...values].join(',')}`);
      const revs = new Set(kvs.map((kv) => kv.modRevision));
      assert.equal(revs.size, 1);
      assert.equal([...revs][0], await s.revision(), 'the revision row matches the last whole txn');
      assert.ok(Number([...values][0]) >= rounds, 'every round reported as committed is there');
    } finally {
      await s.close();
    }
  }
});

const Pet = z.object({ name: z.string(), legs: z.number().int() });

test('Records: typed put-if-unchanged, list, delete', async () => {
  await withStore(async (s) => {
    const pets = new Records(s, 'pet', Pet);
    assert.equal(pets.key('rex'), '/knit/v1/pet/rex');
    const rev = await pets.put('rex', { name: 'Rex', legs: 4 }, 0);
    await assert.rejects(pets.put('rex', { name: 'Rex', legs: 3 }, 0), /pet rex already exists/);
    const got = await pets.get('rex');
    assert.deepEqual(got, { id: 'rex', value: { name: 'Rex', legs: 4 }, modRevision: rev });
    const rev2 = await pets.put('rex', { name: 'Rex', legs: 3 }, rev);
    await assert.rejects(pets.put('rex', { name: 'Rex', legs: 5 }, rev), (e: unknown) => e instanceof KnitError && e.code === 'conflict' && /changed by someone else/.test(e.message));
    await pets.put('tom', { name: 'Tom', legs: 4 }, 0);
    assert.deepEqual((await pets.list()).map((r) => [r.id, r.value.legs]), [['rex', 3], ['tom', 4]]);
    await assert.rejects(pets.delete('rex', rev), /changed/);
    await pets.delete('rex', rev2);
    await pets.delete('rex');
    assert.equal(await pets.get('rex'), undefined);
  });
});

test('Records: refuses invalid values on write and corrupt ones on read', async () => {
  await withStore(async (s) => {
    const pets = new Records(s, 'pet', Pet);
    await assert.rejects(pets.put('bad', { name: 'X', legs: 1.5 }, 0), (e: unknown) => e instanceof KnitError && e.code === 'invalid' && e.field === 'pet.legs');
    assert.throws(() => pets.key('a/b'), /no '\/'/);
    await s.txn([], [{ put: '/knit/v1/pet/broken', value: '{"name":1}' }, { put: '/knit/v1/pet/nojson', value: '{' }]);
    await assert.rejects(pets.get('broken'), (e: unknown) => e instanceof KnitError && e.code === 'internal' && /pet\/broken.*pet schema at name/.test(e.message));
    await assert.rejects(pets.get('nojson'), /not JSON/);
  });
});
