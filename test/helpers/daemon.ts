// A Knit daemon on a throwaway "host": its own network namespace (entered
// with nsenter, so its bind mounts stay visible), socket and state directory.
// Sandboxes go to /run/netns with the test's unique prefix so `ip netns exec`
// works on them. Everything is removed when the test file ends.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'node:http';
import { after } from 'node:test';
import { makeNetns, removeNetns, sh } from './netns.ts';
import { RETIRED_GROUP } from '../../src/engine/host.ts';
import { sweepSpareDirs } from '../../src/lib/spare-dirs.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const KNIT = join(ROOT, 'bin/knit');

export interface KnitResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface TestHost {
  ns: string;
  nsPath: string;
  socket: string;
  stateDir: string;
  log: () => string;
  /** Runs the knit CLI against this daemon (from the root namespace, as a user would). */
  knit(...args: string[]): KnitResult;
  /** Parses `knit ... --format json`; throws with stderr on failure. */
  json<T = unknown>(...args: string[]): T;
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  start(): Promise<void>;
  stop(): Promise<void>;
  kill9(): void;
  /** Runs a command inside the host namespace. */
  inHost(cmd: string, ...args: string[]): string;
  /**
   * Waits until the daemon has deleted the links it retired (they go in
   * batches, shortly after a detach returns): then the kernel shows what stays.
   */
  settle(): Promise<void>;
}

const hosts: TestHost[] = [];

export async function startTestHost(opts: { defaultBridge?: boolean; /** Extra `knit daemon` arguments. */ daemonArgs?: string[] } = {}): Promise<TestHost> {
  const { name: ns, path: nsPath } = makeNetns('knth');
  const stateDir = mkdtempSync(join(tmpdir(), 'knit-test-'));
  const socket = join(stateDir, 'knit.sock');
  let proc: ChildProcess | undefined;
  let output = '';
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;

  const host: TestHost = {
    ns,
    nsPath,
    socket,
    stateDir,
    log: () => output,
    knit(...args) {
      const r = spawnSync(KNIT, ['--socket', socket, ...args], { encoding: 'utf8', env });
      return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
    },
    json<T>(...args: string[]): T {
      const r = host.knit(...args, '--format', 'json');
      if (r.code !== 0) throw new Error(`knit ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
      return JSON.parse(r.stdout) as T;
    },
    api(method, path, body) {
      return apiCall(socket, method, path, body);
    },
    async start() {
      const args = ['--net=' + nsPath, KNIT, 'daemon', '--socket', socket, '--state-dir', stateDir, '--run-dir', join(stateDir, 'run')];
      if (opts.defaultBridge === false) args.push('--no-default-bridge');
      args.push(...(opts.daemonArgs ?? []));
      proc = spawn('nsenter', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
      proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<never>((_, reject) =>
        proc?.once('exit', (code) => reject(new Error(`daemon exited (${code}) before it was ready:\n${output}`))),
      );
      const ready = (async () => {
        for (;;) {
          if (existsSync(socket)) {
            try {
              const r = await apiCall(socket, 'GET', '/v1/version');
              if (r.status === 200) return;
            } catch {
              // not listening yet
            }
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await Promise.race([ready, exited]);
      proc.removeAllListeners('exit');
    },
    async stop() {
      const p = proc;
      if (!p || p.exitCode !== null) return;
      const done = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await done;
      proc = undefined;
    },
    kill9() {
      proc?.kill('SIGKILL');
      proc = undefined;
    },
    async settle() {
      for (let i = 0; i < 500; i++) {
        if (host.inHost('ip', '-o', 'link', 'show', 'group', String(RETIRED_GROUP)).trim() === '') return;
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    inHost(cmd, ...args) {
      return sh('nsenter', ['--net=' + nsPath, cmd, ...args]);
    },
  };
  hosts.push(host);
  await host.start();
  return host;
}

after(async () => {
  for (const h of hosts) {
    await h.stop().catch(() => undefined);
    h.kill9();
    // Sandboxes the test made live in /run/netns under the test's prefix.
    removeNetns(h.ns);
    rmSync(h.stateDir, { recursive: true, force: true });
  }
  // A daemon killed with -9 leaves its spare /etc/netns dirs; a start would sweep them, so the tests do.
  sweepSpareDirs('/etc/netns');
});

/**
 * Removes every /run/netns entry starting with prefix (sandboxes a test
 * created), and their /etc/netns files (the daemon writes resolv.conf and hosts there).
 */
export function removeNetnsWithPrefix(prefix: string): void {
  if (existsSync('/etc/netns')) {
    for (const n of readdirSync('/etc/netns')) if (n.startsWith(prefix)) rmSync(join('/etc/netns', n), { recursive: true, force: true });
  }
  if (!existsSync('/run/netns')) return;
  for (const n of readdirSync('/run/netns')) if (n.startsWith(prefix)) removeNetns(n);
}

export function apiCall<T>(socket: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  return new Promise((resolvePromise, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      { socketPath: socket, method, path, headers: text ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          resolvePromise({ status: res.statusCode ?? 0, body: (raw ? JSON.parse(raw) : undefined) as T });
        });
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

/** Runs a command in a sandbox namespace (by /run/netns name) and returns its status. */
export function inNs(ns: string, cmd: string, ...args: string[]): { code: number; out: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: 20000 });
  return { code: r.status ?? 1, out: `${r.stdout}${r.stderr}` };
}

export function ping(ns: string, ip: string): boolean {
  return inNs(ns, 'ping', '-c', '1', '-W', '2', ip).code === 0;
}

export { sh };
