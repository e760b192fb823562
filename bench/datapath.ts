// datapath: TCP throughput (iperf3, 1 and 4 streams) and request/response
// latency (sockperf ping-pong) between two sandboxes on a Knit bridge network,
// beside a bare veth pair (the floor) and a bare Linux bridge built with `ip`,
// each in namespaces of its own. CPU cost per Gbit/s from /proc/stat.
import { spawnSync } from 'node:child_process';
import type { Benchmark, Report, Stat, Target } from './lib/types.ts';
import { startBenchHost } from './lib/host.ts';
import { ipIn, makeNetns, RUN_TAG, sh } from './lib/netns.ts';
import { stat } from './lib/stats.ts';
import { ensurePeer } from './lib/peers.ts';
import { iperf, pingPong, pingRtt, serveIn, type Throughput } from './lib/traffic.ts';
import { fmt } from './lib/table.ts';

/** Two endpoints: a client namespace and the server's namespace and address. */
interface Pair {
  client: string;
  server: string;
  serverIp: string;
  /** The namespace holding the bridge (the client's for a veth pair). */
  host: string;
}

/** net.bridge.bridge-nf-call-iptables in a namespace: '1', '0', or 'absent' (no br_netfilter). */
function brnf(nsPath: string): string {
  const r = spawnSync('nsenter', [`--net=${nsPath}`, 'cat', '/proc/sys/net/bridge/bridge-nf-call-iptables'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'absent';
}

/** Two namespaces joined by one veth pair: nothing between them. */
function vethPair(): Pair {
  const a = makeNetns('kntbv');
  const b = makeNetns('kntbv');
  ipIn(a.name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', b.name);
  ipIn(a.name, 'addr', 'add', '10.84.0.1/24', 'dev', 'eth0');
  ipIn(b.name, 'addr', 'add', '10.84.0.2/24', 'dev', 'eth0');
  ipIn(a.name, 'link', 'set', 'eth0', 'up');
  ipIn(b.name, 'link', 'set', 'eth0', 'up');
  return { client: a.path, server: b.path, serverIp: '10.84.0.2', host: a.path };
}

/** A host namespace with a Linux bridge and two namespaces on it: no firewall, no NAT. */
function bareBridge(): Pair {
  const h = makeNetns('kntbb');
  ipIn(h.name, 'link', 'add', 'br0', 'type', 'bridge');
  ipIn(h.name, 'addr', 'add', '10.85.0.1/24', 'dev', 'br0');
  ipIn(h.name, 'link', 'set', 'br0', 'up');
  const ends = [2, 3].map((i) => {
    const s = makeNetns('kntbb');
    ipIn(h.name, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', s.name);
    ipIn(h.name, 'link', 'set', `v${i}`, 'master', 'br0', 'up');
    ipIn(s.name, 'addr', 'add', `10.85.0.${i}/24`, 'dev', 'eth0');
    ipIn(s.name, 'link', 'set', 'eth0', 'up');
    ipIn(s.name, 'route', 'add', 'default', 'via', '10.85.0.1');
    return s.path;
  });
  return { client: ends[0]!, server: ends[1]!, serverIp: '10.85.0.3', host: h.path };
}

/** Two sandboxes on a Knit bridge network, made through the daemon's API. */
async function knitPair(): Promise<Pair> {
  const h = await startBenchHost({ defaultBridge: false });
  await h.call('POST', '/v1/networks', { name: 'dp', driver: 'bridge', subnets: [{ subnet: '10.86.0.0/24' }], options: { bridge: `kd${RUN_TAG}` } });
  const names = [`${h.sandboxPrefix}c`, `${h.sandboxPrefix}s`];
  const views: { netnsPath: string; endpoints: { ipv4?: string }[] }[] = [];
  for (const name of names) views.push(await h.call('POST', '/v1/sandboxes', { name, networks: [{ network: 'dp' }] }));
  const ip = views[1]!.endpoints[0]?.ipv4?.split('/')[0];
  if (!ip) throw new Error('the server sandbox has no IPv4 address');
  return { client: views[0]!.netnsPath, server: views[1]!.netnsPath, serverIp: ip, host: h.nsPath };
}

/** Whether Knit's daemon put the pair on its fast path (the kernel may lack it: Linux < 6.16). */
function fastpathState(hostNsPath: string): string {
  try {
    const out = sh('nsenter', [`--net=${hostNsPath}`, 'nft', 'list', 'map', 'netdev', 'knit', 'ports']);
    return `on, ${(out.match(/: "/g) ?? []).length} port(s) in its map`;
  } catch {
    return 'off (no `table netdev knit`: every frame takes the bridge)';
  }
}

const SUBJECTS = ['Knit bridge', 'bare bridge', 'veth pair (floor)'];

const bench: Benchmark = {
  name: 'datapath',
  description: 'iperf3 TCP throughput and sockperf latency: Knit bridge network vs bare Linux bridge vs veth pair',
  peers: ['bare Linux bridge', 'veth pair (floor)'],
  async run({ quick, log }): Promise<Report> {
    const seconds = quick ? 2 : 10;
    const reps = quick ? 1 : 3;
    const notes: string[] = [];
    const iperfPeer = ensurePeer('iperf3', 'iperf3', log);
    if (!iperfPeer.path) throw new Error(iperfPeer.missing);
    const sockperf = ensurePeer('sockperf', 'sockperf', log);

    log('building the three topologies');
    const pairs = [await knitPair(), bareBridge(), vethPair()];
    for (const p of pairs) {
      await serveIn(p.server, 'iperf3', ['-s', '-p', '5201']);
      if (sockperf.path) await serveIn(p.server, 'sockperf', ['server', '--tcp', '-i', p.serverIp, '-p', '11111'], 100);
    }

    const tput: Throughput[][][] = [[[], [], []], [[], [], []]]; // [streams 1|4][subject][rep]
    const lat: number[][] = [[], [], []];
    // Subjects interleaved within each repetition, so a load change hits all of them alike.
    for (let r = 0; r < reps; r++) {
      for (const [si, streams] of [1, 4].entries()) {
        for (const [pi, p] of pairs.entries()) {
          log(`rep ${r + 1}/${reps}: ${SUBJECTS[pi]}, ${streams} stream(s), ${seconds} s`);
          tput[si]![pi]!.push(iperf(p.client, p.serverIp, seconds, streams));
        }
      }
      for (const [pi, p] of pairs.entries()) {
        lat[pi]!.push(sockperf.path ? pingPong(p.client, p.serverIp, Math.min(seconds, 5)) : pingRtt(p.client, p.serverIp, quick ? 100 : 500));
      }
    }

    const gbps = (si: number, pi: number): Stat => stat(tput[si]![pi]!.map((t) => t.gbps));
    const cpu = (si: number, pi: number): Stat => stat(tput[si]![pi]!.map((t) => (t.cores * 100) / t.gbps));
    const latS = lat.map((l) => stat(l));

    const targets: Target[] = [];
    for (const [si, streams] of [1, 4].entries()) {
      const k = gbps(si, 0).median;
      const b = gbps(si, 1).median;
      targets.push({
        target: `throughput within 3% of a bare Linux bridge (${streams} stream${streams > 1 ? 's' : ''})`,
        met: quick ? undefined : k >= 0.97 * b,
        measured: `${fmt(k)} vs ${fmt(b)} Gbit/s: ${((k / b - 1) * 100).toFixed(1)}%`,
      });
    }
    targets.push({
      target: 'request/response latency within 5% of a bare Linux bridge',
      met: quick ? undefined : latS[0]!.median <= 1.05 * latS[1]!.median,
      measured: `${fmt(latS[0]!.median)} vs ${fmt(latS[1]!.median)} µs: ${((latS[0]!.median / latS[1]!.median - 1) * 100).toFixed(1)}%`,
    });

    notes.push(`iperf3 TCP, ${seconds} s per run, ${reps} run(s) per cell, the three subjects interleaved within each repetition; the received rate is reported.`);
    notes.push(sockperf.path
      ? `Latency: sockperf ping-pong over TCP, ${Math.min(seconds, 5)} s per run; sockperf reports half the round trip; the cell is the median of the runs' medians.`
      : `Latency: ping -i 0.01, half the mean rtt (sockperf missing: ${sockperf.missing}).`);
    notes.push('CPU: busy share of all cores from /proc/stat over each iperf3 run (client, server and kernel together), as % of one core per Gbit/s.');
    notes.push('Knit\'s pair: two sandboxes on a Knit bridge network made through the daemon API (its `inet knit` nftables table in the host namespace: forward filter, masquerade, port maps; `table bridge knit`, which keeps frames bridged between its ports out of conntrack; and `table netdev knit`, the fast path: a unicast frame to another sandbox of the same network goes from one veth\'s ingress straight out of the other\'s, never through the bridge, br_netfilter or the inet hooks). The bare bridge: `ip link add type bridge` with no nftables at all. The floor: one veth pair, no bridge.');
    notes.push(`Knit's fast path in this run: ${fastpathState(pairs[0]!.host)}.`);
    notes.push(`Like with like: each subject in namespaces of its own, MTU 1500, veths with the kernel's default offloads and queues, no qdisc. br_netfilter: bridge-nf-call-iptables=${brnf(pairs[0]!.host)} in Knit's host namespace and ${brnf(pairs[1]!.host)} in the bare bridge's (per namespace; 1 wherever br_netfilter is built in or Docker loaded it): the bare bridge hands every bridged IPv4 frame to br_netfilter (its namespace has no inet hooks, so that is all it pays); Knit's namespace has inet hooks (conntrack, NAT, its forward chain), but its fast path keeps unicast between its sandboxes away from the bridge, br_netfilter and those hooks alike. The bare bridge is what a firewall-less host gets. Knit's ports also have hairpin on.`);
    notes.push('Issue 6 quotes about 17 Gbit/s (4 streams) and 13 Gbit/s (single stream) for a bare bridge on this machine.');
    if (quick) notes.push('Quick run: 2 s per run and one repetition, too short to judge 3% and 5% targets; they are not judged.');

    return {
      title: 'datapath: two sandboxes on one bridge network',
      tables: [
        {
          title: 'TCP throughput (iperf3)',
          unit: 'Gbit/s',
          subjects: SUBJECTS,
          rows: [
            { label: '1 stream', values: [0, 1, 2].map((pi) => gbps(0, pi)) },
            { label: '4 streams', values: [0, 1, 2].map((pi) => gbps(1, pi)) },
          ],
        },
        {
          title: 'Request/response latency',
          unit: 'µs',
          subjects: SUBJECTS,
          rows: [{ label: sockperf.path ? 'sockperf TCP ping-pong, median (RTT/2)' : 'ping, mean rtt / 2', values: latS }],
        },
        {
          title: 'CPU per Gbit/s (whole machine)',
          unit: '% of a core per Gbit/s',
          subjects: SUBJECTS,
          rows: [
            { label: '1 stream', values: [0, 1, 2].map((pi) => cpu(0, pi)) },
            { label: '4 streams', values: [0, 1, 2].map((pi) => cpu(1, pi)) },
          ],
        },
      ],
      targets,
      notes,
    };
  },
};

export default bench;
