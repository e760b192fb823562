// Timings: per-route counts, totals and a ring of the latest samples.
import assert from 'node:assert/strict';
import { createServer, request, type RequestListener } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Timings, SAMPLES_KEPT } from '../../src/agent/metrics.ts';
import { apiHandler } from '../../src/agent/api.ts';
import type { CniService } from '../../src/cni/service.ts';
import { pluginHandler, type Route } from '../../src/docker/server.ts';
import { networkError } from '../../src/docker/translate.ts';
import type { Engine } from '../../src/engine/engine.ts';
import type { MetricsView } from '../../src/model/api.ts';

/** Serves handler on a unix socket for the duration of fn, which gets a request function. */
async function serving(handler: RequestListener, fn: (call: (method: string, path: string) => Promise<{ status: number; body: string }>) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'knit-metrics-'));
  const sock = join(dir, 's.sock');
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(sock, r));
  const call = (method: string, path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ socketPath: sock, method, path, agent: false }, (res) => {
        let b = '';
        res.on('data', (c: Buffer) => (b += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
      });
      req.on('error', reject);
      req.end();
    });
  try {
    await fn(call);
  } finally {
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('Timings', () => {
  it('is empty before anything is recorded', () => {
    assert.deepEqual(new Timings().snapshot(), { routes: {} });
  });

  it('keeps a count, a total and the samples per route, oldest first', () => {
    const t = new Timings();
    t.record('POST /v1/sandboxes', 2);
    t.record('/NetworkDriver.Join', 1.5);
    t.record('POST /v1/sandboxes', 3.25);
    assert.deepEqual(t.snapshot(), {
      routes: {
        '/NetworkDriver.Join': { count: 1, totalMs: 1.5, samplesMs: [1.5] },
        'POST /v1/sandboxes': { count: 2, totalMs: 5.25, samplesMs: [2, 3.25] },
      },
    });
  });

  it('keeps only the latest samples once the ring is full, but counts and sums every call', () => {
    const t = new Timings(3);
    for (let i = 1; i <= 7; i++) t.record('r', i);
    assert.deepEqual(t.snapshot().routes.r, { count: 7, totalMs: 28, samplesMs: [5, 6, 7] });
    t.record('r', 8);
    assert.deepEqual(t.snapshot().routes.r?.samplesMs, [6, 7, 8]);
  });

  it('a ring exactly full is in order', () => {
    const t = new Timings(3);
    for (let i = 1; i <= 3; i++) t.record('r', i);
    assert.deepEqual(t.snapshot().routes.r?.samplesMs, [1, 2, 3]);
  });

  it('keeps 1,000 samples by default', () => {
    const t = new Timings();
    for (let i = 0; i < SAMPLES_KEPT + 10; i++) t.record('r', i);
    const r = t.snapshot().routes.r!;
    assert.equal(SAMPLES_KEPT, 1000);
    assert.equal(r.count, 1010);
    assert.equal(r.samplesMs.length, 1000);
    assert.equal(r.samplesMs[0], 10);
    assert.equal(r.samplesMs.at(-1), 1009);
  });

  it('a snapshot is a copy: later calls do not change it', () => {
    const t = new Timings();
    t.record('r', 1);
    const s = t.snapshot();
    t.record('r', 2);
    assert.deepEqual(s.routes.r, { count: 1, totalMs: 1, samplesMs: [1] });
  });

  it('refuses a ring size that is not a positive integer', () => {
    assert.throws(() => new Timings(0), /positive integer/);
    assert.throws(() => new Timings(1.5), /positive integer/);
  });
});

describe('recorded by the servers', () => {
  it('the API keeps times under route patterns and serves them at GET /v1/metrics', async () => {
    const timings = new Timings();
    // Neither route used here touches the engine.
    const ctx = { engine: {} as Engine, status: () => Promise.reject(new Error('unused')), timings, cni: {} as CniService, socket: '/unused.sock' };
    await serving(apiHandler(ctx), async (call) => {
      assert.equal((await call('GET', '/v1/version')).status, 200);
      assert.equal((await call('GET', '/v1/version?x=1')).status, 200);
      assert.equal((await call('GET', '/v1/nothing-here')).status, 404);
      const r = await call('GET', '/v1/metrics');
      assert.equal(r.status, 200);
      const m = JSON.parse(r.body) as MetricsView;
      assert.deepEqual(Object.keys(m.routes), ['GET /v1/version'], 'unmatched paths get no key; the metrics call is recorded after its reply');
      assert.equal(m.routes['GET /v1/version']?.count, 2);
      assert.equal(m.routes['GET /v1/version']?.samplesMs.length, 2);
      assert.ok(m.routes['GET /v1/version']!.samplesMs.every((ms) => ms >= 0));
    });
    assert.equal(timings.snapshot().routes['GET /v1/metrics']?.count, 1);
  });

  it('the Docker plugin keeps times per implemented call, failures included', async () => {
    const timings = new Timings();
    const routes = new Map<string, Route>([
      ['/Plugin.Activate', { handle: () => ({ Implements: ['NetworkDriver'] }), error: networkError }],
      ['/NetworkDriver.Join', { handle: () => { throw new Error('no such endpoint'); }, error: networkError }],
    ]);
    await serving(pluginHandler(routes, () => undefined, timings), async (call) => {
      await call('POST', '/Plugin.Activate');
      await call('POST', '/NetworkDriver.Join');
      await call('POST', '/NetworkDriver.Join');
      assert.equal((await call('POST', '/VolumeDriver.Create')).status, 404);
    });
    const m = timings.snapshot();
    assert.deepEqual(Object.keys(m.routes), ['/NetworkDriver.Join', '/Plugin.Activate']);
    assert.equal(m.routes['/NetworkDriver.Join']?.count, 2);
    assert.equal(m.routes['/Plugin.Activate']?.count, 1);
  });
});
