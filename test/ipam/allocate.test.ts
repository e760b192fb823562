// The allocator's in-memory copy of a network (view.ts), its short first scan
// read, releaseOwner's single write and transfer: same answers as reading
// everything from the store each time, also when another writer changes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KnitError, type ErrorCode } from '../../src/lib/errors.ts';
import { formatIP, parseIP } from '../../src/lib/ip.ts';
import { Ipam } from '../../src/ipam/ipam.ts';
import { allocKey, ownerKey } from '../../src/ipam/keys.ts';
import { openSqliteStore } from '../../src/store/sqlite.ts';
import type { Store } from '../../src/store/store.ts';

const dirs: string[] = [];
process.on('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function withStore(fn: (store: Store, path: string) => Promise<void>): Promise<void> {
  const d = mkdtempSync(join(tmpdir(), 'knit-ipam-'));
  dirs.push(d);
  const path = join(d, 'knit.db');
  const store = openSqliteStore(path);
  try {
    await fn(store, path);
  } finally {
    await store.close();
  }
}

function knitError(code: ErrorCode, message: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof KnitError, String(e));
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  };
}

/** Counts writes, to show which calls are one transaction. */
function countingTxns(inner: Store): { store: Store; txns: () => number } {
  let n = 0;
  const store: Store = {
    get: (k) => inner.get(k),
    list: (p) => inner.list(p),
    range: (s, e, o) => inner.range(s, e, o),
    txn: (c, o) => (n++, inner.txn(c, o)),
    watch: (p, f, cb, err) => inner.watch(p, f, cb, err),
    revision: () => inner.revision(),
    close: () => inner.close(),
  };
  return { store, txns: () => n };
}

test('random allocate/release matches a model of round robin with gateway, aux and range', async () => {
  await withStore(async (store) => {
    const ipam = new Ipam(store);
    // Range .2-.61 of a /26, gateway .10, aux .11 and .40: dense runs, wraps and reserved holes.
    await ipam.createNetwork('m', { pools: [{ subnet: '10.60.0.0/26', gateway: '10.60.0.10', rangeEnd: '10.60.0.61', auxAddresses: { a: '10.60.0.11', b: '10.60.0.40' } }] });
    const base = parseIP('10.60.0.0').addr;
    const reserved = new Set([10n, 11n, 40n]);
    const held = new Map<string, bigint>();
    let cursor: bigint | undefined;
    let exhausted = 0;
    let wraps = 0;
    const modelNext = (): bigint | undefined => {
      const first = 1n;
      const last = 61n;
      const start = cursor === undefined || cursor >= last ? first : cursor + 1n;
      const taken = new Set(held.values());
      for (let i = 0n; i <= last - first; i++) {
        const a = ((start - first + i) % (last - first + 1n)) + first;
        if (!reserved.has(a) && !taken.has(a)) return a;
      }
      return undefined;
    };
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let step = 0; step < 600; step++) {
      const owners = [...held.keys()];
      // Fill up first (exhaustion), then churn (wraps through held addresses).
      if (owners.length > 0 && rand(100) < (step < 150 ? 10 : 45)) {
        const o = owners[rand(owners.length)] as string;
        if (rand(2) === 0) await ipam.releaseOwner(o, 'm');
        else await ipam.release('m', formatIP(4, base + (held.get(o) as bigint)));
        held.delete(o);
        continue;
      }
      const owner = `ep${step}`;
      const want = modelNext();
      if (want === undefined) {
        await assert.rejects(ipam.allocate('m', { family: 4, owner }), knitError('exhausted', /no free address \(61 in use\)/));
        exhausted++;
        continue;
      }
      assert.equal(await ipam.allocate('m', { family: 4, owner }), formatIP(4, base + want), `step ${step}`);
      held.set(owner, want);
      if (cursor !== undefined && want < cursor) wraps++;
      cursor = want;
    }
    assert.ok(exhausted > 0 && wraps > 3, `exhausted ${exhausted}, wraps ${wraps}`);
    assert.deepEqual((await ipam.allocations('m')).map((a) => a.owner).sort(), [...held.keys()].sort());
  });
});

test('a network changed by another writer: the cached copy is dropped and the new pools rule', async () => {
  await withStore(async (store, path) => {
    const ipam = new Ipam(store);
    await ipam.createNetwork('n', { pools: [{ subnet: '10.61.0.0/24' }] });
    assert.equal(await ipam.allocate('n', { family: 4, owner: 'a' }), '10.61.0.2');
    const other = openSqliteStore(path);
    try {
      const ipam2 = new Ipam(other);
      // Another writer moves the cursor, then replaces the network with another subnet.
      assert.equal(await ipam2.allocate('n', { family: 4, owner: 'b' }), '10.61.0.3');
      assert.equal(await ipam.allocate('n', { family: 4, owner: 'c' }), '10.61.0.4', 'the stale cursor costs a retry, not a reused address');
      await ipam2.deleteNetwork('n');
      await ipam2.createNetwork('n', { pools: [{ subnet: '10.62.0.0/24' }, { subnet: 'fd00:62::/64' }] });
      assert.equal(await ipam.allocate('n', { family: 4, owner: 'd' }), '10.62.0.2');
      assert.equal(await ipam.allocate('n', { family: 4, owner: 'e', ip: '10.62.0.9' }), '10.62.0.9');
      // Errors judged on a stale copy are judged again: v6 exists now, and v4 static checks use the new subnet.
      await ipam2.deleteNetwork('n');
      await ipam2.createNetwork('n', { pools: [{ subnet: '10.63.0.0/24' }] });
      await assert.rejects(ipam.allocate('n', { family: 4, owner: 'f', ip: '10.62.0.20' }), knitError('invalid', /not within the IPv4 subnets of network n \(10\.63\.0\.0\/24\)/));
      await assert.rejects(ipam.allocate('n', { family: 6, owner: 'f' }), knitError('invalid', /network n has no IPv6 subnet/));
      await ipam2.deleteNetwork('n');
      await assert.rejects(ipam.allocate('n', { family: 4, owner: 'f' }), knitError('not-found', /network n has no IPAM pools/));
    } finally {
      await other.close();
    }
  });
});

test('releaseOwner frees a dual-stack endpoint in one write, and still copes with a stale index entry', async () => {
  await withStore(async (inner) => {
    const { store, txns } = countingTxns(inner);
    const ipam = new Ipam(store);
    await ipam.createNetwork('ds', { pools: [{ subnet: '10.64.0.0/24' }, { subnet: 'fd00:64::/64' }] });
    await ipam.allocate('ds', { family: 4, owner: 'ep' });
    await ipam.allocate('ds', { family: 6, owner: 'ep' });
    const before = txns();
    await ipam.releaseOwner('ep', 'ds');
    assert.equal(txns() - before, 1);
    assert.deepEqual(await ipam.allocations('ds'), []);
    assert.deepEqual(await ipam.addressesOf('ep'), []);

    // An index entry whose address another owner now holds: that address stays, the entry goes.
    const a = parseIP('10.64.0.50').addr;
    await inner.txn([], [{ put: allocKey('ds', 4, a), value: 'other' }, { put: ownerKey('other', 'ds', 4, a), value: 'ds' }]);
    await inner.txn([], [{ put: ownerKey('ep', 'ds', 4, a), value: 'ds' }]);
    await ipam.allocate('ds', { family: 6, owner: 'ep' });
    await ipam.releaseOwner('ep');
    assert.deepEqual((await ipam.allocations('ds')).map((x) => [x.ip, x.owner]), [['10.64.0.50', 'other']]);
    assert.deepEqual(await ipam.addressesOf('ep'), []);
  });
});

test('transfer passes an address to a new owner in one write; idempotent; refuses what it cannot', async () => {
  await withStore(async (inner) => {
    const { store, txns } = countingTxns(inner);
    const ipam = new Ipam(store);
    await ipam.createNetwork('t', { pools: [{ subnet: '10.65.0.0/24' }] });
    const ip = await ipam.allocate('t', { family: 4, owner: 'pending' });
    const before = txns();
    await ipam.transfer('t', ip, 'pending', 'ep1');
    assert.equal(txns() - before, 1);
    assert.deepEqual(await ipam.addressesOf('pending'), []);
    assert.deepEqual((await ipam.addressesOf('ep1')).map((a) => a.ip), [ip]);
    assert.deepEqual((await ipam.allocations('t')).map((a) => [a.ip, a.owner]), [[ip, 'ep1']]);
    // The endpoint's own allocate then finds it, without a write.
    assert.equal(await ipam.allocate('t', { family: 4, owner: 'ep1', ip }), ip);
    await ipam.transfer('t', ip, 'pending', 'ep1');
    assert.equal(txns() - before, 1, 'a repeated transfer writes nothing');

    await assert.rejects(ipam.transfer('t', ip, 'pending', 'ep2'), knitError('conflict', /10\.65\.0\.2 on network t is held by ep1, not pending/));
    await assert.rejects(ipam.transfer('t', '10.65.0.77', 'pending', 'ep2'), knitError('not-found', /10\.65\.0\.77 is not allocated on network t/));
    const second = await ipam.allocate('t', { family: 4, owner: 'pending2' });
    await assert.rejects(ipam.transfer('t', second, 'pending2', 'ep1'), knitError('conflict', /endpoint ep1 already has 10\.65\.0\.2 on network t/));
    await assert.rejects(ipam.transfer('t', second, 'pending2', ''), knitError('invalid', /needs an owner/));
    // Released through the new owner, the address is free; round robin moves on.
    await ipam.releaseOwner('ep1', 't');
    assert.equal(await ipam.allocate('t', { family: 4, owner: 'ep3' }), '10.65.0.4');
  });
});
