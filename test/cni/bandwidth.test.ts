// The `knit` plugin's bandwidth capability against a real daemon: tbf on the
// host veth for traffic into the container, ifb + tbf for traffic out of it;
// bad values are code 7 naming the field; DEL leaves nothing. With
// unshapedSubnets/shapedSubnets an htb classifies by the remote subnet.
// CHECK notices a shaper that is gone.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { canRunKernelTests, makeNetns, removeNetns, sh } from '../helpers/netns.ts';
import { ROOT, startTestHost, type TestHost } from '../helpers/daemon.ts';

const PLUGIN = join(ROOT, 'dist/cni/knit');
const skip = !canRunKernelTests() ? 'needs root' : !existsSync(PLUGIN) ? 'dist/cni/knit not built (npm run build)' : false;

interface PluginRun {
  code: number;
  stdout: string;
  json: Record<string, unknown>;
}

function pluginEnv(h: TestHost, cmd: string, o: { id: string; netns: string; ifname: string }): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', KNIT_SOCKET: h.socket, CNI_COMMAND: cmd, CNI_PATH: '/usr/lib/cni', CNI_CONTAINERID: o.id, CNI_NETNS: o.netns, CNI_IFNAME: o.ifname };
}

/** Runs the plugin inside the test host's namespace, as a runtime there would. */
function runPlugin(h: TestHost, env: Record<string, string>, stdin: string): PluginRun {
  const r = spawnSync('nsenter', [`--net=${h.nsPath}`, PLUGIN], { env, input: stdin, encoding: 'utf8' });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    // not JSON: the assertions show stdout
  }
  return { code: r.status ?? 1, stdout: r.stdout + r.stderr, json };
}

const conf = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: '1.0.0', name: 'bwnet', type: 'knit', bridge: 'kn-bwnet', isGateway: true, isDefaultGateway: true, subnet: '10.23.0.0/16', ...extra });

interface TcQdisc {
  kind: string;
  root?: boolean;
  options?: { rate?: number; burst?: number };
}

function hostIfOf(r: PluginRun): string {
  const ifs = (r.json.interfaces ?? []) as { name: string; sandbox?: string }[];
  const host = ifs.find((i) => !i.sandbox && i.name.startsWith('kn') && !i.name.startsWith('kn-'));
  assert.ok(host, `no host veth in ${r.stdout}`);
  return host.name;
}

describe('knit CNI plugin: bandwidth', { skip }, () => {
  let h: TestHost;
  const qdiscs = (dev: string) => JSON.parse(h.inHost('tc', '-j', 'qdisc', 'show', 'dev', dev)) as TcQdisc[];
  const links = () => h.inHost('ip', '-o', 'link', 'show');
  before(async () => {
    h = await startTestHost({ defaultBridge: false });
  });

  it('ADD shapes both directions, CHECK passes, DEL leaves nothing', async () => {
    const ns = makeNetns('kntb');
    try {
      const o = { id: 'ctr-bw', netns: ns.path, ifname: 'eth0' };
      const bandwidth = { ingressRate: 8_000_000, ingressBurst: 800_000, egressRate: 4_000_000, egressBurst: 400_000 };
      const c = conf({ runtimeConfig: { bandwidth } });
      const add = runPlugin(h, pluginEnv(h, 'ADD', o), c);
      assert.equal(add.code, 0, add.stdout);
      const veth = hostIfOf(add);
      const root = qdiscs(veth).find((q) => q.root === true);
      assert.equal(root?.kind, 'tbf', JSON.stringify(qdiscs(veth)));
      assert.equal(root?.options?.rate, 1_000_000, 'ingressRate 8 Mbit/s = 1 MB/s');
      assert.equal(root?.options?.burst, 100_000);
      assert.ok(qdiscs(veth).some((q) => q.kind === 'ingress'));
      const ifb = `kb${veth.slice(2)}`;
      assert.match(h.inHost('tc', 'filter', 'show', 'dev', veth, 'ingress'), new RegExp(`Egress Redirect to device ${ifb}`));
      const egress = qdiscs(ifb).find((q) => q.root === true);
      assert.equal(egress?.kind, 'tbf');
      assert.equal(egress?.options?.rate, 500_000);

      const check = runPlugin(h, pluginEnv(h, 'CHECK', o), conf({ runtimeConfig: { bandwidth }, prevResult: add.json }));
      assert.equal(check.code, 0, check.stdout);

      const del = runPlugin(h, pluginEnv(h, 'DEL', o), c);
      assert.equal(del.code, 0, del.stdout);
      await h.settle();
      assert.doesNotMatch(links(), new RegExp(`${veth}|${ifb}`));
    } finally {
      removeNetns(ns.name);
    }
  });

  it('takes the four keys from the plugin config itself, over runtimeConfig', async () => {
    const ns = makeNetns('kntb');
    try {
      const o = { id: 'ctr-bw-top', netns: ns.path, ifname: 'eth0' };
      const c = conf({ ingressRate: 16_000_000, ingressBurst: 1_600_000, runtimeConfig: { bandwidth: { ingressRate: 8000, ingressBurst: 8000 } } });
      const add = runPlugin(h, pluginEnv(h, 'ADD', o), c);
      assert.equal(add.code, 0, add.stdout);
      const veth = hostIfOf(add);
      assert.equal(qdiscs(veth).find((q) => q.root === true)?.options?.rate, 2_000_000);
      // Only ingress asked for: no ifb.
      assert.doesNotMatch(links(), new RegExp(`kb${veth.slice(2)}`));
      assert.equal(runPlugin(h, pluginEnv(h, 'DEL', o), c).code, 0);
      await h.settle();
    } finally {
      removeNetns(ns.name);
    }
  });

  it('refuses bad values with code 7 naming the field', () => {
    const ns = makeNetns('kntb');
    try {
      const o = { id: 'ctr-bw-bad', netns: ns.path, ifname: 'eth0' };
      const cases: [Record<string, unknown>, string][] = [
        [{ runtimeConfig: { bandwidth: { ingressRate: 1000 } } }, 'runtimeConfig.bandwidth.ingressBurst'],
        [{ runtimeConfig: { bandwidth: { egressBurst: 1000 } } }, 'runtimeConfig.bandwidth.egressRate'],
        [{ runtimeConfig: { bandwidth: { egressRate: -5, egressBurst: 1000 } } }, 'runtimeConfig.bandwidth.egressRate'],
        [{ runtimeConfig: { bandwidth: { ingressRate: 1000, ingressBurst: 'big' } } }, 'runtimeConfig.bandwidth.ingressBurst'],
        [{ runtimeConfig: { bandwidth: { ingressRate: 1000, ingressBurst: 8 * 0xffffffff } } }, 'runtimeConfig.bandwidth.ingressBurst'],
        [{ egressRate: 1000 }, 'egressBurst'],
      ];
      for (const [extra, field] of cases) {
        const r = runPlugin(h, pluginEnv(h, 'ADD', o), conf(extra));
        assert.equal(r.code, 1, `${JSON.stringify(extra)}: ${r.stdout}`);
        assert.equal(r.json.code, 7, r.stdout);
        assert.ok(String(r.json.msg).startsWith(`${field}:`), `${JSON.stringify(extra)} should name ${field}: ${r.stdout}`);
      }
      // Nothing was attached by the refusals.
      assert.doesNotMatch(links(), /kb[0-9a-f]{11}/);
    } finally {
      removeNetns(ns.name);
    }
  });

  it('limits throughput roughly to the rate (iperf3, loose bound)', { skip: existsSync('/usr/bin/iperf3') ? false : 'iperf3 not installed' }, async () => {
    const ns = makeNetns('kntb');
    const o = { id: 'ctr-bw-perf', netns: ns.path, ifname: 'eth0' };
    const rate = 8_000_000;
    const c = conf({ runtimeConfig: { bandwidth: { ingressRate: rate, ingressBurst: 400_000, egressRate: rate, egressBurst: 400_000 } } });
    const server = spawnSync('ip', ['netns', 'exec', h.ns, 'iperf3', '-s', '-D', '-1', '-B', '10.23.0.1', '-p', '5301'], { encoding: 'utf8' });
    try {
      const add = runPlugin(h, pluginEnv(h, 'ADD', o), c);
      assert.equal(add.code, 0, add.stdout);
      assert.equal(server.status, 0, server.stderr);
      // Container -> host: shaped by the ifb's tbf.
      const out = sh('ip', ['netns', 'exec', ns.name, 'iperf3', '-c', '10.23.0.1', '-p', '5301', '-t', '2', '-J']);
      const bps = (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
      process.stdout.write(`# iperf3 container->host: ${Math.round(bps)} bit/s at a limit of ${rate}\n`);
      assert.ok(bps > 0 && bps < 3 * rate, `egress ${bps} bit/s should be under 3x ${rate}`);
    } finally {
      runPlugin(h, pluginEnv(h, 'DEL', o), c);
      removeNetns(ns.name);
      await h.settle();
    }
  });

  it('CHECK notices a shaper that is gone', () => {
    const ns = makeNetns('kntb');
    try {
      const o = { id: 'ctr-bw-check', netns: ns.path, ifname: 'eth0' };
      const bandwidth = { ingressRate: 8_000_000, ingressBurst: 800_000, egressRate: 4_000_000, egressBurst: 400_000 };
      const c = conf({ runtimeConfig: { bandwidth } });
      const add = runPlugin(h, pluginEnv(h, 'ADD', o), c);
      assert.equal(add.code, 0, add.stdout);
      const veth = hostIfOf(add);
      const check = () => runPlugin(h, pluginEnv(h, 'CHECK', o), conf({ runtimeConfig: { bandwidth }, prevResult: add.json }));
      assert.equal(check().code, 0);
      h.inHost('tc', 'qdisc', 'del', 'dev', veth, 'root');
      const noRoot = check();
      assert.equal(noRoot.code, 1, noRoot.stdout);
      assert.match(String(noRoot.json.msg), new RegExp(`${veth} has no tbf root qdisc`));
      h.inHost('tc', 'qdisc', 'del', 'dev', veth, 'ingress');
      assert.match(String(check().json.msg), new RegExp(`${veth} does not redirect its ingress to kb`));
      assert.equal(runPlugin(h, pluginEnv(h, 'DEL', o), c).code, 0);
    } finally {
      removeNetns(ns.name);
    }
  });

  interface TcClass {
    handle: string;
    /** As tc prints it, e.g. 8Mbit. */
    rate: string;
    packets: number;
  }
  // This tc prints htb classes only as text.
  const classesOf = (dev: string): TcClass[] =>
    h
      .inHost('tc', '-s', 'class', 'show', 'dev', dev)
      .split(/^class /m)
      .filter((b) => b.startsWith('htb '))
      .map((b) => ({ handle: /^htb (\S+)/.exec(b)?.[1] ?? '', rate: / rate (\S+)/.exec(b)?.[1] ?? '', packets: Number(/Sent \d+ bytes (\d+) pkt/.exec(b)?.[1] ?? NaN) }));

  it('unshapedSubnets: an htb whose listed remote subnets go uncapped, the rest shaped; CHECK passes', async () => {
    const ns = makeNetns('kntb');
    try {
      const o = { id: 'ctr-bw-unshaped', netns: ns.path, ifname: 'eth0' };
      const bandwidth = { ingressRate: 8_000_000, ingressBurst: 800_000, egressRate: 4_000_000, egressBurst: 400_000, unshapedSubnets: ['10.23.0.0/24', 'fd00:99::/64'] };
      const c = conf({ runtimeConfig: { bandwidth } });
      const add = runPlugin(h, pluginEnv(h, 'ADD', o), c);
      assert.equal(add.code, 0, add.stdout);
      const veth = hostIfOf(add);
      const ifb = `kb${veth.slice(2)}`;
      const root = qdiscs(veth).find((q) => q.root === true) as TcQdisc & { options?: { default?: string } };
      assert.equal(root?.kind, 'htb', JSON.stringify(qdiscs(veth)));
      assert.equal(root.options?.default, '0x30', 'unclassified traffic is shaped');
      const shaped = classesOf(veth).find((k) => k.handle === '1:30');
      assert.equal(shaped?.rate, '8Mbit', 'the shaped class has ingressRate');
      // Into the sandbox the remote end is the source (offset 12); out of it, the destination (16).
      assert.match(h.inHost('tc', 'filter', 'show', 'dev', veth), /flowid 1:1[\s\S]*match 0a170000\/ffffff00 at 12/);
      assert.match(h.inHost('tc', 'filter', 'show', 'dev', ifb), /flowid 1:1[\s\S]*match 0a170000\/ffffff00 at 16/);
      assert.match(h.inHost('tc', 'filter', 'show', 'dev', ifb), /match fd000099\/ffffffff at 24/);
      assert.equal(classesOf(ifb).find((k) => k.handle === '1:30')?.rate, '4Mbit');

      // A ping to the gateway (10.23.0.1, listed) leaves through the uncapped class.
      const before = classesOf(ifb).find((k) => k.handle === '1:1')?.packets ?? 0;
      sh('ip', ['netns', 'exec', ns.name, 'ping', '-c3', '-i0.2', '-W2', '10.23.0.1']);
      const after = classesOf(ifb).find((k) => k.handle === '1:1')?.packets ?? 0;
      assert.ok(after >= before + 3, `uncapped class counted the pings: ${before} -> ${after}`);

      const check = runPlugin(h, pluginEnv(h, 'CHECK', o), conf({ runtimeConfig: { bandwidth }, prevResult: add.json }));
      assert.equal(check.code, 0, check.stdout);
      assert.equal(runPlugin(h, pluginEnv(h, 'DEL', o), c).code, 0);
      await h.settle();
      assert.doesNotMatch(links(), new RegExp(`${veth}|${ifb}`));
    } finally {
      removeNetns(ns.name);
    }
  });

  it('shapedSubnets: only the listed remote subnets are shaped', () => {
    const ns = makeNetns('kntb');
    try {
      const o = { id: 'ctr-bw-shaped', netns: ns.path, ifname: 'eth0' };
      const c = conf({ ingressRate: 8_000_000, ingressBurst: 800_000, shapedSubnets: ['192.0.2.0/24'] });
      const add = runPlugin(h, pluginEnv(h, 'ADD', o), c);
      assert.equal(add.code, 0, add.stdout);
      const veth = hostIfOf(add);
      const root = qdiscs(veth).find((q) => q.root === true) as TcQdisc & { options?: { default?: string } };
      assert.equal(root?.kind, 'htb');
      assert.equal(root.options?.default, '0x1', 'unclassified traffic is not shaped');
      assert.match(h.inHost('tc', 'filter', 'show', 'dev', veth), /flowid 1:30[\s\S]*match c0000200\/ffffff00 at 12/);
      const check = runPlugin(h, pluginEnv(h, 'CHECK', o), conf({ ingressRate: 8_000_000, ingressBurst: 800_000, shapedSubnets: ['192.0.2.0/24'], prevResult: add.json }));
      assert.equal(check.code, 0, check.stdout);
      assert.equal(runPlugin(h, pluginEnv(h, 'DEL', o), c).code, 0);
    } finally {
      removeNetns(ns.name);
    }
  });

  it('refuses both lists at once, and a bad subnet, naming the field', () => {
    const ns = makeNetns('kntb');
    try {
      const o = { id: 'ctr-bw-subnets-bad', netns: ns.path, ifname: 'eth0' };
      const bw = { ingressRate: 8000, ingressBurst: 8000 };
      const cases: [Record<string, unknown>, string][] = [
        [{ runtimeConfig: { bandwidth: { ...bw, unshapedSubnets: ['10.0.0.0/8'], shapedSubnets: ['10.1.0.0/16'] } } }, 'runtimeConfig.bandwidth.shapedSubnets'],
        [{ runtimeConfig: { bandwidth: { ...bw, unshapedSubnets: ['10.0.0.0/8', 'hello'] } } }, 'runtimeConfig.bandwidth.unshapedSubnets[1]'],
        [{ ...bw, shapedSubnets: '10.0.0.0/8' }, 'shapedSubnets'],
      ];
      for (const [extra, field] of cases) {
        const r = runPlugin(h, pluginEnv(h, 'ADD', o), conf(extra));
        assert.equal(r.json.code, 7, r.stdout);
        assert.ok(String(r.json.msg).startsWith(`${field}:`), `${JSON.stringify(extra)} should name ${field}: ${r.stdout}`);
      }
    } finally {
      removeNetns(ns.name);
    }
  });
});
