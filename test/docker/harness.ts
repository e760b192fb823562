// A real dockerd (Debian's docker.io) and a Knit daemon, both inside one
// throwaway network namespace: dockerd gets its own --data-root,
// --exec-root, --pidfile and API socket, so its iptables rules, bridges and
// containers live and die in that namespace, never in the machine's. dockerd
// finds Knit's plugin socket by path (/run/docker/plugins/knit.sock is on the
// shared filesystem; network namespaces do not hide unix socket files).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KNIT } from '../helpers/daemon.ts';
import { makeNetns } from '../helpers/netns.ts';
import { busyboxRootfsTar, dockerdArgs, PLUGIN_DIR, PLUGIN_SOCKET } from '../helpers/dockerd.ts';

export { PLUGIN_DIR, PLUGIN_SOCKET };
export const IMAGE = 'knit-busybox:test';

export interface Run {
  code: number;
  out: string;
  err: string;
}

export interface DockerHost {
  ns: string;
  nsPath: string;
  dir: string;
  docker(...args: string[]): Run;
  /** docker ..., throwing with stderr when it fails. */
  ok(...args: string[]): string;
  knit(...args: string[]): Run;
  knitJson<T>(...args: string[]): T;
  /** A command in the namespace dockerd and Knit share (the "host"). */
  inHost(cmd: string, ...args: string[]): Run;
  startKnit(): Promise<void>;
  stopKnit(): Promise<void>;
  knitLog(): string;
  close(): Promise<void>;
}

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv, input?: string): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, timeout: 120_000, input });
  return { code: r.status ?? 1, out: r.stdout ?? '', err: `${r.stderr ?? ''}${r.error ? r.error.message : ''}` };
}

/** Why dockerd cannot run here, or undefined when it can (installing docker.io if missing). */
export function dockerUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  const need = ['dockerd', 'busybox'].filter((b) => run('sh', ['-c', `command -v ${b}`]).code !== 0);
  if (need.length) {
    const r = run('sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static)']);
    if (r.code !== 0) return `docker.io could not be installed: ${r.err.trim().slice(-300)}`;
  }
  if (existsSync(PLUGIN_SOCKET) && socketAnswers(PLUGIN_SOCKET)) return `${PLUGIN_SOCKET} is served by another Knit daemon`;
  return undefined;
}

function socketAnswers(path: string): boolean {
  const r = run('curl', ['-s', '-m', '2', '--unix-socket', path, '-X', 'POST', 'http://x/Plugin.Activate']);
  return r.code === 0 && r.out.includes('Implements');
}

export async function startDockerHost(): Promise<DockerHost> {
  const { name: ns, path: nsPath } = makeNetns('kntdk');
  const dir = mkdtempSync(join(tmpdir(), 'knit-docker-'));
  const knitState = join(dir, 'knit');
  const knitSock = join(knitState, 'knit.sock');
  const dockerSock = join(dir, 'docker.sock');
  const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: `unix://${dockerSock}`, KNIT_FROM_SOURCE: '1' };
  delete env.NODE_EXTRA_CA_CERTS;
  let knitProc: ChildProcess | undefined;
  let knitOut = '';
  let dockerd: ChildProcess | undefined;

  const host: DockerHost = {
    ns,
    nsPath,
    dir,
    docker: (...args) => run('docker', args, env),
    ok(...args) {
      const r = host.docker(...args);
      if (r.code !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.code}): ${r.err}\n--- knit log:\n${knitOut.slice(-3000)}`);
      return r.out.trim();
    },
    knit: (...args) => run(KNIT, ['--socket', knitSock, ...args], env),
    knitJson<T>(...args: string[]): T {
      const r = host.knit(...args, '--format', 'json');
      if (r.code !== 0) throw new Error(`knit ${args.join(' ')} failed: ${r.err}`);
      return JSON.parse(r.out) as T;
    },
    inHost: (cmd, ...args) => run('nsenter', [`--net=${nsPath}`, cmd, ...args], env),
    knitLog: () => knitOut,
    async startKnit() {
      mkdirSync(knitState, { recursive: true });
      const readyBefore = knitOut.split('knit daemon ready').length;
      knitProc = spawn(
        'nsenter',
        [`--net=${nsPath}`, 'setpriv', '--pdeathsig', 'TERM', KNIT, 'daemon', '--socket', knitSock, '--state-dir', knitState, '--run-dir', join(knitState, 'run'), '--no-default-bridge', '--docker-plugin-dir', PLUGIN_DIR],
        { env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      knitProc.stdout?.on('data', (d: Buffer) => (knitOut += d.toString()));
      knitProc.stderr?.on('data', (d: Buffer) => (knitOut += d.toString()));
      await waitFor(() => knitOut.split('knit daemon ready').length > readyBefore, () => `knit daemon did not start:\n${knitOut}`, knitProc);
    },
    async stopKnit() {
      const p = knitProc;
      if (!p || p.exitCode !== null) return;
      const done = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await done;
      knitProc = undefined;
    },
    async close() {
      if (dockerd && dockerd.exitCode === null) {
        run('sh', ['-c', 'docker ps -aq | xargs -r docker rm -f >/dev/null 2>&1; docker network prune -f >/dev/null 2>&1'], env);
        const done = new Promise((r) => dockerd?.once('exit', r));
        dockerd.kill('SIGTERM');
        await Promise.race([done, new Promise((r) => setTimeout(r, 20_000))]);
        if (dockerd.exitCode === null) dockerd.kill('SIGKILL');
      }
      await host.stopKnit();
      knitProc?.kill('SIGKILL');
      // Whatever dockerd left mounted under its roots (overlay layers, netns files).
      run('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l`]);
      rmSync(dir, { recursive: true, force: true });
    },
  };

  // If the test runner dies before its after() hook, dockerd goes with it (setpriv --pdeathsig).
  dockerd = spawn('nsenter', dockerdArgs({ nsPath, ns, dir, socket: dockerSock }), { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let dlog = '';
  dockerd.stderr?.on('data', (d: Buffer) => (dlog = (dlog + d.toString()).slice(-4000)));
  await waitFor(() => existsSync(dockerSock) && host.docker('version', '--format', '{{.Server.Version}}').code === 0, () => `dockerd did not start:\n${dlog}`, dockerd);
  // After dockerd, as on a host where Docker came first: it found forwarding
  // off, turned it on and set the FORWARD policy to DROP.
  await host.startKnit();
  buildImage(host, dir);
  return host;
}

/** A busybox image without a registry: bin/busybox and its applet links, imported. */
function buildImage(host: DockerHost, dir: string): void {
  host.ok('import', busyboxRootfsTar(dir, ['www']), IMAGE);
}

async function waitFor(ready: () => boolean, why: () => string, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (ready()) return;
    if (proc.exitCode !== null) throw new Error(why());
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(why());
}
