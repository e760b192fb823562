// The knit plugin with a delegated ipam section run from CNI_PATH: the
// reference `static` IPAM plugin (containernetworking-plugins) chooses the
// addresses, Knit's daemon builds the attachment with them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { canRunKernelTests, makeNetns, removeNetns, sh } from '../helpers/netns.ts';
import { ROOT, startTestHost, type TestHost } from '../helpers/daemon.ts';

const PLUGIN = join(ROOT, 'dist/cni/knit');
const REF = '/usr/lib/cni';
const skip = !canRunKernelTests()
  ? 'needs root'
  : !existsSync(PLUGIN)
    ? 'dist/cni/knit not built (npm run build)'
    : !existsSync(join(REF, 'static'))
      ? 'needs containernetworking-plugins (static)'
      : false;

function run(h: TestHost, cmd: string, o: { id: string; netns: string }, conf: Record<string, unknown>): { code: number; json: Record<string, unknown>; out: string } {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', KNIT_SOCKET: h.socket, CNI_COMMAND: cmd, CNI_PATH: REF, CNI_CONTAINERID: o.id, CNI_NETNS: o.netns, CNI_IFNAME: 'eth0' };
  const r = spawnSync('nsenter', [`--net=${h.nsPath}`, PLUGIN], { env, input: JSON.stringify(conf), encoding: 'utf8' });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    // the assertion prints stdout
  }
  return { code: r.status ?? 1, json, out: r.stdout + r.stderr };
}

const conf = (address: string, extra: Record<string, unknown> = {}) => ({
  cniVersion: '1.0.0',
  name: 'stnet',
  type: 'knit',
  bridge: 'kn-stnet',
  isGateway: true,
  isDefaultGateway: true,
  ipam: { type: 'static', addresses: [{ address, gateway: '10.44.0.1' }], routes: [{ dst: '192.168.77.0/24' }] },
  ...extra,
});

describe('knit plugin with the reference static IPAM plugin', { skip }, () => {
  let h: TestHost;
  before(async () => {
    h = await startTestHost({ defaultBridge: false });
  });

  it('ADD takes the static addresses and routes, CHECK and DEL pass', async () => {
    const a = makeNetns('kntc');
    const b = makeNetns('kntc');
    try {
      const oa = { id: 'st-a', netns: a.path };
      const ob = { id: 'st-b', netns: b.path };
      const addA = run(h, 'ADD', oa, conf('10.44.0.5/24'));
      assert.equal(addA.code, 0, addA.out);
      const addB = run(h, 'ADD', ob, conf('10.44.0.6/24'));
      assert.equal(addB.code, 0, addB.out);
      const ips = addA.json.ips as { address: string; gateway?: string }[];
      assert.deepEqual(ips.map((i) => [i.address, i.gateway]), [['10.44.0.5/24', '10.44.0.1']]);
      const routes = addA.json.routes as { dst: string; gw?: string }[];
      assert.ok(routes.some((r) => r.dst === '192.168.77.0/24'), `static's route is in the result: ${JSON.stringify(routes)}`);
      assert.match(sh('ip', ['-n', a.name, '-4', 'addr', 'show', 'dev', 'eth0']), /10\.44\.0\.5\/24/);
      assert.match(sh('ip', ['-n', a.name, 'route', 'show', '192.168.77.0/24']), /via 10\.44\.0\.1 dev eth0/);
      assert.match(sh('ip', ['netns', 'exec', a.name, 'ping', '-c1', '-W2', '10.44.0.6']), /1 received/);

      const check = run(h, 'CHECK', oa, conf('10.44.0.5/24', { prevResult: addA.json }));
      assert.equal(check.code, 0, check.out);
      for (const [o, addr] of [[oa, '10.44.0.5/24'], [ob, '10.44.0.6/24']] as const) {
        const del = run(h, 'DEL', o, conf(addr));
        assert.equal(del.code, 0, del.out);
      }
      await h.settle(); // the veths are deleted in the background
      assert.equal(sh('ip', ['-n', a.name, '-o', 'link', 'show']).includes('eth0'), false, 'eth0 is gone');
    } finally {
      removeNetns(a.name);
      removeNetns(b.name);
    }
  });

  it("static's own error comes back with its code", () => {
    const c = makeNetns('kntc');
    try {
      const bad = run(h, 'ADD', { id: 'st-bad', netns: c.path }, conf('not-an-address'));
      assert.equal(bad.code, 1, bad.out);
      assert.equal(typeof bad.json.code, 'number');
      assert.match(String(bad.json.msg), /address|parse|invalid/i);
      assert.equal(sh('ip', ['-n', c.name, '-o', 'link', 'show']).includes('eth0'), false, 'nothing was attached');
    } finally {
      removeNetns(c.name);
    }
  });
});
