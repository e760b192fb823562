// Traffic generators inside namespaces: iperf3 for throughput, sockperf for
// request/response latency, /proc/stat for the CPU they cost. Servers are
// started in the background and stopped by pid at cleanup.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { onCleanup } from './netns.ts';
import { sleep } from './stats.ts';

/** Starts `cmd args` inside the namespace at nsPath; stopped at cleanup. */
export async function serveIn(nsPath: string, cmd: string, args: string[], settleMs = 300): Promise<ChildProcess> {
  const p = spawn('nsenter', [`--net=${nsPath}`, cmd, ...args], { stdio: 'ignore' });
  onCleanup(() => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  });
  await sleep(settleMs);
  if (p.exitCode !== null) throw new Error(`${cmd} ${args.join(' ')} in ${nsPath} exited at once (${p.exitCode})`);
  return p;
}

interface CpuTimes {
  busy: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  // cpu user nice system idle iowait irq softirq steal ...
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

export interface Throughput {
  gbps: number;
  /** CPU busy during the run, in cores (0..nproc), whole machine. */
  cores: number;
}

/** iperf3 TCP from client namespace to server ip: Gbit/s received and the machine's CPU meanwhile. */
export function iperf(clientNs: string, serverIp: string, seconds: number, streams: number, port = 5201): Throughput {
  const before = cpuTimes();
  const r = spawnSync('nsenter', [`--net=${clientNs}`, 'iperf3', '-c', serverIp, '-p', String(port), '-t', String(seconds), '-P', String(streams), '-J'], {
    encoding: 'utf8',
    timeout: (seconds + 30) * 1000,
    maxBuffer: 64 << 20,
  });
  const after = cpuTimes();
  if (r.status !== 0) throw new Error(`iperf3 -c ${serverIp} failed (${r.status}): ${r.stdout.slice(-500)} ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  const share = (after.busy - before.busy) / Math.max(1, after.total - before.total);
  return { gbps: j.end.sum_received.bits_per_second / 1e9, cores: share * cpus().length };
}

/** sockperf TCP ping-pong for `seconds`: its median latency in µs (sockperf reports half the round trip). */
export function pingPong(clientNs: string, serverIp: string, seconds: number, port = 11111): number {
  const r = spawnSync('nsenter', [`--net=${clientNs}`, 'sockperf', 'ping-pong', '--tcp', '-i', serverIp, '-p', String(port), '-t', String(seconds)], {
    encoding: 'utf8',
    timeout: (seconds + 30) * 1000,
  });
  const out = `${r.stdout}${r.stderr}`;
  const m = /percentile 50\.000 =\s*([\d.]+)/.exec(out);
  if (r.status !== 0 || !m) throw new Error(`sockperf ping-pong to ${serverIp} failed (${r.status}): ${out.slice(-500)}`);
  return Number(m[1]);
}

/** ping -i 0.01 fallback: half the mean rtt in µs, comparable with sockperf's figure. */
export function pingRtt(clientNs: string, serverIp: string, count: number): number {
  const r = spawnSync('nsenter', [`--net=${clientNs}`, 'ping', '-c', String(count), '-i', '0.01', '-q', serverIp], { encoding: 'utf8' });
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  if (r.status !== 0 || !m) throw new Error(`ping ${serverIp} failed (${r.status}): ${r.stdout}${r.stderr}`);
  return (Number(m[1]) * 1000) / 2; // ping prints no median
}
