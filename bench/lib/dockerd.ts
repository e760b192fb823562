// A real dockerd (Debian's docker.io) and a Knit daemon serving Docker's
// plugin socket, both in one throwaway network namespace, for benchmarks.
// The same arrangement as test/docker/harness.ts, without node:test's hooks:
// dockerd gets its own --data-root, --exec-root, --pidfile, API socket and
// containerd namespaces, so its iptables rules, bridges and containers live
// and die in that namespace. Everything is undone by the cleanups
// (lib/netns.ts), on failure too.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { apiCall, childEnv, KNIT, type ApiReply } from './host.ts';
import { makeNetns, onCleanup } from './netns.ts';
import { ensurePeer } from './peers.ts';
import { nowMs, sleep } from './stats.ts';
import { busyboxRootfsTar, dockerdArgs, PLUGIN_DIR, PLUGIN_SOCKET } from '../../test/helpers/dockerd.ts';

/** dockerd looks for legacy plugins' sockets here and nowhere else. */
export { PLUGIN_DIR, PLUGIN_SOCKET };
export const IMAGE = 'knit-busybox:bench';

export interface Run {
  code: number;
  out: string;
  err: string;
}

export interface DockerBench {
  ns: string;
  nsPath: string;
  dir: string;
  /** dockerd's API socket. */
  dockerSocket: string;
  /** The docker CLI used (Debian's, matching dockerd, when present). */
  dockerCli: string;
  docker(...args: string[]): Run;
  /** docker ..., throwing with stderr (and Knit's log) when it fails. */
  ok(...args: string[]): string;
  /** An Engine API call on dockerd's socket, without the CLI. */
  engine<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiReply<T>>;
  /** A call on Knit's daemon API. */
  knit<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiReply<T>>;
  knitLog(): string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env, timeout: 120_000 });
  return { code: r.status ?? 1, out: r.stdout ?? '', err: `${r.stderr ?? ''}${r.error ? r.error.message : ''}` };
}

/** Finds dockerd and busybox, installing docker.io / busybox-static when missing; a reason when they cannot be had. */
export function dockerMissing(log: (m: string) => void): string | undefined {
  const dockerd = ensurePeer('dockerd', 'docker.io', log);
  if (!dockerd.path) return dockerd.missing;
  const busybox = ensurePeer('busybox', 'busybox-static', log);
  if (!busybox.path) return busybox.missing;
  return undefined;
}

/** Another Knit daemon (a docker test, say) already answers on the one socket dockerd looks at. */
function pluginSocketTaken(): boolean {
  if (!existsSync(PLUGIN_SOCKET)) return false;
  const r = spawnSync('curl', ['-s', '-m', '2', '--unix-socket', PLUGIN_SOCKET, '-X', 'POST', 'http://x/Plugin.Activate'], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.includes('Implements');
}

async function waitFor(ready: () => boolean | Promise<boolean>, proc: ChildProcess, why: () => string, seconds = 60): Promise<void> {
  const deadline = nowMs() + seconds * 1000;
  while (nowMs() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(why());
    if (await ready()) return;
    await sleep(100);
  }
  throw new Error(`after ${seconds} s: ${why()}`);
}

async function stopProcess(p: ChildProcess, graceMs: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

/**
 * Starts dockerd, then Knit's daemon (from source, so it is the working
 * tree's code) in the same namespace, and imports a busybox image.
 */
export async function startDockerBench(log: (m: string) => void): Promise<DockerBench> {
  if (pluginSocketTaken()) throw new Error(`${PLUGIN_SOCKET} is served by another Knit daemon (a docker test running?); dockerd would find that one: run again when it is done`);
  const dockerCli = ['/usr/bin/docker', '/usr/local/bin/docker'].find((p) => existsSync(p)) ?? 'docker';
  const { name: ns, path: nsPath } = makeNetns('kntbd');
  const dir = mkdtempSync(join(tmpdir(), 'knit-bench-docker-'));
  // Last registered, first run: the mounts go after both daemons have stopped.
  onCleanup(() => {
    spawnSync('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
  const knitState = join(dir, 'knit');
  const knitSock = join(knitState, 'knit.sock');
  const dockerSocket = join(dir, 'docker.sock');
  const env: NodeJS.ProcessEnv = { ...childEnv(), DOCKER_HOST: `unix://${dockerSocket}`, KNIT_FROM_SOURCE: '1' };

  log(`starting dockerd in namespace ${ns}`);
  // Should this process die without its cleanups, dockerd goes with it (setpriv --pdeathsig).
  const dockerd = spawn('nsenter', dockerdArgs({ nsPath, ns, dir, socket: dockerSocket }), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let dlog = '';
  dockerd.stderr?.on('data', (d: Buffer) => (dlog = (dlog + d.toString()).slice(-4000)));
  const stopDockerd = async (): Promise<void> => {
    if (dockerd.exitCode === null && dockerd.signalCode === null) {
      // Containers first, then networks: Knit's endpoints and bridges go through the plugin while it still runs.
      run('sh', ['-c', `${dockerCli} ps -aq | xargs -r ${dockerCli} rm -f >/dev/null 2>&1; ${dockerCli} network prune -f >/dev/null 2>&1`], env);
    }
    await stopProcess(dockerd, 20_000);
  };
  onCleanup(stopDockerd);
  const docker = (...args: string[]) => run(dockerCli, args, env);
  await waitFor(() => existsSync(dockerSocket) && docker('version', '--format', '{{.Server.Version}}').code === 0, dockerd, () => `dockerd did not start:\n${dlog}`);

  // After dockerd, as on a host where Docker came first (FORWARD policy DROP).
  log('starting a Knit daemon beside it, serving the docker plugin socket');
  mkdirSync(knitState, { recursive: true });
  let knitOut = '';
  const knit = spawn(
    'nsenter',
    [
      `--net=${nsPath}`, 'setpriv', '--pdeathsig', 'TERM',
      KNIT, 'daemon', '--socket', knitSock, '--state-dir', knitState, '--run-dir', join(knitState, 'run'),
      '--etc-netns-dir', join(knitState, 'etc-netns'), '--no-default-bridge', '--docker-plugin-dir', PLUGIN_DIR,
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  knit.stdout?.on('data', (d: Buffer) => (knitOut = (knitOut + d.toString()).slice(-20_000)));
  knit.stderr?.on('data', (d: Buffer) => (knitOut = (knitOut + d.toString()).slice(-20_000)));
  // Cleanups run last registered first: dockerd is stopped before Knit's
  // daemon, so the containers and networks it removes still reach the plugin.
  onCleanup(async () => {
    await stopDockerd();
    await stopProcess(knit, 10_000);
  });
  await waitFor(() => knitOut.includes('knit daemon ready'), knit, () => `knit daemon did not start:\n${knitOut}`);

  const host: DockerBench = {
    ns,
    nsPath,
    dir,
    dockerSocket,
    dockerCli,
    docker,
    ok(...args) {
      const r = docker(...args);
      if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.code}): ${r.err}\n--- knit log:\n${knitOut.slice(-3000)}`);
      return r.out.trim();
    },
    engine: (method, path, body) => apiCall(dockerSocket, method, path, body),
    knit: (method, path, body) => apiCall(knitSock, method, path, body),
    knitLog: () => knitOut,
  };
  buildImage(host, dir);
  return host;
}

/** A busybox image without a registry: bin/busybox and its applet links, imported. */
function buildImage(host: DockerBench, dir: string): void {
  host.ok('import', busyboxRootfsTar(dir), IMAGE);
}
