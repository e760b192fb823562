// cni: Knit's CNI plugin executable, one process per call as every CNI
// runtime starts it, beside the reference chain from containernetworking-
// plugins (bridge + host-local, + portmap, + firewall) and netavark, on the
// same configuration: a bridge with gateway and masquerade on one /16, then
// with one port mapping. Measured: ADD and DEL per call (spawn to exit),
// and 200 ADDs then their DELs, sequentially and 8 at a time.
import { existsSync, linkSync, copyFileSync, mkdtempSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Benchmark, Report, Stat, Target } from './lib/types.ts';
import { startBenchHost, ROOT } from './lib/host.ts';
import { makeNetns, onCleanup, removeNetns, ipIn, inNs, RUN_TAG } from './lib/netns.ts';
import { sleep, stat } from './lib/stats.ts';
import { ensurePeer } from './lib/peers.ts';
import { netavarkOptions, type NetavarkNet } from './lib/netavark.ts';
import { nthAddress } from './lib/floor.ts';
import { fmt } from './lib/table.ts';
import { Chain, execIn, launcherKind, pool, type Attachment } from './lib/cni-chain.ts';

const PLUGIN = join(ROOT, 'dist/cni/knit');
const CNI_DIR = '/usr/lib/cni';
const NETAVARK = '/usr/lib/podman/netavark';
const CONCURRENCY = 8;
const SETTLE_MS = 1000;

/** What the benchmark drives: a chain of CNI plugins, or netavark. */
interface Driver {
  label: string;
  hostNsPath: string;
  add(a: Attachment): Promise<number>;
  del(a: Attachment): Promise<number>;
}

/** netavark as Podman runs it: `setup`/`teardown NETNS` with the options JSON on stdin, static addresses. */
class NetavarkDriver implements Driver {
  readonly label = 'netavark';
  readonly hostNsPath: string;
  private readonly bin: string;
  private readonly configDir: string;
  private readonly net: NetavarkNet;
  private readonly options = new Map<string, string>();
  private next = 0;

  constructor(bin: string, hostNsPath: string, configDir: string, net: NetavarkNet) {
    this.bin = bin;
    this.hostNsPath = hostNsPath;
    this.configDir = configDir;
    this.net = net;
  }

  async add(a: Attachment): Promise<number> {
    const opts = netavarkOptions(this.net, nthAddress(this.net.subnet.split('/')[0]!, this.next++), a.hostPort);
    this.options.set(a.containerId, opts);
    return (await execIn(this.hostNsPath, this.bin, ['--config', this.configDir, 'setup', a.netns], {}, opts)).ms;
  }

  async del(a: Attachment): Promise<number> {
    const opts = this.options.get(a.containerId);
    if (opts === undefined) throw new Error(`netavark: no setup recorded for ${a.containerId}`);
    const ms = (await execIn(this.hostNsPath, this.bin, ['--config', this.configDir, 'teardown', a.netns], {}, opts)).ms;
    this.options.delete(a.containerId);
    return ms;
  }
}

let containers = 0;
let hostPorts = 20000;

/** n attachments, each in a fresh namespace made before the clock starts. */
function attachments(n: number, port: boolean): (Attachment & { nsName: string })[] {
  return Array.from({ length: n }, () => {
    const ns = makeNetns('kntbc');
    return { containerId: `kntb-${RUN_TAG}-${++containers}`, netns: ns.path, nsName: ns.name, ifname: 'eth0', ...(port ? { hostPort: hostPorts++ } : {}) };
  });
}

/** One ADD, checked in the kernel (an IPv4 address on eth0; the host port in the host's ruleset), then its DEL. */
async function warmUpAndCheck(d: Driver, port: boolean): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const [a] = attachments(1, port);
    await d.add(a!);
    if (i === 0) {
      const addr = ipIn(a!.nsName, '-4', '-o', 'addr', 'show', 'dev', 'eth0');
      if (!/inet \d+\./.test(addr)) throw new Error(`${d.label}: ADD left no IPv4 address on eth0 in ${a!.netns}`);
      if (a!.hostPort !== undefined && !new RegExp(`\\b${a!.hostPort}\\b`).test(inNs(d.hostNsPath, 'nft', ['list', 'ruleset']))) {
        throw new Error(`${d.label}: ADD with hostPort ${a!.hostPort} left no rule for it in the host namespace`);
      }
    }
    await d.del(a!);
    removeNetns(a!.nsName);
  }
}

/** n ADDs one after the other, then their DELs: per-call samples. */
async function latency(d: Driver, n: number, port: boolean): Promise<{ add: number[]; del: number[] }> {
  await warmUpAndCheck(d, port);
  const as = attachments(n, port);
  const add: number[] = [];
  const del: number[] = [];
  for (const a of as) add.push(await d.add(a));
  for (const a of as) del.push(await d.del(a));
  for (const a of as) removeNetns(a.nsName);
  await sleep(SETTLE_MS);
  return { add, del };
}

interface Rates {
  add: number;
  del: number;
  /** Per-call ADD times, in order (sequential runs only). */
  addTimes: number[];
}

/** n ADDs with `concurrency` in flight, then their DELs the same way: rates per second. */
async function rates(d: Driver, n: number, concurrency: number, port: boolean): Promise<Rates> {
  const as = attachments(n, port);
  const addTimes: number[] = [];
  const addMs = await pool(n, concurrency, async (i) => addTimes.push(await d.add(as[i]!)));
  const delMs = await pool(n, concurrency, (i) => d.del(as[i]!));
  for (const a of as) removeNetns(a.nsName);
  // The kernel dismantles removed namespaces in the background, under the locks every
  // netlink change takes: let it finish before the next subject is timed.
  await sleep(SETTLE_MS);
  return { add: (n / addMs) * 1000, del: (n / delMs) * 1000, addTimes: concurrency === 1 ? addTimes : [] };
}

/** The plugin as it is now, hard-linked (or copied) so that a rebuild during the run does not change what is measured. */
function snapshotPlugin(): { path: string; kind: string } {
  if (!existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: run \`npm run build\` first`);
  const dir = mkdtempSync(join(tmpdir(), 'knit-bench-cni-'));
  onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'knit');
  try {
    linkSync(PLUGIN, path);
  } catch {
    copyFileSync(PLUGIN, path);
  }
  const head = Buffer.alloc(4);
  const fd = openSync(path, 'r');
  readSync(fd, head, 0, 4, 0);
  closeSync(fd);
  return { path, kind: head.toString('latin1', 1, 4) === 'ELF' ? 'a standalone executable (bun build --compile)' : 'a script running the Node bundle (no bun at build time)' };
}

const bench: Benchmark = {
  name: 'cni',
  description: "Knit's CNI plugin ADD/DEL per call, 200 sequential and 8 at a time, beside the reference bridge chain and netavark",
  peers: ['bridge + host-local (+ portmap, + firewall)', 'netavark'],
  async run({ quick, log }): Promise<Report> {
    const n = quick ? 10 : 30;
    const many = quick ? 40 : 200;
    // With a port the reference chain takes ~0.4 s per ADD+DEL here: a quick run keeps it short.
    const manyPort = quick ? 20 : 200;
    const notes: string[] = [];
    const targets: Target[] = [];
    const plugin = snapshotPlugin();

    // --- subjects
    log('starting a Knit daemon in a throwaway namespace');
    const h = await startBenchHost({ defaultBridge: false });
    // The daemon at $KNIT_SOCKET, as a deployment's plugin finds it at /run/knit/knit.sock.
    const knitPlugin = { type: 'knit', bridge: `kn${RUN_TAG}cni`, isGateway: true, isDefaultGateway: true, ipMasq: true, subnet: '10.91.0.0/16', capabilities: { portMappings: true } };
    const knit = new Chain({ label: 'Knit plugin', hostNsPath: h.nsPath, name: `kbcni${RUN_TAG}`, cniVersion: '1.0.0', cniPath: CNI_DIR, plugins: [{ bin: plugin.path, conf: knitPlugin }], env: { KNIT_SOCKET: h.socket } });

    const reference: Chain[] = [];
    const refPeer = ensurePeer(join(CNI_DIR, 'bridge'), 'containernetworking-plugins', log);
    if (refPeer.path) {
      const refNs = makeNetns('kntbr');
      const dataDir = mkdtempSync(join(tmpdir(), 'knit-bench-hostlocal-'));
      onCleanup(() => rmSync(dataDir, { recursive: true, force: true }));
      const bridge = (i: number) => ({
        type: 'bridge', bridge: `kbr${RUN_TAG}${i}`, isGateway: true, isDefaultGateway: true, ipMasq: true,
        ipam: { type: 'host-local', ranges: [[{ subnet: `10.${92 + i}.0.0/16` }]], dataDir },
      });
      const portmap = { type: 'portmap', capabilities: { portMappings: true }, snat: true };
      const firewall = { type: 'firewall', backend: 'iptables' };
      const chain = (i: number, label: string, confs: Record<string, unknown>[]) => {
        const name = `kbref${RUN_TAG}${i}`;
        onCleanup(() => rmSync(`/var/lib/cni/networks/${name}`, { recursive: true, force: true }));
        return new Chain({ label, hostNsPath: refNs.path, name, cniVersion: '1.0.0', cniPath: CNI_DIR, plugins: confs.map((c) => ({ bin: join(CNI_DIR, c.type as string), conf: c })) });
      };
      reference.push(chain(0, 'bridge', [bridge(0)]), chain(1, 'bridge+portmap', [bridge(1), portmap]), chain(2, 'bridge+portmap+firewall', [bridge(2), portmap, firewall]));
    } else {
      notes.push(`reference plugins: ${refPeer.missing}`);
    }
    const [refBridge, refPortmap, refFirewall] = reference;

    let netavark: NetavarkDriver | undefined;
    let anchor: Attachment | undefined;
    const nvPeer = ensurePeer(NETAVARK, 'netavark', log);
    if (nvPeer.path) {
      const nvNs = makeNetns('kntbn');
      const configDir = mkdtempSync(join(tmpdir(), 'knit-bench-nv-'));
      onCleanup(() => rmSync(configDir, { recursive: true, force: true }));
      netavark = new NetavarkDriver(nvPeer.path, nvNs.path, configDir, { bridge: `kbn${RUN_TAG}`, subnet: '10.95.0.0/16', gateway: '10.95.0.1' });
      // netavark removes its bridge with the last container: one kept attached throughout, so
      // every call measured finds the bridge there, as Knit's and the reference chain's do.
      anchor = attachments(1, false)[0]!;
      await netavark.add(anchor);
      const nv = netavark;
      const a = anchor;
      onCleanup(async () => void (await nv.del(a).catch(() => undefined)));
    } else {
      notes.push(`netavark: ${nvPeer.missing}`);
    }

    // The floor under every figure: starting a process in the host namespace.
    const spawnFloor: number[] = [];
    for (let i = 0; i < n; i++) spawnFloor.push((await execIn(h.nsPath, '/bin/true', [], {}, '')).ms);

    // --- per call
    const lat = new Map<string, { add: number[]; del: number[] }>();
    const measure = async (key: string, d: Driver | undefined, port: boolean) => {
      if (!d) return;
      log(`${d.label}: ${n} ADDs then ${n} DELs${port ? ' with one port mapping' : ''}`);
      lat.set(key, await latency(d, n, port));
    };
    await measure('knit', knit, false);
    await measure('knit:port', knit, true);
    await measure('bridge', refBridge, false);
    await measure('portmap:port', refPortmap, true);
    await measure('firewall:port', refFirewall, true);
    await measure('netavark', netavark, false);
    await measure('netavark:port', netavark, true);

    // --- many
    const rate = new Map<string, Rates>();
    const throughput = async (key: string, d: Driver | undefined, port: boolean) => {
      if (!d) return;
      const count = port ? manyPort : many;
      for (const c of [1, CONCURRENCY]) {
        log(`${d.label}: ${count} ADDs${port ? ' with a port each' : ''} ${c === 1 ? 'sequentially' : `${c} at a time`}, then their DELs`);
        rate.set(`${key}:${c}`, await rates(d, count, c, port));
      }
    };
    await throughput('knit', knit, false);
    await throughput('bridge', refBridge, false);
    await throughput('netavark', netavark, false);
    await throughput('knit:port', knit, true);
    await throughput('portmap:port', refPortmap, true);
    await throughput('netavark:port', netavark, true);

    // --- report
    const s = (key: string, which: 'add' | 'del'): Stat | undefined => {
      const l = lat.get(key);
      return l ? stat(l[which]) : undefined;
    };
    const r = (key: string, which: 'add' | 'del'): Stat | undefined => {
      const x = rate.get(key);
      return x ? stat([x[which]]) : undefined;
    };
    const firstLast = (key: string): [Stat | undefined, Stat | undefined] => {
      const t = rate.get(`${key}:1`)?.addTimes;
      return t && t.length >= 40 ? [stat(t.slice(0, 20)), stat(t.slice(-20))] : [undefined, undefined];
    };
    const [kFirst, kLast] = firstLast('knit');
    const [bFirst, bLast] = firstLast('bridge');
    const [nFirst, nLast] = firstLast('netavark');

    const kAdd = [s('knit', 'add')!, s('knit:port', 'add')!];
    const kDel = [s('knit', 'del')!, s('knit:port', 'del')!];
    const peersAt = (which: 'add' | 'del', port: boolean) =>
      (port ? ['portmap:port', 'firewall:port', 'netavark:port'] : ['bridge', 'netavark'])
        .map((k) => [k, s(k, which)] as const)
        .filter((x): x is readonly [string, Stat] => x[1] !== undefined)
        .map(([k, v]) => `${k.replace(':port', '')} ${fmt(v.median)}`)
        .join(', ');
    targets.push({
      target: 'ADD at most 20 ms at the median, with or without port mappings, process start included',
      met: kAdd.every((x) => x.median <= 20),
      measured: `Knit ${fmt(kAdd[0]!.median)} ms without a port (${peersAt('add', false)}), ${fmt(kAdd[1]!.median)} ms with one (${peersAt('add', true)})`,
    });
    targets.push({
      target: 'DEL at most 20 ms at the median, with or without port mappings, process start included',
      met: kDel.every((x) => x.median <= 20),
      measured: `Knit ${fmt(kDel[0]!.median)} ms without a port (${peersAt('del', false)}), ${fmt(kDel[1]!.median)} ms with one (${peersAt('del', true)})`,
    });
    const kSeq = [rate.get('knit:1')!, rate.get('knit:port:1')!];
    const kPar = [rate.get(`knit:${CONCURRENCY}`)!, rate.get(`knit:port:${CONCURRENCY}`)!];
    const judged = (ok: boolean) => (many < 200 || manyPort < 200 ? undefined : ok);
    const short = many < 200 ? ` (quick run: ${many} ADDs without a port and ${manyPort} with one, not 200, so not judged)` : '';
    targets.push({
      target: '200 attachments at 100/s or more sequentially',
      met: judged(kSeq.every((x) => x.add >= 100)),
      measured: `Knit ${fmt(kSeq[0]!.add)}/s without a port, ${fmt(kSeq[1]!.add)}/s with one${short}`,
    });
    targets.push({
      target: `200 attachments at 200/s or more ${CONCURRENCY} at a time`,
      met: judged(kPar.every((x) => x.add >= 200)),
      measured: `Knit ${fmt(kPar[0]!.add)}/s without a port, ${fmt(kPar[1]!.add)}/s with one${short}`,
    });
    targets.push({
      target: 'cost per ADD flat as containers accumulate (median of the last 20 of the sequential ADDs under 1.5× the first 20)',
      met: kFirst && kLast && many >= 200 ? kLast.median / kFirst.median < 1.5 : undefined,
      measured: kFirst && kLast
        ? `Knit first 20 ${fmt(kFirst.median)} ms, last 20 ${fmt(kLast.median)} ms: ${(kLast.median / kFirst.median).toFixed(2)}×${short}`
        : `fewer than 40 sequential ADDs${short}`,
    });

    notes.push(
      `Every call is one process, timed from spawn to exit (process start included; a chain's figure sums its processes), started inside a benchmark host namespace (Knit's daemon's for the plugin, one for the reference chains, one for netavark) so that bridges, veths and iptables/nftables rules stay there. Started by: ${launcherKind()}. Rates are wall time for the whole batch.`,
      `Process start floor in this run: \`/bin/true\` takes ${fmt(stat(spawnFloor).median)} ms (median of ${n}, min ${fmt(stat(spawnFloor).min)}). Every subject ran in this one run on this machine: compare the columns with each other, and against other runs only at a like load average.`,
      `Knit plugin: ${PLUGIN} (${plugin.kind}), hard-linked at the start so a rebuild during the run does not change it; conf {"type":"knit","bridge","isGateway","isDefaultGateway","ipMasq":true,"subnet":"10.91.0.0/16","capabilities":{"portMappings":true}}, the port as runtimeConfig.portMappings [{hostPort, containerPort 80, tcp}]; the daemon found at KNIT_SOCKET (as at /run/knit/knit.sock by default), which reads the plugin's stdin itself (given as Bun.spawn gives a byte array: a memfd; Go runtimes give a pipe, read the same way).`,
      `Reference chain: containernetworking-plugins ${pkgVersion('containernetworking-plugins')} from ${CNI_DIR}, bridge (isGateway, isDefaultGateway, ipMasq) + host-local (a /16, dataDir per run), then + portmap (runtimeConfig portMappings, snat), then + firewall (iptables backend); run as libcni does: one process per plugin, ADD in order with prevResult, DEL in reverse with the cached ADD result; cniVersion 1.0.0. A row's figure is the whole chain.`,
      `netavark ${pkgVersion('netavark')} (${NETAVARK}, its default iptables firewall driver), \`setup\`/\`teardown NETNS\` with Podman's options JSON (static address, bridge network on a /16, host-local IPAM); one container stays attached throughout so its bridge is not removed and re-made between calls.`,
      `Each container namespace is made (and removed) outside the timed part, with a ${SETTLE_MS / 1000} s pause after each batch is removed so the kernel's background netns teardown does not fall on the next subject. Per-call rows: ${n} ADDs one after the other, then their ${n} DELs, after 3 warm-up ADD/DEL cycles (the first one checked: an IPv4 address on eth0, the host port in the host namespace's ruleset). Rates: ${many} ADDs (${manyPort} with a port), then their DELs, sequentially and ${CONCURRENCY} at a time (a pool of ${CONCURRENCY} processes in flight), each port mapping to its own host port; with a port the reference chain is bridge + portmap.`,
      'Reference figures from issue 3 for this machine: reference bridge ADD 27 ms / DEL 77 ms; bridge + portmap 65 / 192 ms; bridge + portmap + firewall 95 / 226 ms; netavark 36 / 34 ms (52 / 100 ms with a port); 200 ADDs at 26/s sequentially and 36/s 8 at a time with the reference bridge (netavark 28 and 55).',
    );
    if (quick) notes.push(`Quick run: ${n} samples per call row and ${many} ADDs for the rates (${manyPort} with a port), so the rate and flatness targets are not judged.`);

    const subjects = ['Knit plugin', 'bridge', 'bridge+portmap', 'bridge+portmap+firewall', 'netavark'];
    const rateSubjects = ['Knit plugin', 'reference chain', 'netavark'];
    return {
      title: "cni: Knit's CNI plugin beside the reference plugins and netavark, one process per call",
      tables: [
        {
          title: 'One call, process start included (a bridge with gateway and masquerade on a /16)',
          unit: 'ms',
          subjects,
          rows: [
            { label: 'ADD, no port', values: [kAdd[0], s('bridge', 'add'), undefined, undefined, s('netavark', 'add')] },
            { label: 'ADD, 1 port mapping', values: [kAdd[1], undefined, s('portmap:port', 'add'), s('firewall:port', 'add'), s('netavark:port', 'add')] },
            { label: 'DEL, no port', values: [kDel[0], s('bridge', 'del'), undefined, undefined, s('netavark', 'del')] },
            { label: 'DEL, 1 port mapping', values: [kDel[1], undefined, s('portmap:port', 'del'), s('firewall:port', 'del'), s('netavark:port', 'del')] },
            { label: `ADD, no port: 1st–20th of ${many} sequential`, values: [kFirst, bFirst, undefined, undefined, nFirst] },
            { label: `ADD, no port: last 20 of ${many} sequential`, values: [kLast, bLast, undefined, undefined, nLast] },
          ],
        },
        {
          title: `Many ADDs, then their DELs (reference chain: bridge without a port, bridge+portmap with one)`,
          unit: 'per second',
          subjects: rateSubjects,
          rows: [
            { label: `no port: ${many} ADDs sequential`, values: [r('knit:1', 'add'), r('bridge:1', 'add'), r('netavark:1', 'add')] },
            { label: `no port: their DELs sequential`, values: [r('knit:1', 'del'), r('bridge:1', 'del'), r('netavark:1', 'del')] },
            { label: `no port: ${many} ADDs ${CONCURRENCY} at a time`, values: [r(`knit:${CONCURRENCY}`, 'add'), r(`bridge:${CONCURRENCY}`, 'add'), r(`netavark:${CONCURRENCY}`, 'add')] },
            { label: `no port: their DELs ${CONCURRENCY} at a time`, values: [r(`knit:${CONCURRENCY}`, 'del'), r(`bridge:${CONCURRENCY}`, 'del'), r(`netavark:${CONCURRENCY}`, 'del')] },
            { label: `1 port: ${manyPort} ADDs sequential`, values: [r('knit:port:1', 'add'), r('portmap:port:1', 'add'), r('netavark:port:1', 'add')] },
            { label: `1 port: their DELs sequential`, values: [r('knit:port:1', 'del'), r('portmap:port:1', 'del'), r('netavark:port:1', 'del')] },
            { label: `1 port: ${manyPort} ADDs ${CONCURRENCY} at a time`, values: [r(`knit:port:${CONCURRENCY}`, 'add'), r(`portmap:port:${CONCURRENCY}`, 'add'), r(`netavark:port:${CONCURRENCY}`, 'add')] },
            { label: `1 port: their DELs ${CONCURRENCY} at a time`, values: [r(`knit:port:${CONCURRENCY}`, 'del'), r(`portmap:port:${CONCURRENCY}`, 'del'), r(`netavark:port:${CONCURRENCY}`, 'del')] },
          ],
        },
      ],
      targets,
      notes,
    };
  },
};

function pkgVersion(pkg: string): string {
  const v = spawnSync('dpkg-query', ['-W', '-f', '${Version}', pkg], { encoding: 'utf8' }).stdout.trim();
  return v === '' ? '(version unknown)' : v;
}

export default bench;
