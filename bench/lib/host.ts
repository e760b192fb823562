// A Knit daemon on a throwaway "host": its own network namespace, socket and
// state directory (as test/helpers/daemon.ts does for tests, without
// node:test's hooks). Sandboxes it makes live in /run/netns under a prefix
// unique to the host, so `ip netns exec` reaches them and cleanup finds them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'node:http';
import { makeNetns, onCleanup, removeNetnsWithPrefix, uniqueName } from './netns.ts';
import { sleep } from './stats.ts';
import { sweepSpareDirs } from '../../src/lib/spare-dirs.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const KNIT = join(ROOT, 'bin/knit');

export interface ApiReply<T> {
  status: number;
  body: T;
}

export interface BenchHost {
  ns: string;
  nsPath: string;
  socket: string;
  stateDir: string;
  /** Prefix to give sandbox names: their namespaces are /run/netns/<name>. */
  sandboxPrefix: string;
  pid(): number | undefined;
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiReply<T>>;
  /** api(), throwing with the error body unless the status is 2xx. */
  call<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  /** VmRSS of the daemon in MiB. */
  rssMiB(): number;
  stop(): Promise<void>;
  log(): string;
}

/** Environment for child processes: Node 20 pays ~45 ms per start with NODE_EXTRA_CA_CERTS set. */
export function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_EXTRA_CA_CERTS;
  return env;
}

export async function startBenchHost(opts: { defaultBridge?: boolean; /** Extra `knit daemon` arguments. */ daemonArgs?: string[] } = {}): Promise<BenchHost> {
  const { name: ns, path: nsPath } = makeNetns('kntbh');
  const stateDir = mkdtempSync(join(tmpdir(), 'knit-bench-'));
  const socket = join(stateDir, 'knit.sock');
  const sandboxPrefix = uniqueName('kntbs').slice(0, 10);
  let output = '';
  const args = [
    `--net=${nsPath}`, KNIT, 'daemon', '--socket', socket, '--state-dir', stateDir,
    // Sandbox files go where a deployed daemon puts them (/etc/netns; the names are unique to this run).
    // A dir under /tmp would measure that dir's inode allocation: on this VM 0.8-1.2 ms of CPU per
    // file there, against 0.02-0.05 ms in /etc/netns or /run/netns.
    '--run-dir', join(stateDir, 'run'), '--no-docker-plugin',
  ];
  if (opts.defaultBridge === false) args.push('--no-default-bridge');
  args.push(...(opts.daemonArgs ?? []));
  const proc: ChildProcess = spawn('nsenter', args, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));

  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const done = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(timer);
  };
  onCleanup(() => rmSync(stateDir, { recursive: true, force: true }));
  onCleanup(() => removeNetnsWithPrefix(sandboxPrefix));
  // A daemon that had to be killed leaves its spare /etc/netns dirs behind.
  onCleanup(() => sweepSpareDirs('/etc/netns'));
  onCleanup(stop);

  const api = <T>(method: string, path: string, body?: unknown) => apiCall<T>(socket, method, path, body);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`knit daemon exited (${proc.exitCode}) before it was ready:\n${output}`);
    if (Date.now() > deadline) throw new Error(`knit daemon not ready after 30 s:\n${output}`);
    if (existsSync(socket)) {
      try {
        if ((await api('GET', '/v1/version')).status === 200) break;
      } catch {
        // not listening yet
      }
    }
    await sleep(50);
  }

  const daemonPid = (): number | undefined => {
    // nsenter execs the daemon (same pid) unless it forked; `knit` itself may exec node.
    const r = spawnSync('pgrep', ['-P', String(proc.pid)], { encoding: 'utf8' });
    const child = r.stdout.trim().split('\n').filter(Boolean).map(Number)[0];
    return child ?? proc.pid;
  };

  return {
    ns,
    nsPath,
    socket,
    stateDir,
    sandboxPrefix,
    pid: daemonPid,
    api,
    async call<T>(method: string, path: string, body?: unknown): Promise<T> {
      let r: ApiReply<T>;
      try {
        r = await api<T>(method, path, body);
      } catch (err) {
        const dead = proc.exitCode !== null || proc.signalCode !== null;
        throw new Error(`${method} ${path}: ${(err as Error).message}${dead ? `; the daemon exited (${proc.exitCode ?? proc.signalCode}):\n${output.slice(-3000)}` : ''}`, { cause: err });
      }
      if (r.status < 200 || r.status >= 300) throw new Error(`${method} ${path} -> ${r.status}: ${JSON.stringify(r.body)}`);
      return r.body;
    },
    rssMiB() {
      const pid = daemonPid();
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? NaN);
      return kb / 1024;
    },
    stop,
    log: () => output,
  };
}

export function apiCall<T>(socket: string, method: string, path: string, body?: unknown): Promise<ApiReply<T>> {
  return new Promise((resolvePromise, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        socketPath: socket,
        agent: false, // a fresh connection each time: a kept-alive one may be closed by the server while idle (EPIPE)
        method,
        path,
        headers: text ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          try {
            resolvePromise({ status: res.statusCode ?? 0, body: (raw ? JSON.parse(raw) : undefined) as T });
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}
