// scale: the time to add the N-th published port for N = 100, 1,000 and
// 10,000, and the TCP connection rate through a published port at each N.
// Both go through the daemon's API, the honest path: the N-th port is a
// sandbox created with one published port while N-1 others are published
// (fillers publish ranges of up to 1,000 ports each). Port maps are nftables
// map elements, so neither figure should grow with N.
import { spawnSync } from 'node:child_process';
import type { Benchmark, Report, Stat, Target } from './lib/types.ts';
import { startBenchHost, childEnv, type BenchHost } from './lib/host.ts';
import { RUN_TAG, inNs } from './lib/netns.ts';
import { stat } from './lib/stats.ts';
import { serveIn } from './lib/traffic.ts';
import { fmt } from './lib/table.ts';

const SERVER_PORT = 18080;
const PROBE_PORT = 18081;
const FILL_FROM = 30000;

/** Node one-liner: as many sequential-per-worker TCP connections as fit in `ms`, 8 workers; prints the count. */
function connectLoop(port: number, ms: number): string {
  return `const net=require('net');let n=0,err=0;const end=Date.now()+${ms};
function go(){if(Date.now()>=end)return;const s=net.connect(${port},'127.0.0.1');
s.on('data',()=>{});s.on('end',()=>{n++;s.destroy();go()});s.on('error',()=>{err++;s.destroy();go()})}
for(let i=0;i<8;i++)go();setTimeout(()=>{console.log(JSON.stringify({n,err}));process.exit(0)},${ms}+200)`;
}

function connectionRate(h: BenchHost, seconds: number): number {
  const r = spawnSync('nsenter', [`--net=${h.nsPath}`, process.execPath, '-e', connectLoop(SERVER_PORT, seconds * 1000)], {
    encoding: 'utf8',
    env: childEnv(),
    timeout: (seconds + 30) * 1000,
  });
  if (r.status !== 0) throw new Error(`connection loop failed (${r.status}): ${r.stderr}`);
  const { n, err } = JSON.parse(r.stdout) as { n: number; err: number };
  if (n === 0) throw new Error(`no connection through 127.0.0.1:${SERVER_PORT} succeeded (${err} errors)`);
  return n / seconds;
}

const bench: Benchmark = {
  name: 'scale',
  description: 'time to add the N-th published port and TCP connection rate through a published port, N = 100, 1,000, 10,000',
  peers: [],
  async run({ quick, log }): Promise<Report> {
    const Ns = [100, 1000, 10000];
    const probes = quick ? 5 : 15;
    const seconds = quick ? 1 : 3;
    const reps = quick ? 1 : 3;
    const h = await startBenchHost({ defaultBridge: false });
    await h.call('POST', '/v1/networks', { name: 'sc', driver: 'bridge', subnets: [{ subnet: '10.83.0.0/16' }], options: { bridge: `ks${RUN_TAG}` } });
    // Connections from 127.0.0.1 leave TIME_WAIT sockets behind; reuse them (this namespace only).
    inNs(h.nsPath, 'sysctl', ['-qw', 'net.ipv4.tcp_tw_reuse=1']);
    const srv = await h.call<{ netnsPath: string }>('POST', '/v1/sandboxes', {
      name: `${h.sandboxPrefix}srv`, networks: [{ network: 'sc', publish: [`${SERVER_PORT}:80`] }],
    });
    await serveIn(srv.netnsPath, process.execPath, ['-e', "require('net').createServer(s=>s.end('k')).listen(80)"]);
    connectionRate(h, 1); // warm-up, and proof the published port answers

    let published = 1;
    let fillers = 0;
    const addTimes: Stat[] = [];
    const fillTimes: number[] = [];
    const rates: Stat[] = [];
    for (const N of Ns) {
      log(`publishing ports up to ${N - 1}`);
      while (published < N - 1) {
        const k = Math.min(1000, N - 1 - published);
        const lo = FILL_FROM + published;
        const t0 = performance.now();
        await h.call('POST', '/v1/sandboxes', {
          name: `${h.sandboxPrefix}f${fillers++}`, networks: [{ network: 'sc', publish: [`${lo}-${lo + k - 1}:${lo}-${lo + k - 1}`] }],
        });
        fillTimes.push((performance.now() - t0) / k);
        published += k;
      }
      log(`N = ${N}: ${probes} sandboxes created with the N-th port, and removed`);
      const name = `${h.sandboxPrefix}p`;
      const samples: number[] = [];
      for (let i = 0; i < probes; i++) {
        const t0 = performance.now();
        await h.call('POST', '/v1/sandboxes', { name, networks: [{ network: 'sc', publish: [`${PROBE_PORT}:80`] }] });
        samples.push(performance.now() - t0);
        await h.call('DELETE', `/v1/sandboxes/${name}`);
      }
      addTimes.push(stat(samples));
      log(`N = ${N}: connection rate through 127.0.0.1:${SERVER_PORT}, ${reps} × ${seconds} s`);
      const r: number[] = [];
      for (let i = 0; i < reps; i++) r.push(connectionRate(h, seconds));
      rates.push(stat(r));
    }

    const subjects = Ns.map((n) => `N = ${n.toLocaleString('en-US')}`);
    const first = (x: Stat[]) => x[0]!.median;
    const last = (x: Stat[]) => x[x.length - 1]!.median;
    const targets: Target[] = [
      {
        target: 'adding the N-th published port does not grow with N (10,000 within 1.5× of 100)',
        met: last(addTimes) <= 1.5 * first(addTimes),
        measured: `${fmt(first(addTimes))} ms at 100, ${fmt(last(addTimes))} ms at 10,000`,
      },
      {
        target: 'TCP connection rate through a published port does not fall with N (10,000 within 20% of 100)',
        met: last(rates) >= 0.8 * first(rates),
        measured: `${fmt(first(rates))}/s at 100, ${fmt(last(rates))}/s at 10,000`,
      },
    ];
    return {
      title: 'scale: published ports, N = 100 to 10,000',
      tables: [
        {
          title: 'Time to add the N-th published port (a sandbox created with one port, through the API)',
          unit: 'ms',
          subjects,
          rows: [{ label: `create sandbox + 1 port, ${probes} samples`, values: addTimes }],
        },
        {
          title: 'TCP connection rate through a published port (127.0.0.1, 8 concurrent clients)',
          unit: 'connections/s',
          subjects,
          rows: [{ label: `${reps} × ${seconds} s`, values: rates }],
        },
      ],
      targets,
      notes: [
        'Path: the daemon API. The N-th port is published by creating a sandbox with `--publish 18081:80` while N-1 ports are already published; its creation (namespace, veth, addresses, nftables elements, store) is timed, its removal is not. Ratios here are N = 100 over the larger N: a ratio near 1 means no growth.',
        `Filler ports were published as ranges of up to 1,000 per sandbox: ${fmt(stat(fillTimes).median)} ms per port at the median (${fillers} filler sandboxes).`,
        'Connections: a Node client in the host namespace, 8 connections at a time, each opening 127.0.0.1:18080 (DNAT by the `inet knit` port map to a Node server in a sandbox), reading its reply to the end and closing.',
        'No peer: netavark and Docker add one iptables rule set per port mapping, so this is Knit against its own N = 100.',
      ],
    };
  },
};

export default bench;
