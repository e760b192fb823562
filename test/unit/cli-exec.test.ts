// `knit exec` on the real kernel: a throwaway netns stands for the sandbox,
// a fake API tells the CLI where it is.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { canRunKernelTests, ipIn, makeNetns } from '../helpers/netns.ts';
import { startFakeApi, type FakeApi } from './cli-fake-api.ts';

const knitBin = fileURLToPath(new URL('../../bin/knit', import.meta.url));
const skip = canRunKernelTests() ? false : 'needs root';

type Result = { status: number | null; stdout: string; stderr: string };

function knit(socket: string, ...args: string[]): Promise<Result> {
  return knitEnv({}, socket, ...args);
}

function knitEnv(env: NodeJS.ProcessEnv, socket: string, ...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(knitBin, ['--socket', socket, ...args], { env: { PATH: process.env.PATH, KNIT_FROM_SOURCE: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('knit exec', { skip }, () => {
  let api: FakeApi;
  let ns: { name: string; path: string };
  let etcDir = '';
  // Leave /etc as found: remove /etc/netns too when this test made it.
  const hadEtcNetns = existsSync('/etc/netns');

  before(async () => {
    ns = makeNetns();
    ipIn(ns.name, 'link', 'add', 'kntva', 'type', 'veth', 'peer', 'name', 'kntvb');
    etcDir = `/etc/netns/${ns.name}`;
    const box = {
      id: 'f00d', name: ns.name, netnsPath: ns.path, ownsNetns: false, dns: { servers: [], search: [], options: [] },
      labels: {}, origin: 'api', state: 'ready', created: '2025-01-01T00:00:00.000Z', endpoints: [],
    };
    api = await startFakeApi({ [`GET /v1/sandboxes/${ns.name}`]: { status: 200, body: box } });
  });

  after(async () => {
    rmSync(etcDir, { recursive: true, force: true });
    if (!hadEtcNetns) {
      try {
        rmdirSync('/etc/netns');
      } catch {
        // not empty: someone else's files
      }
    }
    await api.close();
  });

  it("runs the command in the sandbox's netns with stdio passed through", async () => {
    const r = await knit(api.socket, 'exec', ns.name, '--', 'ip', '-j', 'addr');
    assert.equal(r.status, 0, r.stderr);
    const links = (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
    assert.deepEqual(links, ['kntva', 'kntvb', 'lo']);
  });

  it("exits with the command's status, 128+n for a signal, 127 for a missing command", async () => {
    assert.equal((await knit(api.socket, 'exec', ns.name, 'sh', '-c', 'exit 7')).status, 7);
    assert.equal((await knit(api.socket, 'exec', ns.name, '--', 'sh', '-c', 'kill -TERM $$')).status, 143);
    const missing = await knit(api.socket, 'exec', ns.name, '--', 'knit-no-such-command');
    assert.equal(missing.status, 127);
    assert.equal(missing.stderr, 'knit: exec: knit-no-such-command: command not found\n');
  });

  it('an unknown sandbox is one line and exit 1', async () => {
    const r = await knit(api.socket, 'exec', 'nosuchbox', '--', 'true');
    assert.equal(r.status, 1);
    assert.equal(r.stderr, "knit: fake api: no route GET /v1/sandboxes/nosuchbox\n");
  });

  it('applies /etc/netns/NAME/ files and a sysfs of the netns, as ip netns exec does', async () => {
    mkdirSync(etcDir, { recursive: true });
    writeFileSync(`${etcDir}/resolv.conf`, 'nameserver 10.231.0.53\n');
    const r = await knit(api.socket, 'exec', ns.name, '--', 'sh', '-c', 'cat /etc/resolv.conf; ls /sys/class/net');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'nameserver 10.231.0.53\nkntva\nkntvb\nlo\n');
    // Status still passes through the unshare wrapper.
    assert.equal((await knit(api.socket, 'exec', ns.name, 'sh', '-c', 'exit 5')).status, 5);
    rmSync(etcDir, { recursive: true, force: true });
  });

  it('takes the files from KNIT_ETC_NETNS_DIR (a daemon started with --etc-netns-dir)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'knit-etc-'));
    try {
      mkdirSync(join(dir, ns.name));
      writeFileSync(join(dir, ns.name, 'hosts'), '10.231.0.7 elsewhere\n');
      const r = await knitEnv({ KNIT_ETC_NETNS_DIR: dir }, api.socket, 'exec', ns.name, '--', 'cat', '/etc/hosts');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, '10.231.0.7 elsewhere\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives the command back NODE_EXTRA_CA_CERTS, which the launcher hides from Node', async () => {
    const r = await knitEnv({ NODE_EXTRA_CA_CERTS: '/x/ca.pem' }, api.socket, 'exec', ns.name, '--', 'sh', '-c', 'echo "$NODE_EXTRA_CA_CERTS ${KNIT_SAVED_NODE_EXTRA_CA_CERTS:-none}"');
    assert.equal(r.stdout, '/x/ca.pem none\n');
  });
});
