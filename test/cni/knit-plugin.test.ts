// The `knit` CNI plugin against a real daemon in a throwaway host namespace:
// ADD/CHECK/DEL in every spec version, every error code, concurrency, and
// DEL in the awkward cases (netns gone, daemon restarted, twice).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { canRunKernelTests, makeNetns, removeNetns, sh } from '../helpers/netns.ts';
import { ROOT, startTestHost, type TestHost } from '../helpers/daemon.ts';
import { ALL_VERSIONS } from '../../src/cni/version.ts';

const PLUGIN = join(ROOT, 'dist/cni/knit');
const skip = !canRunKernelTests() ? 'needs root' : !existsSync(PLUGIN) ? 'dist/cni/knit not built (npm run build)' : false;

export interface PluginRun {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

export function pluginEnv(h: TestHost, cmd: string, o: { id?: string; netns?: string; ifname?: string; args?: string; path?: string } = {}): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', KNIT_SOCKET: h.socket, CNI_COMMAND: cmd, CNI_PATH: o.path ?? '/usr/lib/cni' };
  if (o.id !== undefined) env.CNI_CONTAINERID = o.id;
  if (o.netns !== undefined) env.CNI_NETNS = o.netns;
  if (o.ifname !== undefined) env.CNI_IFNAME = o.ifname;
  if (o.args !== undefined) env.CNI_ARGS = o.args;
  return env;
}

function parse(stdout: string): Record<string, unknown> {
  try {
    return JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/**
 * The plugin inside the test host's namespace, its stdin a pipe as Go
 * runtimes give it (Node's own stdio pipes are socket pairs: see
 * runPluginNodeStdio).
 */
const viaPipe = (h: TestHost, bin: string): [string, string[]] => ['sh', ['-c', 'cat | exec nsenter --net="$0" "$1"', h.nsPath, bin]];

/** Runs the plugin inside the test host's namespace, as a runtime there would. */
export function runPlugin(h: TestHost, env: Record<string, string>, stdin: string, bin = PLUGIN): PluginRun {
  const [cmd, args] = viaPipe(h, bin);
  const r = spawnSync(cmd, args, { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, input: stdin, encoding: 'utf8' });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr, json: parse(r.stdout) };
}

/** The same with stdin a socket, as a Node runtime passes it: the daemon cannot read that, the executable sends it. */
function runPluginNodeStdio(h: TestHost, env: Record<string, string>, stdin: string): PluginRun {
  const r = spawnSync('nsenter', [`--net=${h.nsPath}`, PLUGIN], { env, input: stdin, encoding: 'utf8' });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr, json: parse(r.stdout) };
}

export function runPluginAsync(h: TestHost, env: Record<string, string>, stdin: string, bin = PLUGIN): Promise<PluginRun> {
  return new Promise((resolve) => {
    const [cmd, args] = viaPipe(h, bin);
    const p = spawn(cmd, args, { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code: code ?? 1, stdout: out, stderr: err, json: parse(out) }));
    p.stdin.end(stdin);
  });
}

const conf = (version: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: version, name: 'net1', type: 'knit', bridge: 'kn-net1', isGateway: true, isDefaultGateway: true, subnet: '10.22.0.0/16', ...extra });

function addrIn(ns: string): string {
  return sh('ip', ['-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'eth0']);
}

describe('knit CNI plugin', { skip }, () => {
  let h: TestHost;
  before(async () => {
    h = await startTestHost({ defaultBridge: false });
  });

  it('answers VERSION with every spec version', () => {
    const r = runPlugin(h, { CNI_COMMAND: 'VERSION' }, '');
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(r.json.supportedVersions, [...ALL_VERSIONS]);
  });

  for (const version of ALL_VERSIONS) {
    it(`ADD, CHECK and DEL in spec version ${version}`, async () => {
      const ns = makeNetns('kntc');
      try {
        const id = `ctr-${version.replaceAll('.', '')}`;
        const o = { id, netns: ns.path, ifname: 'eth0' };
        const add = runPlugin(h, pluginEnv(h, 'ADD', o), conf(version));
        assert.equal(add.code, 0, add.stdout + add.stderr);
        assert.equal(add.json.cniVersion, version);
        let ip: string;
        if (version < '0.3.0') {
          const ip4 = add.json.ip4 as { ip: string; gateway: string };
          ip = ip4.ip;
          assert.equal(ip4.gateway, '10.22.0.1');
        } else {
          const ips = add.json.ips as { address: string; gateway: string; interface: number }[];
          ip = ips[0]?.address ?? '';
          assert.equal(ips[0]?.gateway, '10.22.0.1');
          const ifaces = add.json.interfaces as { name: string; sandbox?: string }[];
          assert.equal(ifaces[ips[0]?.interface ?? -1]?.name, 'eth0');
          assert.equal(ifaces[ips[0]?.interface ?? -1]?.sandbox, ns.path);
        }
        assert.match(ip, /^10\.22\.\d+\.\d+\/16$/);
        assert.ok(addrIn(ns.name).includes(ip), 'the address is on eth0 in the container');
        assert.match(sh('ip', ['-n', ns.name, 'route', 'show', 'default']), /via 10\.22\.0\.1 dev eth0/);
        assert.equal(sh('ip', ['netns', 'exec', ns.name, 'ping', '-c1', '-W2', '10.22.0.1']).includes('1 received'), true);

        if (version >= '0.4.0') {
          const check = runPlugin(h, pluginEnv(h, 'CHECK', o), conf(version, { prevResult: add.json }));
          assert.equal(check.code, 0, check.stdout);
        }
        const del = runPlugin(h, pluginEnv(h, 'DEL', o), conf(version, version >= '0.4.0' ? { prevResult: add.json } : {}));
        assert.equal(del.code, 0, del.stdout);
        // The veth is retired on DEL and deleted in the background: settle before looking.
        await h.settle();
        assert.equal(sh('ip', ['-n', ns.name, '-o', 'link', 'show']).includes('eth0'), false, 'eth0 is gone');
        if (version >= '0.4.0') {
          const check = runPlugin(h, pluginEnv(h, 'CHECK', o), conf(version, { prevResult: add.json }));
          assert.equal(check.code, 1);
          assert.equal(check.json.code, 3, 'CHECK after DEL: unknown container');
        }
      } finally {
        removeNetns(ns.name);
      }
    });
  }

  it("ADD's interfaces carry the kernel's names, MACs and MTU (bridge, host veth, container), ADD after ADD", () => {
    const link = (args: string[]) => (JSON.parse(sh('ip', ['-j', ...args])) as { ifname: string; address: string; mtu: number }[])[0];
    const nss = [makeNetns('kntc'), makeNetns('kntc')];
    try {
      for (const [i, ns] of nss.entries()) {
        const o = { id: `ctr-ifaces-${i}`, netns: ns.path, ifname: 'eth0' };
        const add = runPlugin(h, pluginEnv(h, 'ADD', o), conf('1.1.0'));
        assert.equal(add.code, 0, add.stdout + add.stderr);
        const [br, veth, ctr] = add.json.interfaces as { name: string; mac: string; mtu?: number; sandbox?: string }[];
        const kbr = link(['-n', h.ns, 'link', 'show', 'dev', 'kn-net1']);
        const kveth = link(['-n', h.ns, 'link', 'show', 'dev', veth?.name ?? '']);
        const kctr = link(['-n', ns.name, 'link', 'show', 'dev', 'eth0']);
        assert.deepEqual(br, { name: 'kn-net1', mac: kbr?.address });
        assert.deepEqual(veth, { name: kveth?.ifname, mac: kveth?.address });
        assert.deepEqual(ctr, { name: 'eth0', mac: kctr?.address, mtu: kctr?.mtu, sandbox: ns.path });
        const del = runPlugin(h, pluginEnv(h, 'DEL', o), conf('1.1.0'));
        assert.equal(del.code, 0, del.stdout);
      }
    } finally {
      for (const ns of nss) removeNetns(ns.name);
    }
  });

  it('gives every error code its trigger', () => {
    const ns = makeNetns('kntc');
    try {
      const o = { id: 'ctr-err', netns: ns.path, ifname: 'eth0' };
      const code = (r: PluginRun) => {
        assert.equal(r.code, 1, `expected a failure: ${r.stdout}`);
        return r.json.code;
      };
      assert.equal(code(runPlugin(h, pluginEnv(h, 'ADD', o), conf('9.9.9'))), 1);
      // Bandwidth is supported now (test/cni/bandwidth.test.ts); a half-set direction is a bad config.
      const bw = runPlugin(h, pluginEnv(h, 'ADD', o), conf('1.0.0', { runtimeConfig: { bandwidth: { ingressRate: 1000 } } }));
      assert.equal(code(bw), 7);
      assert.match(String(bw.json.msg), /runtimeConfig\.bandwidth\.ingressBurst/);
      const unknown = runPlugin(h, pluginEnv(h, 'CHECK', { ...o, id: 'never-added' }), conf('1.0.0'));
      assert.equal(code(unknown), 3);
      const noId = runPlugin(h, pluginEnv(h, 'ADD', { netns: ns.path, ifname: 'eth0' }), conf('1.0.0'));
      assert.equal(code(noId), 4);
      assert.match(String(noId.json.msg), /CNI_CONTAINERID/);
      // stdin is a directory: reading it fails (EISDIR).
      const io = spawnSync('nsenter', [`--net=${h.nsPath}`, 'sh', '-c', `exec ${PLUGIN} < /`], { env: pluginEnv(h, 'ADD', o), encoding: 'utf8' });
      assert.equal(JSON.parse(io.stdout).code, 5, io.stdout);
      assert.equal(code(runPlugin(h, pluginEnv(h, 'ADD', o), '{not json')), 6);
      // The executable reports its own namespace with the forwarded call; the daemon (here in the
      // same one) must still refuse it as CNI_NETNS, and make nothing.
      const own = runPlugin(h, pluginEnv(h, 'ADD', { ...o, id: 'ctr-own', netns: h.nsPath }), conf('1.0.0'));
      assert.equal(code(own), 8, own.stdout);
      assert.match(String(own.json.msg), /netns/);
      const badSubnet = runPlugin(h, pluginEnv(h, 'ADD', o), conf('1.0.0', { name: 'netbad', bridge: 'kn-netbad', subnet: 'nonsense' }));
      assert.equal(code(badSubnet), 7);
      assert.match(String(badSubnet.json.msg), /subnet/);
      const noDaemon = runPlugin(h, { ...pluginEnv(h, 'ADD', o), KNIT_SOCKET: '/nonexistent/knit.sock' }, conf('1.0.0'));
      assert.equal(code(noDaemon), 11);
      assert.match(String(noDaemon.json.details), /knit daemon/);
      const status50 = runPlugin(h, { ...pluginEnv(h, 'STATUS'), KNIT_SOCKET: '/nonexistent/knit.sock' }, conf('1.1.0'));
      assert.equal(code(status50), 50);
      // 51: the network exists but its bridge is down.
      const c51 = conf('1.1.0', { name: 'net51', bridge: 'kn-net51', subnet: '10.51.0.0/24' });
      assert.equal(runPlugin(h, pluginEnv(h, 'ADD', { ...o, id: 'ctr-51' }), c51).code, 0);
      assert.equal(runPlugin(h, pluginEnv(h, 'STATUS'), c51).code, 0);
      h.inHost('ip', 'link', 'set', 'kn-net51', 'down');
      assert.equal(code(runPlugin(h, pluginEnv(h, 'STATUS'), c51)), 51);
      h.inHost('ip', 'link', 'set', 'kn-net51', 'up');
      assert.equal(runPlugin(h, pluginEnv(h, 'DEL', { ...o, id: 'ctr-51' }), c51).code, 0);
    } finally {
      removeNetns(ns.name);
    }
  });

  it('50 concurrent ADDs get distinct addresses; 50 DELs leave nothing', async () => {
    const spaces = Array.from({ length: 50 }, () => makeNetns('kntp'));
    try {
      const adds = await Promise.all(
        spaces.map((ns, i) => runPluginAsync(h, pluginEnv(h, 'ADD', { id: `par-${i}`, netns: ns.path, ifname: 'eth0' }), conf('1.0.0'))),
      );
      for (const a of adds) assert.equal(a.code, 0, a.stdout + a.stderr);
      const ips = adds.map((a) => (a.json.ips as { address: string }[])[0]?.address);
      assert.equal(new Set(ips).size, 50, 'distinct addresses');
      const dels = await Promise.all(
        spaces.map((ns, i) => runPluginAsync(h, pluginEnv(h, 'DEL', { id: `par-${i}`, netns: ns.path, ifname: 'eth0' }), conf('1.0.0'))),
      );
      for (const d of dels) assert.equal(d.code, 0, d.stdout);
      const sbs = (await h.api<{ name: string }[]>('GET', '/v1/sandboxes')).body.filter((s) => s.name.startsWith('cni-'));
      assert.deepEqual(sbs, []);
      await h.settle();
      assert.equal(h.inHost('ip', '-o', 'link', 'show', 'type', 'veth'), '', 'no host-side veth left');
    } finally {
      for (const ns of spaces) removeNetns(ns.name);
    }
  });

  it('reaches the daemon the configuration names, whatever its stdin is', async () => {
    const ns = makeNetns('kntc');
    const other = await startTestHost({ defaultBridge: false });
    try {
      const o = { id: 'where-a', netns: ns.path, ifname: 'eth0' };
      // stdin a socket (Node's stdio): the daemon cannot read it, the executable sends it.
      const nodeStdio = runPluginNodeStdio(h, pluginEnv(h, 'ADD', o), conf('1.0.0'));
      assert.equal(nodeStdio.code, 0, nodeStdio.stdout + nodeStdio.stderr);
      assert.equal(runPluginNodeStdio(h, pluginEnv(h, 'DEL', o), conf('1.0.0')).code, 0);
      // $KNIT_SOCKET names another daemon, the configuration this one: that one reads
      // stdin, sends the executable here with it, and makes nothing itself.
      const env = { ...pluginEnv(h, 'ADD', { ...o, id: 'where-b' }), KNIT_SOCKET: other.socket };
      const redirected = runPlugin(h, env, conf('1.0.0', { socket: h.socket }));
      assert.equal(redirected.code, 0, redirected.stdout + redirected.stderr);
      assert.match(h.inHost('ip', '-o', 'link', 'show', 'type', 'veth'), /kn/);
      assert.equal(other.inHost('ip', '-o', 'link', 'show', 'type', 'veth'), '');
      assert.equal(runPlugin(h, { ...env, CNI_COMMAND: 'DEL' }, conf('1.0.0', { socket: h.socket })).code, 0);
      // A configuration naming a socket where no daemon listens: code 11 naming it.
      const nowhere = runPlugin(h, pluginEnv(h, 'ADD', o), conf('1.0.0', { socket: '/nonexistent/knit.sock' }));
      assert.equal(nowhere.json.code, 11, nowhere.stdout);
      assert.match(String(nowhere.json.msg), /\/nonexistent\/knit\.sock/);
    } finally {
      await other.stop();
      removeNetns(ns.name);
    }
  });

  it('DEL succeeds twice, after the netns is gone, and after a daemon restart', async () => {
    const a = makeNetns('kntc');
    const b = makeNetns('kntc');
    try {
      const oa = { id: 'del-a', netns: a.path, ifname: 'eth0' };
      const ob = { id: 'del-b', netns: b.path, ifname: 'eth0' };
      assert.equal(runPlugin(h, pluginEnv(h, 'ADD', oa), conf('1.0.0')).code, 0);
      assert.equal(runPlugin(h, pluginEnv(h, 'ADD', ob), conf('1.0.0')).code, 0);
      removeNetns(a.name);
      const gone = runPlugin(h, pluginEnv(h, 'DEL', oa), conf('1.0.0'));
      assert.equal(gone.code, 0, gone.stdout);
      assert.equal(runPlugin(h, pluginEnv(h, 'DEL', oa), conf('1.0.0')).code, 0, 'DEL twice');
      await h.stop();
      await h.start();
      const after = runPlugin(h, pluginEnv(h, 'DEL', ob), conf('1.0.0'));
      assert.equal(after.code, 0, after.stdout);
      await h.settle();
      assert.equal(sh('ip', ['-n', b.name, '-o', 'link', 'show']).includes('eth0'), false);
      const noNetns = runPlugin(h, pluginEnv(h, 'DEL', { id: 'never', ifname: 'eth0' }), conf('1.0.0'));
      assert.equal(noNetns.code, 0, 'DEL of an unknown container without CNI_NETNS');
      const sbs = (await h.api<{ name: string }[]>('GET', '/v1/sandboxes')).body.filter((s) => s.name.startsWith('cni-'));
      assert.deepEqual(sbs, []);
    } finally {
      removeNetns(a.name);
      removeNetns(b.name);
    }
  });

  it('GC removes attachments not listed as valid', async () => {
    const a = makeNetns('kntc');
    const b = makeNetns('kntc');
    try {
      assert.equal(runPlugin(h, pluginEnv(h, 'ADD', { id: 'gc-keep', netns: a.path, ifname: 'eth0' }), conf('1.1.0')).code, 0);
      assert.equal(runPlugin(h, pluginEnv(h, 'ADD', { id: 'gc-drop', netns: b.path, ifname: 'eth0' }), conf('1.1.0')).code, 0);
      const gc = runPlugin(h, pluginEnv(h, 'GC'), conf('1.1.0', { 'cni.dev/valid-attachments': [{ containerID: 'gc-keep', ifname: 'eth0' }] }));
      assert.equal(gc.code, 0, gc.stdout);
      await h.settle();
      assert.equal(sh('ip', ['-n', b.name, '-o', 'link', 'show']).includes('eth0'), false, 'gc-drop is gone');
      assert.equal(sh('ip', ['-n', a.name, '-o', 'link', 'show']).includes('eth0'), true, 'gc-keep stays');
      assert.equal(runPlugin(h, pluginEnv(h, 'DEL', { id: 'gc-keep', netns: a.path, ifname: 'eth0' }), conf('1.1.0')).code, 0);
    } finally {
      removeNetns(a.name);
      removeNetns(b.name);
    }
  });

  it('hairpinMode and promiscMode as the reference bridge plugin applies them', async () => {
    const ns = makeNetns('kntc');
    try {
      const o = { id: 'ctr-flags', netns: ns.path, ifname: 'eth0' };
      const add = runPlugin(h, pluginEnv(h, 'ADD', o), conf('1.0.0', { hairpinMode: true, promiscMode: true }));
      assert.equal(add.code, 0, add.stdout + add.stderr);
      const hostIf = (add.json.interfaces as { name: string; sandbox?: string }[]).find((i) => !i.sandbox && i.name !== 'kn-net1')?.name ?? '';
      const [br] = JSON.parse(h.inHost('ip', '-j', 'link', 'show', 'dev', 'kn-net1')) as { flags: string[] }[];
      assert.ok(br?.flags.includes('PROMISC'), `kn-net1 is promiscuous: ${br?.flags.join(',')}`);
      const [port] = JSON.parse(h.inHost('bridge', '-d', '-j', 'link', 'show', 'dev', hostIf)) as { hairpin?: boolean }[];
      assert.equal(port?.hairpin, true);
      assert.equal(runPlugin(h, pluginEnv(h, 'DEL', o), conf('1.0.0')).code, 0);
    } finally {
      removeNetns(ns.name);
    }
  });
});

describe('knit install cni', { skip }, () => {
  it('installs knit and knit-ipam into --bin-dir', async () => {
    const { mkdtempSync, rmSync, statSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'knit-install-'));
    try {
      const { runInstall } = await import('../../src/cni/install.ts');
      assert.equal(await runInstall(['--bin-dir', dir]), 0);
      for (const p of ['knit', 'knit-ipam']) {
        assert.ok((statSync(join(dir, p)).mode & 0o111) !== 0, `${p} is executable`);
        const r = spawnSync(join(dir, p), [], { env: { CNI_COMMAND: 'VERSION' }, encoding: 'utf8' });
        assert.equal(JSON.parse(r.stdout).cniVersion, '1.1.0');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
