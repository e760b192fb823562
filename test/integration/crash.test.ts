// kill -9 in the middle of 50 concurrent attaches, then a restart: every
// attach is whole or absent, no address leaked, nothing left that nothing
// refers to. Then 200 sandboxes created and removed leave nothing behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestHost, removeNetnsWithPrefix, ping, type TestHost } from '../helpers/daemon.ts';
import { inventory } from '../helpers/inventory.ts';
import { uniqueName } from '../helpers/netns.ts';
import type { SandboxView } from '../../src/model/api.ts';

let h: TestHost;
const prefix = uniqueName('knc').slice(0, 10);

before(async () => {
  h = await startTestHost({ defaultBridge: false });
  const r = await h.api('POST', '/v1/networks', { name: 'crashnet', subnets: [{ subnet: '10.120.0.0/16' }] });
  assert.equal(r.status, 201, JSON.stringify(r.body));
});
after(() => removeNetnsWithPrefix(prefix));

/** The inventory once the kernel has finished deleting links (it does so asynchronously after a namespace goes). */
async function settled() {
  let inv = await inventory(h, prefix);
  for (let i = 0; i < 100 && inv.endpointLinks.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    inv = await inventory(h, prefix);
  }
  return inv;
}

test('kill -9 during 50 concurrent attaches leaves every attach whole or absent', async () => {
  let done = 0;
  const attempts = Array.from({ length: 50 }, (_, i) =>
    h
      .api('POST', '/v1/sandboxes', { name: `${prefix}${i}`, networks: [{ network: 'crashnet', publish: [`${20000 + i}:80`] }] })
      .then((r) => {
        done++;
        return r.status;
      })
      .catch(() => 0),
  );
  // Kill once some have finished and others are still in flight.
  while (done < 10) await new Promise((r) => setTimeout(r, 2));
  h.kill9();
  await Promise.all(attempts);
  await h.start();

  const inv = await inventory(h, prefix);
  const ready = inv.sandboxes.filter((s) => s.name.startsWith(prefix));
  assert.ok(ready.length >= 10, `at least the finished attaches survive (${ready.length})`);
  assert.ok(ready.every((s) => s.state === 'ready'), 'no pending sandbox after restart');
  assert.ok(inv.endpoints.every((e) => e.state === 'ready'), 'no pending endpoint after restart');
  assert.equal(inv.endpoints.length, ready.length, 'one endpoint per surviving sandbox');
  const epIds = new Set(inv.endpoints.map((e) => e.id));
  assert.deepEqual(new Set(inv.allocations.map((a) => a.owner)), epIds, 'every address belongs to a live endpoint');
  assert.deepEqual(new Set(inv.endpointLinks), epIds, 'every Knit veth belongs to a live endpoint and vice versa');
  assert.equal(inv.publishElements, ready.length, 'one published port per live endpoint, none orphaned');
  assert.deepEqual(inv.netnsWithPrefix.sort(), ready.map((s) => s.name).sort(), 'namespaces match sandboxes');

  // Survivors work, and everything can still be removed.
  const views = (await h.api<SandboxView[]>('GET', '/v1/sandboxes')).body.filter((s) => s.name.startsWith(prefix));
  const [a, b] = views;
  if (a && b) assert.ok(ping(a.name, (b.endpoints[0]?.ipv4 ?? '').split('/')[0] as string));
  for (const s of views) assert.equal((await h.api('DELETE', `/v1/sandboxes/${s.name}`)).status, 204);
  const after = await settled();
  assert.equal(after.allocations.length, 0);
  assert.equal(after.endpointLinks.length, 0);
  assert.equal(after.publishElements, 0);
  assert.deepEqual(after.netnsWithPrefix, []);
});

test('200 sandboxes created and removed leave nothing behind', async () => {
  const before = await inventory(h, prefix);
  // The bridge's link-local address and its routes' linkdown flag come and go with its
  // carrier (whether any port is left); neither is a leftover.
  const routes = () =>
    (JSON.parse(h.inHost('ip', '-j', 'route', 'show', 'table', 'all')) as { dst: string; flags?: string[] }[])
      .filter((r) => !r.dst.startsWith('fe80'))
      .map((r) => JSON.stringify({ ...r, flags: undefined }));
  const routesBefore = routes();
  const names = Array.from({ length: 200 }, (_, i) => `${prefix}m${i}`);
  for (const [i, name] of names.entries()) {
    const r = await h.api('POST', '/v1/sandboxes', { name, networks: [{ network: 'crashnet', ...(i % 4 === 0 ? { publish: [`${30000 + i}:80`] } : {}) }] });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  const full = await inventory(h, prefix);
  assert.equal(full.endpoints.length, 200);
  assert.equal(full.publishElements, 50);
  for (const name of names) assert.equal((await h.api('DELETE', `/v1/sandboxes/${name}`)).status, 204);
  const after = await settled();
  assert.deepEqual(after.endpointLinks, []);
  assert.deepEqual(after.links.map((l) => l.name).sort(), before.links.map((l) => l.name).sort());
  assert.equal(after.publishElements, 0);
  assert.deepEqual(after.sandboxes, []);
  assert.deepEqual(after.endpoints, []);
  assert.deepEqual(after.allocations, []);
  assert.deepEqual(after.netnsWithPrefix, []);
  assert.deepEqual(routes(), routesBefore);
});
