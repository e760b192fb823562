// knit-ipam's rangeStart/rangeEnd (host-local's names): its own pools carry
// the range, so allocation is the pool's round-robin scan; a range over a
// Knit network's pool (shared by name) is searched in the allocations.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { canRunKernelTests } from '../helpers/netns.ts';
import { ROOT, startTestHost, type TestHost } from '../helpers/daemon.ts';
import { rangeOf, validateSubnets } from '../../src/ipam/pool.ts';

const PLUGIN = join(ROOT, 'dist/cni/knit-ipam');
const skip = !canRunKernelTests() ? 'needs root' : !existsSync(PLUGIN) ? 'dist/cni/knit-ipam not built (npm run build)' : false;

interface Run {
  code: number;
  json: Record<string, unknown>;
  stdout: string;
}

function ipam(h: TestHost, cmd: string, id: string, conf: Record<string, unknown>): Promise<Run> {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', KNIT_SOCKET: h.socket, CNI_COMMAND: cmd, CNI_PATH: '/usr/lib/cni', CNI_CONTAINERID: id, CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/none' };
  return new Promise((resolve) => {
    const p = spawn(PLUGIN, [], { env });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', (code) => {
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(out) as Record<string, unknown>;
      } catch {
        // not JSON: the assertion shows stdout
      }
      resolve({ code: code ?? 1, json, stdout: out });
    });
    p.stdin.end(JSON.stringify({ cniVersion: '1.0.0', type: 'knit-ipam', ...conf }));
  });
}

const address = (r: Run): string => ((r.json.ips as { address: string }[] | undefined)?.[0]?.address ?? '').split('/')[0] as string;

describe('IPAM pool with rangeStart/rangeEnd', () => {
  it('keeps the range and allocates only inside it', () => {
    const [pool] = validateSubnets([{ subnet: '10.0.0.0/8', rangeStart: '10.200.0.5', rangeEnd: '10.200.0.9' }]);
    assert.equal(pool?.rangeStart, '10.200.0.5');
    const r = rangeOf(pool!);
    assert.equal(r.first, (10n << 24n) + (200n << 16n) + 5n);
    assert.equal(r.last, (10n << 24n) + (200n << 16n) + 9n);
  });

  it('refuses a range outside the subnet or backwards, naming the field', () => {
    assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', rangeStart: '10.2.0.5' }]), /rangeStart.*not within subnet 10\.1\.0\.0\/24/);
    assert.throws(() => validateSubnets([{ subnet: '10.1.0.0/24', rangeStart: '10.1.0.9', rangeEnd: '10.1.0.5' }]), /rangeStart.*after rangeEnd/);
  });
});

describe('knit-ipam rangeStart/rangeEnd', { skip }, () => {
  let h: TestHost;
  before(async () => {
    h = await startTestHost({ defaultBridge: false });
  });

  it('hands out the range of its own pool in order, reuses a freed address, and says when it is full', async () => {
    const conf = { name: 'rng1', ipam: { type: 'knit-ipam', subnet: '10.41.0.0/16', rangeStart: '10.41.7.250', rangeEnd: '10.41.7.252' } };
    const got: string[] = [];
    for (const id of ['r1', 'r2', 'r3']) {
      const r = await ipam(h, 'ADD', id, conf);
      assert.equal(r.code, 0, r.stdout);
      got.push(address(r));
    }
    assert.deepEqual(got, ['10.41.7.250', '10.41.7.251', '10.41.7.252']);
    const full = await ipam(h, 'ADD', 'r4', conf);
    assert.equal(full.code, 1);
    assert.match(String(full.json.msg), /no free address/);
    assert.equal((await ipam(h, 'DEL', 'r2', conf)).code, 0);
    const again = await ipam(h, 'ADD', 'r4', conf);
    assert.equal(address(again), '10.41.7.251');
    // The same container asking again keeps its address.
    assert.equal(address(await ipam(h, 'ADD', 'r1', conf)), '10.41.7.250');
    for (const id of ['r1', 'r3', 'r4']) assert.equal((await ipam(h, 'DEL', id, conf)).code, 0);
  });

  it('concurrent ADDs in one range get distinct addresses', async () => {
    const conf = { name: 'rng2', ipam: { type: 'knit-ipam', subnet: '10.43.0.0/24', rangeStart: '10.43.0.20', rangeEnd: '10.43.0.25' } };
    const runs = await Promise.all(['c0', 'c1', 'c2', 'c3', 'c4', 'c5'].map((id) => ipam(h, 'ADD', id, conf)));
    for (const r of runs) assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(runs.map(address).sort(), ['10.43.0.20', '10.43.0.21', '10.43.0.22', '10.43.0.23', '10.43.0.24', '10.43.0.25']);
  });

  it("a range over a Knit network's pool, shared by name, skips what the network holds", async () => {
    const made = h.knit('network', 'create', 'shared1', '--subnet', '10.42.0.0/24', '--gateway', '10.42.0.100');
    assert.equal(made.code, 0, made.stderr);
    const conf = { name: 'shared1', ipam: { type: 'knit-ipam', rangeStart: '10.42.0.99', rangeEnd: '10.42.0.102' } };
    const runs = [];
    for (const id of ['s1', 's2', 's3']) runs.push(await ipam(h, 'ADD', id, conf));
    for (const r of runs) assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(runs.map(address), ['10.42.0.99', '10.42.0.101', '10.42.0.102'], 'the gateway .100 is never handed out');
    const full = await ipam(h, 'ADD', 's4', conf);
    assert.equal(full.code, 1);
    assert.match(String(full.json.msg), /no free address in 10\.42\.0\.99-10\.42\.0\.102/);
    for (const id of ['s1', 's2', 's3']) assert.equal((await ipam(h, 'DEL', id, conf)).code, 0);
  });
});
