// dns: queries per second of Knit's embedded DNS server, measured with
// dnsperf from inside a sandbox, beside aardvark-dns serving the same names
// to the same client in the same namespace (its config dir: one file per
// network). Two names: a Knit name (answered locally) and a forwarded one,
// relayed by both servers to the same test upstream in its own namespace
// (no query leaves the machine). Then p99 latency at half of each server's
// rate. Runs from `npm run bench -- dns` or on its own: `node bench/dns.ts [--quick]`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Benchmark, Report, Stat, Target } from './lib/types.ts';
import { startBenchHost, childEnv, ROOT } from './lib/host.ts';
import { ipIn, makeNetns, onCleanup, runCleanups, uniqueName } from './lib/netns.ts';
import { ensurePeer } from './lib/peers.ts';
import { fmt, toMarkdown } from './lib/table.ts';
import { one, stat, sleep } from './lib/stats.ts';
import type { SandboxView } from '../src/model/api.ts';

const SUBNET = '10.77.0.0/24';
const GATEWAY = '10.77.0.1';
const UPSTREAM = '10.199.0.2';
const FORWARDED = 'forwarded.bench.example';
const FORWARDED_IP = '198.51.100.9';
const AARDVARK_PORT = 5354;

interface PerfResult {
  qps: number;
  lost: number;
  sent: number;
  /** dnsperf's own average latency. */
  avgMs: number;
  /** Per-query latencies in ms, only with verbose runs. */
  latencies: number[];
}

/** Runs dnsperf inside the client sandbox; `rate` caps queries per second (and records each latency). */
function dnsperf(clientNs: string, port: number, name: string, seconds: number, rate?: number): PerfResult {
  const dir = mkdtempSync(join(tmpdir(), 'knit-bench-dns-'));
  try {
    const data = join(dir, 'q');
    writeFileSync(data, `${name} A\n`);
    // Paced runs use one client and few outstanding queries, so a latency is the server's, not a queue's.
    const load = rate === undefined ? ['-c', '8', '-q', '256'] : ['-c', '1', '-q', '32', '-Q', String(rate), '-v'];
    const args = [`--net=${clientNs}`, 'dnsperf', '-s', GATEWAY, '-p', String(port), '-d', data, '-l', String(seconds), '-T', '1', '-t', '2', ...load];
    const r = spawnSync('nsenter', args, { encoding: 'utf8', maxBuffer: 1 << 30, env: childEnv() });
    if (r.status !== 0) throw new Error(`dnsperf failed (${r.status}): ${r.stderr}${r.stdout.slice(-2000)}`);
    const out = r.stdout;
    const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
    const latencies: number[] = [];
    if (rate !== undefined) {
      // Verbose lines: "> NOERROR name A 0.000123" (the latency in seconds is the last field).
      for (const line of out.split('\n')) {
        if (!line.startsWith('> ')) continue;
        const s = Number(line.slice(line.lastIndexOf(' ') + 1));
        if (Number.isFinite(s)) latencies.push(s * 1000);
      }
    }
    return {
      qps: num(/Queries per second:\s+([\d.]+)/),
      lost: num(/Queries lost:\s+(\d+)/),
      sent: num(/Queries sent:\s+(\d+)/),
      avgMs: num(/Average Latency \(s\):\s+([\d.]+)/) * 1000,
      latencies,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `start` (which spawns the daemon before its first await) with
 * KNIT_FROM_SOURCE set: the launcher would otherwise run the dist/ bundle,
 * which may predate the server being measured.
 */
function fromSource<T>(start: () => Promise<T>): Promise<T> {
  const saved = process.env.KNIT_FROM_SOURCE;
  process.env.KNIT_FROM_SOURCE = '1';
  try {
    return start();
  } finally {
    if (saved === undefined) delete process.env.KNIT_FROM_SOURCE;
    else process.env.KNIT_FROM_SOURCE = saved;
  }
}

function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** Waits until a child prints a line (its "ready"). */
function readyLine(p: ChildProcess, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    p.stdout?.on('data', () => resolve());
    p.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready`)));
  });
}

const bench: Benchmark = {
  name: 'dns',
  description: 'embedded DNS: queries/s for a Knit name and a forwarded name (dnsperf) beside aardvark-dns; p99 at half load',
  peers: ['aardvark-dns'],
  async run({ quick, log }): Promise<Report> {
    const seconds = quick ? 3 : 10;
    const rounds = quick ? 1 : 3;
    const notes: string[] = [];
    const perf = ensurePeer('dnsperf', 'dnsperf', log);
    if (perf.path === undefined) throw new Error(perf.missing);
    const aardvark = ensurePeer('/usr/lib/podman/aardvark-dns', 'aardvark-dns', log);

    // The upstream both servers relay to: its own namespace, reached over a veth from the daemon's.
    log('starting the test upstream');
    const up = makeNetns('kntbu');
    ipIn(up.name, 'addr', 'add', `${UPSTREAM}/32`, 'dev', 'lo');
    const upstream = spawn('nsenter', [`--net=${up.path}`, process.execPath, join(ROOT, 'bench/lib/dns-upstream.ts'), UPSTREAM, FORWARDED_IP], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: childEnv(),
    });
    onCleanup(() => void upstream.kill());
    await readyLine(upstream, 'the test upstream');

    log('starting a Knit daemon in a throwaway namespace');
    const h = await fromSource(() => startBenchHost({ defaultBridge: false, daemonArgs: ['--dns', UPSTREAM] }));
    const [va, vb] = [uniqueName('kntbv'), uniqueName('kntbv')];
    ipIn(h.ns, 'link', 'add', va, 'type', 'veth', 'peer', 'name', vb, 'netns', up.name);
    ipIn(h.ns, 'addr', 'add', '10.199.1.1/30', 'dev', va);
    ipIn(h.ns, 'link', 'set', va, 'up');
    ipIn(up.name, 'addr', 'add', '10.199.1.2/30', 'dev', vb);
    ipIn(up.name, 'link', 'set', vb, 'up');
    ipIn(h.ns, 'route', 'add', `${UPSTREAM}/32`, 'via', '10.199.1.2');

    await h.call('POST', '/v1/networks', { name: 'bench', driver: 'bridge', subnets: [{ subnet: SUBNET }] });
    const svc = await h.call<SandboxView>('POST', '/v1/sandboxes', { name: `${h.sandboxPrefix}svc`, networks: [{ network: 'bench', aliases: ['svc-alias'] }] });
    const cli = await h.call<SandboxView>('POST', '/v1/sandboxes', { name: `${h.sandboxPrefix}cli`, networks: [{ network: 'bench' }] });
    const addr = (s: SandboxView) => (s.endpoints[0]?.ipv4 ?? '').split('/')[0] as string;

    // aardvark-dns: the same network, containers and upstream, on another port of the same gateway.
    let aardvarkUp = false;
    if (aardvark.path !== undefined) {
      const cfg = mkdtempSync(join(tmpdir(), 'knit-bench-aardvark-'));
      onCleanup(() => rmSync(cfg, { recursive: true, force: true }));
      writeFileSync(
        join(cfg, 'bench'),
        [`${GATEWAY} ${UPSTREAM}`, `${svc.id} ${addr(svc)}  ${svc.name},svc-alias`, `${cli.id} ${addr(cli)}  ${cli.name}`, ''].join('\n'),
      );
      // It forks into the background and leaves its pid in the config dir.
      const r = spawnSync('nsenter', [`--net=${h.nsPath}`, aardvark.path, '--config', cfg, '-p', String(AARDVARK_PORT), 'run'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`aardvark-dns failed to start (${r.status}): ${r.stderr}`);
      onCleanup(() => {
        const pid = Number(readFileSync(join(cfg, 'aardvark.pid'), 'utf8').trim());
        if (pid > 0) process.kill(pid, 'SIGTERM');
      });
      await sleep(300);
      aardvarkUp = true;
    } else {
      notes.push(`aardvark-dns missing: ${aardvark.missing}`);
    }

    // Correctness first: both servers must answer both names before their rates mean anything.
    for (const [who, port] of [['Knit', 53], ...(aardvarkUp ? [['aardvark-dns', AARDVARK_PORT]] : [])] as [string, number][]) {
      for (const [name, want] of [[svc.name, addr(svc)], [FORWARDED, FORWARDED_IP]]) {
        const r = spawnSync('nsenter', [`--net=${cli.netnsPath}`, 'dig', '+short', '+time=2', '+tries=2', `@${GATEWAY}`, '-p', String(port), name!], { encoding: 'utf8' });
        if (r.stdout.trim() !== want) throw new Error(`${who} answered '${r.stdout.trim()}' for ${name}, not ${want}`);
      }
    }

    const runs = (port: number, name: string): { qps: number[]; lost: number } => {
      const qps: number[] = [];
      let lost = 0;
      for (let i = 0; i < rounds; i++) {
        const r = dnsperf(cli.netnsPath, port, name, seconds);
        qps.push(r.qps);
        lost += r.lost;
      }
      return { qps, lost };
    };
    log(`Knit: ${rounds} × ${seconds} s per name`);
    const kLocal = runs(53, svc.name);
    const kFwd = runs(53, FORWARDED);
    log(`aardvark-dns: ${rounds} × ${seconds} s per name`);
    const aLocal = aardvarkUp ? runs(AARDVARK_PORT, svc.name) : undefined;
    const aFwd = aardvarkUp ? runs(AARDVARK_PORT, FORWARDED) : undefined;

    // p99 at half of each server's own local-name rate, every latency recorded.
    log('latency at half load');
    const half = (q: number[]) => Math.max(1000, Math.round(stat(q).median / 2));
    const kLat = dnsperf(cli.netnsPath, 53, svc.name, seconds, half(kLocal.qps));
    const aLat = aLocal === undefined ? undefined : dnsperf(cli.netnsPath, AARDVARK_PORT, svc.name, seconds, half(aLocal.qps));

    const s = (x: { qps: number[] } | undefined): Stat | undefined => (x === undefined ? undefined : stat(x.qps));
    const lat = (r: PerfResult | undefined, p: number): Stat | undefined => (r === undefined || r.latencies.length === 0 ? undefined : one(percentile(r.latencies, p)));
    const kq = stat(kLocal.qps).median;
    const aq = aLocal === undefined ? undefined : stat(aLocal.qps).median;
    const kp99 = percentile(kLat.latencies, 99);
    const targets: Target[] = [
      { target: 'at least 50,000 queries/s for a Knit name on this 2-core machine', met: quick ? undefined : kq >= 50_000, measured: `${fmt(kq)} queries/s` },
      {
        target: "at least aardvark-dns's rate",
        met: aq === undefined || quick ? undefined : kq >= aq,
        measured: aq === undefined ? 'aardvark-dns not measured' : `Knit ${fmt(kq)} vs aardvark-dns ${fmt(aq)} queries/s (${(kq / aq).toFixed(2)}×)`,
      },
      {
        target: 'p99 latency under 1 ms at half that load',
        met: quick ? undefined : kp99 < 1,
        measured: `p99 ${fmt(kp99)} ms at ${fmt(half(kLocal.qps))} queries/s (${kLat.latencies.length} queries)`,
      },
    ];
    notes.push(
      `dnsperf ${seconds} s per run, ${rounds} run(s) per cell, 8 clients, 256 outstanding, from a sandbox on the same bridge; one A question repeated.`,
      `Both servers listen on the bridge gateway ${GATEWAY} in the daemon's namespace (aardvark-dns on port ${AARDVARK_PORT}), know the same two sandboxes, and relay other names to the same upstream (a minimal Node.js responder in its own namespace, over a veth).`,
      `Queries lost (Knit/aardvark-dns): local ${kLocal.lost}/${aLocal?.lost ?? '—'}, forwarded ${kFwd.lost}/${aFwd?.lost ?? '—'}.`,
      'Knit answers with TTL 5 s (aardvark-dns 60 s); neither caches forwarded answers, so the forwarded rate includes the upstream.',
    );
    return {
      title: 'Embedded DNS',
      tables: [
        {
          title: 'Throughput (dnsperf, A queries)',
          unit: 'queries/s',
          subjects: ['Knit', 'aardvark-dns'],
          rows: [
            { label: 'Knit name (local answer)', values: [s(kLocal), s(aLocal)] },
            { label: `forwarded name (${FORWARDED})`, values: [s(kFwd), s(aFwd)] },
          ],
        },
        {
          title: "Latency at half of each server's local rate",
          unit: 'ms',
          subjects: ['Knit', 'aardvark-dns'],
          rows: [
            { label: 'average (dnsperf)', values: [one(kLat.avgMs), aLat === undefined ? undefined : one(aLat.avgMs)] },
            { label: 'p50', values: [lat(kLat, 50), lat(aLat, 50)] },
            { label: 'p90', values: [lat(kLat, 90), lat(aLat, 90)] },
            { label: 'p99', values: [lat(kLat, 99), lat(aLat, 99)] },
            { label: 'p99.9', values: [lat(kLat, 99.9), lat(aLat, 99.9)] },
          ],
        },
      ],
      targets,
      notes,
    };
  },
};

export default bench;

// On its own: `node bench/dns.ts [--quick]` prints the report as Markdown.
if (import.meta.main) {
  const quick = process.argv.includes('--quick');
  try {
    const report = await bench.run({ quick, log: (m) => process.stderr.write(`  · ${m}\n`) });
    process.stdout.write(toMarkdown(report, [`- run: \`node bench/dns.ts${quick ? ' --quick' : ''}\``]));
  } finally {
    await runCleanups();
  }
}
