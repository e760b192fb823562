// CNI plugins driven as a runtime drives them (libcni's order): one process
// per plugin and call, ADD in order with each plugin given the previous
// result, DEL in reverse with every plugin given the chain's ADD result, and
// runtimeConfig injected only into plugins that declare the capability.
// Every process runs inside a benchmark host namespace, so bridges, veths and
// iptables rules stay in there. A launcher on Bun, started once per
// namespace, forks them the way Go runtimes do (see launcher.ts); without
// bun, they are forked from a setns window of this thread (never through
// nsenter, whose own exec would add ~4 ms to every call of every subject).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { childEnv, ROOT } from './host.ts';
import { nowMs } from './stats.ts';
import { withNetns } from '../../src/kernel/netns.ts';
import { onCleanup } from './netns.ts';

export interface Exec {
  /** Spawn to exit, in ms: process start included. */
  ms: number;
  stdout: string;
}

const BUN = join(ROOT, 'node_modules', '.bin', 'bun');

/** How processes are started in this run, for the report. */
export function launcherKind(): string {
  return existsSync(BUN)
    ? 'Bun.spawn (posix_spawn, as Go runtimes fork) from a launcher process inside the host namespace'
    : "Node's child_process.spawn from a setns window (no bun here: ~2 ms more per process than a Go runtime pays)";
}

interface Reply {
  id: number;
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

class Launcher {
  #proc: ChildProcess;
  #next = 1;
  #waiting = new Map<number, (r: Reply) => void>();
  #buf = '';

  constructor(hostNsPath: string) {
    this.#proc = spawn('nsenter', [`--net=${hostNsPath}`, BUN, join(import.meta.dirname, 'launcher.ts')], { env: childEnv(), stdio: ['pipe', 'pipe', 'inherit'] });
    this.#proc.stdout?.on('data', (d: Buffer) => {
      this.#buf += d.toString('utf8');
      for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
        const r = JSON.parse(this.#buf.slice(0, nl)) as Reply;
        this.#buf = this.#buf.slice(nl + 1);
        this.#waiting.get(r.id)?.(r);
        this.#waiting.delete(r.id);
      }
    });
    onCleanup(() => void this.#proc.kill());
  }

  run(bin: string, args: string[], env: Record<string, string>, input: string): Promise<Reply> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#waiting.set(id, resolve);
      this.#proc.stdin?.write(`${JSON.stringify({ id, bin, args, env, input })}\n`);
    });
  }
}

const launchers = new Map<string, Launcher>();

/**
 * Runs `bin args` inside the namespace at hostNsPath with `input` on stdin;
 * rejects with its output unless it exits 0.
 */
export async function execIn(hostNsPath: string, bin: string, args: string[], env: Record<string, string>, input: string): Promise<Exec> {
  if (!existsSync(BUN)) return execFromNode(hostNsPath, bin, args, env, input);
  let l = launchers.get(hostNsPath);
  if (!l) launchers.set(hostNsPath, (l = new Launcher(hostNsPath)));
  const r = await l.run(bin, args, env, input);
  if (r.code === 0) return { ms: r.ms, stdout: r.stdout };
  throw new Error(`${describe(bin, args, env)} failed (${r.code}): ${r.stdout.trim()} ${r.stderr.trim()}`);
}

function describe(bin: string, args: string[], env: Record<string, string>): string {
  return `${bin} ${args.join(' ')}${env.CNI_COMMAND ? ` (CNI_COMMAND=${env.CNI_COMMAND} CNI_CONTAINERID=${env.CNI_CONTAINERID ?? ''})` : ''}`;
}

function execFromNode(hostNsPath: string, bin: string, args: string[], env: Record<string, string>, input: string): Promise<Exec> {
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
      reject(new Error(`${describe(bin, args, env)} failed (${code ?? signal}): ${stdout.trim()} ${Buffer.concat(err).toString('utf8').trim()}`));
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
  /** More environment for every plugin process (a runtime's own, such as KNIT_SOCKET). */
  readonly extraEnv: Record<string, string>;
  private readonly results = new Map<string, unknown>();

  constructor(opts: { label: string; hostNsPath: string; name: string; cniVersion: string; plugins: { bin: string; conf: Json }[]; cniPath: string; env?: Record<string, string> }) {
    this.label = opts.label;
    this.hostNsPath = opts.hostNsPath;
    this.name = opts.name;
    this.cniVersion = opts.cniVersion;
    this.plugins = opts.plugins;
    this.cniPath = opts.cniPath;
    this.extraEnv = opts.env ?? {};
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
    return { ...this.extraEnv, CNI_COMMAND: command, CNI_CONTAINERID: a.containerId, CNI_NETNS: a.netns, CNI_IFNAME: a.ifname, CNI_PATH: this.cniPath };
  }

  /** ADD through the whole chain; returns the sum of its processes' spawn-to-exit ms. */
  async add(a: Attachment): Promise<number> {
    let ms = 0;
    let prev: unknown;
    for (const p of this.plugins) {
      const r = await execIn(this.hostNsPath, p.bin, [], this.env('ADD', a), this.confFor(p.conf, a, prev));
      ms += r.ms;
      prev = JSON.parse(r.stdout) as unknown;
    }
    this.results.set(a.containerId, prev);
    return ms;
  }

  /** DEL in reverse, every plugin given the cached ADD result (libcni's cache, kept in memory here). */
  async del(a: Attachment): Promise<number> {
    let ms = 0;
    const cached = this.results.get(a.containerId);
    for (const p of [...this.plugins].reverse()) {
      ms += (await execIn(this.hostNsPath, p.bin, [], this.env('DEL', a), this.confFor(p.conf, a, cached))).ms;
    }
    this.results.delete(a.containerId);
    return ms;
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
