// podman (Debian's, CNI network backend) on a conflist that uses `knit`: two
// containers ping each other and `podman rm` leaves nothing. podman runs under
// nsenter in the test host's namespace, beside the daemon, with its own
// --root/--runroot and containers.conf in a temp dir.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canRunKernelTests } from '../helpers/netns.ts';
import { ROOT, startTestHost, type TestHost } from '../helpers/daemon.ts';

const BUSYBOX = '/bin/busybox';
const skip = !canRunKernelTests()
  ? 'needs root'
  : !existsSync('/usr/bin/podman')
    ? 'needs podman (apt-get install podman)'
    : !existsSync(BUSYBOX)
      ? 'needs busybox-static'
      : !existsSync(join(ROOT, 'dist/cni/knit'))
        ? 'dist/cni not built'
        : false;

const work = mkdtempSync(join(tmpdir(), 'knit-podman-'));
after(() => rmSync(work, { recursive: true, force: true }));

describe('podman on a knit network', { skip }, () => {
  let h: TestHost;
  const netDir = join(work, 'net.d');
  const conf = join(work, 'containers.conf');
  const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];

  function podman(...args: string[]): { code: number; out: string } {
    const r = spawnSync(
      'nsenter',
      [`--net=${h.nsPath}`, 'podman', '--root', join(work, 'root'), '--runroot', join(work, 'runroot'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', ...args],
      { encoding: 'utf8', env: { ...process.env, CONTAINERS_CONF: conf, KNIT_SOCKET: h.socket }, timeout: 120000 },
    );
    return { code: r.status ?? 1, out: `${r.stdout}${r.stderr}` };
  }

  before(async () => {
    h = await startTestHost({ defaultBridge: false });
    mkdirSync(netDir, { recursive: true });
    writeFileSync(
      conf,
      `[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = [${JSON.stringify(join(ROOT, 'dist/cni'))}, "/usr/lib/cni"]\nnetwork_config_dir = ${JSON.stringify(netDir)}\n[engine]\nevents_logger = "file"\n`,
    );
    writeFileSync(
      join(netDir, 'knitnet.conflist'),
      JSON.stringify({
        cniVersion: '0.4.0',
        name: 'knitnet',
        plugins: [{ type: 'knit', socket: h.socket, bridge: 'kn-podman', isGateway: true, isDefaultGateway: true, ipMasq: true, subnet: '10.77.0.0/24' }],
      }),
    );
    // A busybox image, imported from a rootfs (no registry is reachable).
    const rootfs = join(work, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    copyFileSync(BUSYBOX, join(rootfs, 'bin/busybox'));
    for (const tool of ['sh', 'ping', 'sleep', 'ip']) symlinkSync('busybox', join(rootfs, 'bin', tool));
    for (const d of ['etc', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true });
    const tar = join(work, 'rootfs.tar');
    spawnSync('tar', ['-C', rootfs, '-cf', tar, '.']);
    const imp = podman('import', tar, 'localhost/knit-busybox:test');
    assert.equal(imp.code, 0, imp.out);
  });

  after(() => {
    if (h) {
      podman('rm', '-af', '-t', '0');
      podman('rmi', '-af');
    }
  });

  it('two containers ping each other; podman rm leaves nothing', async () => {
    const run = (name: string) =>
      podman('run', '-d', '--name', name, '--network', 'knitnet', ...ULIMITS, 'localhost/knit-busybox:test', 'sleep', '300');
    const a = run('knit-a');
    assert.equal(a.code, 0, a.out);
    const b = run('knit-b');
    assert.equal(b.code, 0, b.out);
    const ipOf = (name: string) => podman('inspect', '-f', '{{.NetworkSettings.Networks.knitnet.IPAddress}}', name).out.trim();
    const ipB = ipOf('knit-b');
    assert.match(ipB, /^10\.77\.0\.\d+$/);
    const ping = podman('exec', 'knit-a', 'ping', '-c', '1', '-W', '2', ipB);
    assert.equal(ping.code, 0, ping.out);
    const rm = podman('rm', '-f', '-t', '0', 'knit-a', 'knit-b');
    assert.equal(rm.code, 0, rm.out);
    const sbs = (await h.api<{ name: string }[]>('GET', '/v1/sandboxes')).body.filter((s) => s.name.startsWith('cni-'));
    assert.deepEqual(sbs, [], `no sandbox left in Knit; podman rm said: ${rm.out}; daemon log: ${h.log()}`);
    await h.settle();
    assert.equal(h.inHost('ip', '-o', 'link', 'show', 'type', 'veth'), '', 'no veth left');
  });
});
