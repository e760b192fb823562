import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { KnitError, type ErrorCode } from '../../src/lib/errors.ts';
import { formatIP, parseIP } from '../../src/lib/ip.ts';
import { Ipam } from '../../src/ipam/ipam.ts';
import { allocKey, cursorKey, ownerKey } from '../../src/ipam/keys.ts';
import { openSqliteStore } from '../../src/store/sqlite.ts';
import type { Op, Store } from '../../src/store/store.ts';

const dirs: string[] = [];
process.on('exit', () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempPath(): string {
  const d = mkdtempSync(join(tmpdir(), 'knit-ipam-'));
  dirs.push(d);
  return join(d, 'knit.db');
}

async function withIpam(fn: (ipam: Ipam, store: Store, path: string) => Promise<void>): Promise<void> {
  const path = tempPath();
  const store = openSqliteStore(path);
  try {
    await fn(new Ipam(store), store, path);
  } finally {
    await store.close();
  }
}

function knitError(code: ErrorCode, message: RegExp | string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof KnitError, String(e));
    assert.equal(e.code, code, e.message);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  };
}

const v4 = (ipam: Ipam, net: string, owner: string, ip?: string): Promise<string> =>
  ipam.allocate(net, ip === undefined ? { family: 4, owner } : { family: 4, owner, ip });

test('dynamic allocation starts after the gateway and never gives out network, gateway or broadcast', async () => {
  await withIpam(async (ipam) => {
    const net = await ipam.createNetwork('net1', { pools: [{ subnet: '10.1.0.0/29' }] });
    assert.deepEqual(net.pools, [{ subnet: '10.1.0.0/29', gateway: '10.1.0.1', auxAddresses: {} }]);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push(await v4(ipam, 'net1', `ep${i}`));
    assert.deepEqual(got, ['10.1.0.2', '10.1.0.3', '10.1.0.4', '10.1.0.5', '10.1.0.6']);
    await assert.rejects(v4(ipam, 'net1', 'ep9'), knitError('exhausted', 'pool 10.1.0.0/29 of network net1 has no free address (6 in use)'));
  });
});

test('exhaustion message of a /30', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('net1', { pools: [{ subnet: '10.1.0.0/30' }] });
    assert.equal(await v4(ipam, 'net1', 'a'), '10.1.0.2');
    await assert.rejects(v4(ipam, 'net1', 'b'), knitError('exhausted', 'pool 10.1.0.0/30 of network net1 has no free address (2 in use)'));
  });
});

test('round robin: a freed address is not handed straight back; allocation wraps', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('rr', { pools: [{ subnet: '10.9.0.0/29' }] });
    assert.equal(await v4(ipam, 'rr', 'a'), '10.9.0.2');
    assert.equal(await v4(ipam, 'rr', 'b'), '10.9.0.3');
    await ipam.release('rr', '10.9.0.2');
    assert.equal(await v4(ipam, 'rr', 'c'), '10.9.0.4');
    assert.equal(await v4(ipam, 'rr', 'd'), '10.9.0.5');
    assert.equal(await v4(ipam, 'rr', 'e'), '10.9.0.6');
    // End of the range: wrap to the start, where .2 is free again.
    assert.equal(await v4(ipam, 'rr', 'f'), '10.9.0.2');
    await ipam.release('rr', '10.9.0.4');
    await ipam.release('rr', '10.9.0.3');
    assert.equal(await v4(ipam, 'rr', 'g'), '10.9.0.3');
    assert.equal(await v4(ipam, 'rr', 'h'), '10.9.0.4');
  });
});

test('static addresses: in the subnet, not gateway, aux, network, broadcast or taken', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('net1', { pools: [{ subnet: '10.1.0.0/24', ipRange: '10.1.0.128/25', auxAddresses: { router: '10.1.0.3' } }] });
    assert.equal(await v4(ipam, 'net1', 'X', '10.1.0.5'), '10.1.0.5', 'static addresses may lie outside the ip-range');
    await assert.rejects(v4(ipam, 'net1', 'Y', '10.1.0.5'), knitError('conflict', '10.1.0.5 is already in use by endpoint X'));
    await assert.rejects(v4(ipam, 'net1', 'Y', '10.1.0.1'), knitError('conflict', /10\.1\.0\.1 is the gateway of network net1/));
    await assert.rejects(v4(ipam, 'net1', 'Y', '10.1.0.3'), knitError('conflict', /reserved as aux address 'router'/));
    await assert.rejects(v4(ipam, 'net1', 'Y', '10.1.0.0'), knitError('invalid', /network address/));
    await assert.rejects(v4(ipam, 'net1', 'Y', '10.1.0.255'), knitError('invalid', /broadcast address/));
    await assert.rejects(v4(ipam, 'net1', 'Y', '10.2.0.7'), knitError('invalid', /ip: 10\.2\.0\.7 is not within the IPv4 subnets of network net1 \(10\.1\.0\.0\/24\)/));
    await assert.rejects(v4(ipam, 'net1', 'Y', 'fd00::1'), knitError('invalid', /not an IPv4 address/));
    await assert.rejects(v4(ipam, 'net1', 'Y', 'bogus'), knitError('invalid', /ip: 'bogus' is not an IP address/));
    // Repeating the same request is fine; asking for another address while holding one is not.
    assert.equal(await v4(ipam, 'net1', 'X', '10.1.0.5'), '10.1.0.5');
    assert.equal(await v4(ipam, 'net1', 'X'), '10.1.0.5');
    await assert.rejects(v4(ipam, 'net1', 'X', '10.1.0.6'), knitError('conflict', /endpoint X already has 10\.1\.0\.5 on network net1/));
    // Dynamic addresses come from the ip-range only.
    assert.equal(await v4(ipam, 'net1', 'Z'), '10.1.0.128');
  });
});

test('aux addresses and a custom gateway are skipped by dynamic allocation', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('aux', { pools: [{ subnet: '10.3.0.0/29', gateway: '10.3.0.2', auxAddresses: { a: '10.3.0.1', b: '10.3.0.4' } }] });
    const got = [await v4(ipam, 'aux', '1'), await v4(ipam, 'aux', '2'), await v4(ipam, 'aux', '3')];
    assert.deepEqual(got, ['10.3.0.3', '10.3.0.5', '10.3.0.6']);
    await assert.rejects(v4(ipam, 'aux', '4'), knitError('exhausted', /\(6 in use\)/));
  });
});

test('IPv6: ::0 is never given out, dual-stack endpoints get one address per family', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('ds', { pools: [{ subnet: '10.4.0.0/24' }, { subnet: 'fd00:4::/64' }] });
    assert.equal(await ipam.allocate('ds', { family: 6, owner: 'e1' }), 'fd00:4::2');
    assert.equal(await v4(ipam, 'ds', 'e1'), '10.4.0.2');
    assert.equal(await ipam.allocate('ds', { family: 6, owner: 'e1' }), 'fd00:4::2');
    assert.equal(await ipam.allocate('ds', { family: 6, owner: 'e2', ip: 'fd00:4:0:0::ab' }), 'fd00:4::ab');
    await assert.rejects(ipam.allocate('ds', { family: 6, owner: 'e3', ip: 'fd00:4::' }), knitError('invalid', /network address/));
    await assert.rejects(ipam.allocate('ds', { family: 6, owner: 'e3', ip: 'fd00:4::1' }), knitError('conflict', /gateway/));
    assert.deepEqual(
      (await ipam.addressesOf('e1')).map((a) => a.ip).sort(),
      ['10.4.0.2', 'fd00:4::2'],
    );
    // A small v6 pool runs out like a v4 one (::0 and the gateway ::1 excluded).
    await ipam.createNetwork('v6', { ipv4: false, pools: [{ subnet: 'fd00:6::/126' }] });
    assert.equal(await ipam.allocate('v6', { family: 6, owner: 'a' }), 'fd00:6::2');
    assert.equal(await ipam.allocate('v6', { family: 6, owner: 'b' }), 'fd00:6::3');
    await assert.rejects(ipam.allocate('v6', { family: 6, owner: 'c' }), knitError('exhausted', 'pool fd00:6::/126 of network v6 has no free address (3 in use)'));
    await assert.rejects(v4(ipam, 'v6', 'x'), knitError('invalid', /network v6 has no IPv4 subnet/));
  });
});

test('release is idempotent; releaseOwner frees an owner everywhere', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('a', { pools: [{ subnet: '10.5.0.0/24' }] });
    await ipam.createNetwork('b', { pools: [{ subnet: '10.6.0.0/24' }, { subnet: 'fd00:6::/64' }] });
    await v4(ipam, 'a', 'ep');
    await v4(ipam, 'b', 'ep');
    await ipam.allocate('b', { family: 6, owner: 'ep' });
    await v4(ipam, 'a', 'other');
    await ipam.release('a', '10.5.0.99');
    await ipam.release('a', '10.5.0.3');
    await ipam.release('a', '10.5.0.3');
    assert.deepEqual((await ipam.allocations('a')).map((x) => [x.ip, x.owner]), [['10.5.0.2', 'ep']]);
    assert.equal((await ipam.addressesOf('other')).length, 0, 'release cleans the owner index');
    await ipam.releaseOwner('ep', 'b');
    assert.deepEqual((await ipam.addressesOf('ep')).map((x) => x.network), ['a']);
    await v4(ipam, 'b', 'ep2');
    await ipam.releaseOwner('ep');
    await ipam.releaseOwner('ep');
    assert.deepEqual(await ipam.addressesOf('ep'), []);
    assert.deepEqual((await ipam.allocations('a')).length, 0);
    assert.deepEqual((await ipam.allocations('b')).map((x) => x.owner), ['ep2']);
  });
});

test('owners with odd characters are kept apart', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('n', { pools: [{ subnet: '10.7.0.0/24' }] });
    await v4(ipam, 'n', 'cid/eth0');
    await v4(ipam, 'n', 'cid');
    assert.deepEqual((await ipam.addressesOf('cid/eth0')).map((a) => a.ip), ['10.7.0.2']);
    await ipam.releaseOwner('cid');
    assert.deepEqual((await ipam.allocations('n')).map((a) => a.owner), ['cid/eth0']);
  });
});

test('50 concurrent allocations get 50 distinct addresses', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('c', { pools: [{ subnet: '10.8.0.0/24' }] });
    const ips = await Promise.all(Array.from({ length: 50 }, (_, i) => v4(ipam, 'c', `ep${i}`)));
    assert.equal(new Set(ips).size, 50);
    assert.equal((await ipam.allocations('c')).length, 50);
    // Concurrent repeats by the same owner still yield one address.
    const same = await Promise.all(Array.from({ length: 10 }, () => v4(ipam, 'c', 'ep0')));
    assert.equal(new Set(same).size, 1);
  });
});

test('two stores on one file allocating at once never hand out an address twice', async () => {
  await withIpam(async (ipam, _store, path) => {
    await ipam.createNetwork('shared', { pools: [{ subnet: '10.10.0.0/24' }] });
    const other = openSqliteStore(path);
    try {
      const ipam2 = new Ipam(other);
      // Two Ipam instances do not share the in-process queue, so they really race on compare-and-set.
      const ips = await Promise.all(
        Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? v4(ipam, 'shared', `a${i}`) : v4(ipam2, 'shared', `b${i}`))),
      );
      assert.equal(new Set(ips).size, 100);
      assert.equal((await ipam2.allocations('shared')).length, 100);
    } finally {
      await other.close();
    }
  });
});

test('two worker threads with their own connections allocating concurrently: no duplicates', async () => {
  await withIpam(async (ipam, _store, path) => {
    await ipam.createNetwork('threads', { pools: [{ subnet: '10.11.0.0/23' }] });
    const run = (tag: string): Promise<string[]> =>
      new Promise((resolve, reject) => {
        const w = new Worker(new URL('./fixtures/ipam-worker.ts', import.meta.url), { workerData: { path, network: 'threads', tag, count: 120 } });
        w.once('message', (ips: string[]) => resolve(ips));
        w.once('error', reject);
        w.once('exit', (code) => {
          if (code !== 0) reject(new Error(`worker ${tag} exited with ${code}`));
        });
      });
    const [a, b] = await Promise.all([run('a'), run('b')]);
    const all = [...a, ...b];
    assert.equal(all.length, 240);
    assert.equal(new Set(all).size, 240);
    const stored = await ipam.allocations('threads');
    assert.equal(stored.length, 240);
    assert.deepEqual(new Set(stored.map((s) => s.ip)), new Set(all));
  });
});

/** Counts store reads, to show allocation cost does not grow with the addresses in use. */
function countingStore(inner: Store): { store: Store; reads: () => number } {
  let n = 0;
  const store: Store = {
    get: (k) => (n++, inner.get(k)),
    list: (p) => (n++, inner.list(p)),
    range: (s, e, o) => (n++, inner.range(s, e, o)),
    txn: (c, o) => inner.txn(c, o),
    watch: (p, f, cb, err) => inner.watch(p, f, cb, err),
    revision: () => inner.revision(),
    close: () => inner.close(),
  };
  return { store, reads: () => n };
}

test('a /16 with 60k addresses in use still allocates with few reads', async () => {
  await withIpam(async (plain, store) => {
    await plain.createNetwork('big', { pools: [{ subnet: '10.20.0.0/16' }] });
    const base = parseIP('10.20.0.0').addr;
    const used = 60_000;
    // Bulk-load .0.2 onwards as allocated, as if 60k endpoints were attached.
    const ops: Op[] = [];
    for (let i = 2n; i < 2n + BigInt(used); i++) {
      ops.push({ put: allocKey('big', 4, base + i), value: `ep${i}` });
      ops.push({ put: ownerKey(`ep${i}`, 'big', 4, base + i), value: 'big' });
    }
    const lastUsed = formatIP(4, base + 1n + BigInt(used));
    ops.push({ put: cursorKey('big', '10.20.0.0/16'), value: lastUsed });
    await store.txn([], ops);

    const { store: counted, reads } = countingStore(store);
    const ipam = new Ipam(counted);
    // Cursor at the end of the used block: the next address is free.
    assert.equal(await v4(ipam, 'big', 'new1'), formatIP(4, base + 2n + BigInt(used)));
    assert.ok(reads() <= 6, `reads: ${reads()}`);

    // Worst case: cursor at the top of the range, so the search wraps and walks the whole used block.
    await store.txn([], [{ put: cursorKey('big', '10.20.0.0/16'), value: '10.20.255.254' }]);
    await ipam.release('big', '10.20.100.100');
    const before = reads();
    assert.equal(await v4(ipam, 'big', 'new2'), '10.20.100.100');
    assert.ok(reads() - before <= 10 + Math.ceil(25_700 / 512), `reads: ${reads() - before}`);
    assert.equal((await ipam.allocations('big')).length, used + 1);
  });
});

test('networks: overlap refused within a tenant, allowed across tenants; repeat create is idempotent', async () => {
  await withIpam(async (ipam) => {
    await ipam.createNetwork('net2', { pools: [{ subnet: '10.1.2.0/24' }] });
    await assert.rejects(
      ipam.createNetwork('net1', { pools: [{ subnet: '10.1.0.0/16' }] }),
      knitError('conflict', 'subnet 10.1.0.0/16 overlaps 10.1.2.0/24 of network net2'),
    );
    const t = await ipam.createNetwork('net1', { tenant: 'blue', pools: [{ subnet: '10.1.0.0/16' }] });
    assert.equal(t.tenant, 'blue');
    assert.deepEqual(await ipam.createNetwork('net2', { pools: [{ subnet: '10.1.2.0/24' }] }), await ipam.getNetwork('net2'));
    await assert.rejects(ipam.createNetwork('net2', { pools: [{ subnet: '10.9.0.0/24' }] }), knitError('conflict', /already has IPAM pools/));
    assert.deepEqual((await ipam.listNetworks('blue')).map((n) => n.network), ['net1']);
    await assert.rejects(ipam.createNetwork('bad', { pools: [{ subnet: '10.1.0.0/16', gateway: '10.2.0.1' }] }), knitError('invalid', /subnets\[0\]\.gateway/));
  });
});

test('concurrent creates of overlapping networks through two stores: exactly one wins', async () => {
  await withIpam(async (ipam, _store, path) => {
    const other = openSqliteStore(path);
    try {
      const ipam2 = new Ipam(other);
      const results = await Promise.allSettled([
        ipam.createNetwork('x1', { pools: [{ subnet: '10.30.0.0/16' }] }),
        ipam2.createNetwork('x2', { pools: [{ subnet: '10.30.5.0/24' }] }),
      ]);
      assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
      assert.equal((await ipam.listNetworks()).length, 1);
    } finally {
      await other.close();
    }
  });
});

test('default subnets: Docker-like v4 pools skipping the tenant`s networks and host routes; ULA v6', async () => {
  await withIpam(async (ipam) => {
    assert.equal((await ipam.createNetwork('d1')).pools[0]?.subnet, '172.17.0.0/16');
    assert.equal((await ipam.createNetwork('d2', { hostRoutes: ['172.18.0.0/16', '0.0.0.0/0'] })).pools[0]?.subnet, '172.19.0.0/16');
    assert.equal((await ipam.createNetwork('d3', { tenant: 'other' })).pools[0]?.subnet, '172.17.0.0/16');
    const d6 = await ipam.createNetwork('d6', { ipv6: true });
    assert.equal(d6.pools.length, 2);
    assert.equal(d6.pools[0]?.subnet, '172.18.0.0/16');
    assert.match(d6.pools[1]?.subnet ?? '', /^fd[0-9a-f]{2}:[0-9a-f:]+\/64$/);
    assert.equal(await ipam.allocate('d6', { family: 6, owner: 'e' }), d6.pools[1]?.subnet.replace('::/64', '::2'));
    // An explicit v6 subnet with the default v4 one.
    const mixed = await ipam.createNetwork('d7', { pools: [{ subnet: 'fd00:7::/64' }] });
    assert.deepEqual(mixed.pools.map((p) => p.subnet), ['fd00:7::/64', '172.20.0.0/16']);
  });
});

test('deleteNetwork frees every address and the owner index; allocation then fails', async () => {
  await withIpam(async (ipam, store) => {
    await ipam.createNetwork('gone', { pools: [{ subnet: '10.40.0.0/24' }] });
    await ipam.createNetwork('stay', { pools: [{ subnet: '10.41.0.0/24' }] });
    for (let i = 0; i < 100; i++) await v4(ipam, 'gone', `ep${i}`);
    await v4(ipam, 'stay', 'ep1');
    await ipam.deleteNetwork('gone');
    await ipam.deleteNetwork('gone');
    assert.equal(await ipam.getNetwork('gone'), undefined);
    assert.deepEqual(await ipam.allocations('gone'), []);
    assert.deepEqual((await ipam.addressesOf('ep1')).map((a) => a.network), ['stay']);
    assert.deepEqual(await store.list('/knit/v1/ipam-cursor/gone/'), []);
    await assert.rejects(v4(ipam, 'gone', 'x'), knitError('not-found', 'network gone has no IPAM pools'));
    // The subnet is free for a new network again.
    await ipam.createNetwork('again', { pools: [{ subnet: '10.40.0.0/24' }] });
  });
});
