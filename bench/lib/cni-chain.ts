// CNI plugins driven as a runtime drives them (libcni's order): one process
// per plugin and call, ADD in order with each plugin given the previous
// result, DEL in reverse with every plugin given the chain's ADD result, and
// runtimeConfig injected only into plugins that declare the capability.
// Every process runs inside a benchmark host namespace, so bridges, veths and
// iptables rules stay in there. The child is forked from inside a setns window
// rather than through nsenter, which would add its own ~4 ms to every call of
// every subject: a runtime in the host's namespace pays no such thing.
import { spawn } from 'node:child_process';
import { childEnv } from './host.ts';
import { nowMs } from './stats.ts';
import { withNetns } from '../../src/kernel/netns.ts';

export interface Exec {
  /** Spawn to exit, in ms: process start included. */
  ms: number;
  stdout: string;
}

/**
 * Runs `bin args` inside the namespace at hostNsPath with `input` on stdin;
 * rejects with its output unless it exits 0.
 */
export function execIn(hostNsPath: string, bin: string, args: string[], env: Record<string, string>, input: string): Promise<Exec> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const child = withNetns(hostNsPath, () => spawn(bin, args, { env: { ...childEnv(), ...env }, stdio: ['pipe', 'pipe', 'pipe'] }));
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const ms = nowMs() - t0;
      const stdout = Buffer.concat(out).toString('utf8');
      if (code === 0) return resolve({ ms, stdout });
      const what = `${bin} ${args.join(' ')}${env.CNI_COMMAND ? ` (CNI_COMMAND=${env.CNI_COMMAND} CNI_CONTAINERID=${env.CNI_CONTAINERID ?? ''})` : ''}`;
      reject(new Error(`${what} failed (${code ?? signal}): ${stdout.trim()} ${Buffer.concat(err).toString('utf8').trim()}`));
    });
    child.stdin.on('error', () => undefined); // a plugin may exit without reading stdin; 'close' reports it
    child.stdin.end(input);
  });
}

export interface Attachment {
  containerId: string;
  netns: string;
  ifname: string;
  /** One TCP port mapping hostPort -> 80, through runtimeConfig.portMappings. */
  hostPort?: number;
}

type Json = Record<string, unknown>;

/** A network configuration list: its plugins, the binaries they run, and the results of attachments made. */
export class Chain {
  readonly label: string;
  readonly hostNsPath: string;
  readonly name: string;
  readonly cniVersion: string;
  readonly plugins: { bin: string; conf: Json }[];
  readonly cniPath: string;
  private readonly results = new Map<string, unknown>();

  constructor(opts: { label: string; hostNsPath: string; name: string; cniVersion: string; plugins: { bin: string; conf: Json }[]; cniPath: string }) {
    this.label = opts.label;
    this.hostNsPath = opts.hostNsPath;
    this.name = opts.name;
    this.cniVersion = opts.cniVersion;
    this.plugins = opts.plugins;
    this.cniPath = opts.cniPath;
  }

  /** buildOneConfig: the list's name and version, runtimeConfig by capability, prevResult. */
  private confFor(p: Json, a: Attachment, prevResult: unknown): string {
    const conf: Json = { ...p, name: this.name, cniVersion: this.cniVersion };
    const caps = (p.capabilities ?? {}) as Record<string, boolean>;
    if (a.hostPort !== undefined && caps.portMappings) {
      conf.runtimeConfig = { portMappings: [{ hostPort: a.hostPort, containerPort: 80, protocol: 'tcp' }] };
    }
    if (prevResult !== undefined) conf.prevResult = prevResult;
    return JSON.stringify(conf);
  }

  private env(command: string, a: Attachment): Record<string, string> {
    return { CNI_COMMAND: command, CNI_CONTAINERID: a.containerId, CNI_NETNS: a.netns, CNI_IFNAME: a.ifname, CNI_PATH: this.cniPath };
  }

  /** ADD through the whole chain; returns the ms from the first spawn to the last exit. */
  async add(a: Attachment): Promise<number> {
    const t0 = nowMs();
    let prev: unknown;
    for (const p of this.plugins) {
      const r = await execIn(this.hostNsPath, p.bin, [], this.env('ADD', a), this.confFor(p.conf, a, prev));
      prev = JSON.parse(r.stdout) as unknown;
    }
    this.results.set(a.containerId, prev);
    return nowMs() - t0;
  }

  /** DEL in reverse, every plugin given the cached ADD result (libcni's cache, kept in memory here). */
  async del(a: Attachment): Promise<number> {
    const t0 = nowMs();
    const cached = this.results.get(a.containerId);
    for (const p of [...this.plugins].reverse()) {
      await execIn(this.hostNsPath, p.bin, [], this.env('DEL', a), this.confFor(p.conf, a, cached));
    }
    this.results.delete(a.containerId);
    return nowMs() - t0;
  }

  /** The result of the last ADD for this container. */
  result(containerId: string): unknown {
    return this.results.get(containerId);
  }
}

/** Runs fn(0..n-1) with at most `concurrency` in flight; returns the wall time in ms. */
export async function pool(n: number, concurrency: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return nowMs() - t0;
}
