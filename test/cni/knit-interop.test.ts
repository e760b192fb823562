// Knit's plugins beside the reference ones (Debian's containernetworking-
// plugins in /usr/lib/cni), driven by Knit's CNI runtime inside a throwaway
// host namespace where the daemon runs: knit + portmap + bandwidth + tuning in
// one conflist, the reference bridge on knit-ipam, and the talk's config.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canRunKernelTests, makeNetns, removeNetns, sh } from '../helpers/netns.ts';
import { ROOT, startTestHost, type TestHost } from '../helpers/daemon.ts';

const REF = '/usr/lib/cni';
const BIN = `${join(ROOT, 'dist/cni')}:${REF}`;
const skip = !canRunKernelTests()
  ? 'needs root'
  : !existsSync(join(ROOT, 'dist/cni/knit'))
    ? 'dist/cni not built (npm run build)'
    : !existsSync(join(REF, 'portmap'))
      ? 'needs containernetworking-plugins'
      : false;
const CLI = join(ROOT, 'src/cni/runtime-cli.ts');
const RUNNER = `import { runCniCommand } from ${JSON.stringify(CLI)}; process.exitCode = await runCniCommand(process.argv.slice(1));`;

const work = mkdtempSync(join(tmpdir(), 'knit-cni-interop-'));
const confDir = join(work, 'net.d');
after(() => rmSync(work, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

describe('knit beside the reference plugins', { skip }, () => {
  let h: TestHost;
  before(async () => {
    h = await startTestHost({ defaultBridge: false });
    sh('mkdir', ['-p', confDir]);
  });

  function knitCni(...argv: string[]): Run {
    const r = spawnSync(
      'nsenter',
      [`--net=${h.nsPath}`, process.execPath, '--input-type=module', '-e', RUNNER, ...argv, '--conf-dir', confDir, '--cache-dir', join(work, 'cache'), '--bin-dir', BIN],
      { encoding: 'utf8', env: { ...process.env, KNIT_SOCKET: h.socket } },
    );
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(r.stdout) as Record<string, unknown>;
    } catch {
      // not a result
    }
    return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr, json };
  }

  const ipsOf = (r: Run) => (r.json.ips as { address: string }[] | undefined)?.map((i) => i.address) ?? [];

  it('knit + portmap + bandwidth + tuning in one conflist', async () => {
    writeFileSync(
      join(confDir, 'chain.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'chain',
        plugins: [
          { type: 'knit', bridge: 'kn-chain', isGateway: true, isDefaultGateway: true, subnet: '10.31.0.0/24' },
          { type: 'portmap', capabilities: { portMappings: true } },
          { type: 'bandwidth', capabilities: { bandwidth: true } },
          { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.rp_filter': '2' } },
        ],
      }),
    );
    const ns = makeNetns('kntc');
    try {
      const caps = JSON.stringify({
        portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }],
        bandwidth: { ingressRate: 1000000, ingressBurst: 100000, egressRate: 1000000, egressBurst: 100000 },
      });
      const common = ['--net', 'chain', '--netns', ns.path, '--container-id', 'chain-1', '--capability-args', caps];
      const add = knitCni('add', ...common);
      assert.equal(add.code, 0, add.stdout + add.stderr);
      assert.match(ipsOf(add)[0] ?? '', /^10\.31\.0\.\d+\/24$/);
      const hostIf = (add.json.interfaces as { name: string; sandbox?: string }[]).find((i) => i.name.startsWith('kn') && !i.sandbox && i.name !== 'kn-chain')?.name ?? '';
      assert.notEqual(hostIf, '');
      assert.match(h.inHost('iptables', '-w', '-t', 'nat', '-S'), /--dport 18080/, 'portmap DNAT rule');
      assert.match(h.inHost('tc', 'qdisc', 'show', 'dev', hostIf), /tbf/, 'bandwidth shaping on the host veth');
      assert.equal(sh('ip', ['netns', 'exec', ns.name, 'sysctl', '-n', 'net.ipv4.conf.eth0.rp_filter']).trim(), '2', 'tuning');
      // No CHECK here: Debian's portmap fails CHECK on any IPv4-only result
      // ("could not check ipv6 dnat: chain ... not found"), whatever precedes it.
      const del = knitCni('del', ...common);
      assert.equal(del.code, 0, del.stdout + del.stderr);
      assert.doesNotMatch(h.inHost('iptables', '-w', '-t', 'nat', '-S'), /--dport 18080/);
      await h.settle();
      assert.equal(h.inHost('ip', '-o', 'link', 'show', 'type', 'veth'), '');
    } finally {
      removeNetns(ns.name);
    }
  });

  it('the reference bridge plugin gets its addresses from knit-ipam', async () => {
    writeFileSync(
      join(confDir, 'refbr.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'refbr',
        plugins: [{ type: 'bridge', bridge: 'kn-refbr', isGateway: true, ipam: { type: 'knit-ipam', subnet: '10.32.0.0/24', routes: [{ dst: '0.0.0.0/0' }] } }],
      }),
    );
    const a = makeNetns('kntc');
    const b = makeNetns('kntc');
    try {
      const addA = knitCni('add', '--net', 'refbr', '--netns', a.path, '--container-id', 'ref-a');
      const addB = knitCni('add', '--net', 'refbr', '--netns', b.path, '--container-id', 'ref-b');
      assert.equal(addA.code, 0, addA.stdout + addA.stderr);
      assert.equal(addB.code, 0, addB.stdout + addB.stderr);
      const [ipA, ipB] = [ipsOf(addA)[0] ?? '', ipsOf(addB)[0] ?? ''];
      assert.match(ipA, /^10\.32\.0\.\d+\/24$/);
      assert.notEqual(ipA, ipB);
      assert.match(sh('ip', ['netns', 'exec', a.name, 'ping', '-c1', '-W2', ipB.split('/')[0] as string]), /1 received/);
      assert.equal(knitCni('check', '--net', 'refbr', '--netns', a.path, '--container-id', 'ref-a').code, 0);
      assert.equal(knitCni('del', '--net', 'refbr', '--netns', a.path, '--container-id', 'ref-a').code, 0);
      assert.equal(knitCni('del', '--net', 'refbr', '--netns', b.path, '--container-id', 'ref-b').code, 0);
      // Released: CHECK now finds no address for the container.
      const check = knitCni('check', '--net', 'refbr', '--netns', a.path, '--container-id', 'ref-a');
      assert.notEqual(check.code, 0);
    } finally {
      removeNetns(a.name);
      removeNetns(b.name);
    }
  });

  it("the talk's configuration (slide 13) with type knit", () => {
    // Verbatim but for the type and a cniVersion; host-local keeps its files in a temp dir.
    writeFileSync(
      join(confDir, 'mynet.conf'),
      JSON.stringify({
        cniVersion: '0.3.1',
        name: 'mynet',
        type: 'knit',
        bridge: 'cni0',
        isGateway: true,
        ipMasq: true,
        ipam: { type: 'host-local', subnet: '10.22.0.0/16', routes: [{ dst: '0.0.0.0/0' }], dataDir: join(work, 'host-local') },
      }),
    );
    const ns = makeNetns('kntc');
    try {
      const add = knitCni('add', '--net', 'mynet', '--netns', ns.path, '--container-id', 'talk-1');
      assert.equal(add.code, 0, add.stdout + add.stderr + h.log());
      assert.match(ipsOf(add)[0] ?? '', /^10\.22\.\d+\.\d+\/16$/);
      assert.match(sh('ip', ['-n', ns.name, 'route', 'show', 'default']), /via 10\.22\.0\.1/);
      assert.match(sh('ip', ['netns', 'exec', ns.name, 'ping', '-c1', '-W2', '10.22.0.1']), /1 received/);
      assert.match(h.inHost('ip', '-o', 'link', 'show', 'cni0'), /cni0/);
      // 0.3.1, the talk's era, has no CHECK.
      const del = knitCni('del', '--net', 'mynet', '--netns', ns.path, '--container-id', 'talk-1');
      assert.equal(del.code, 0, del.stdout + del.stderr);
    } finally {
      removeNetns(ns.name);
    }
  });
});
