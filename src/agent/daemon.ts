// The daemon: owns the Engine, reconciles the kernel with the store at start,
// serves the API on a unix socket. SIGTERM stops serving and leaves every
// network and sandbox working: the datapath lives in the kernel.
import type { Server } from 'node:http';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { openSqliteStore } from '../store/sqlite.ts';
import type { Store } from '../store/store.ts';
import { Engine } from '../engine/engine.ts';
import { openHost, closeHost } from '../engine/host.ts';
import { reconcile, type ReconcileReport } from '../engine/reconcile.ts';
import { apiHandler } from './api.ts';
import { CniService } from '../cni/service.ts';
import { ensureBuiltinNetworks } from './builtins.ts';
import type { StatusView } from '../model/api.ts';
import { DaemonDns } from './dns.ts';
import { sandboxEtcSpares } from './etc-netns.ts';
import { Timings } from './metrics.ts';
import { dockerUserRules, startDockerPlugin, type DockerPlugin } from '../docker/plugin.ts';

// node:http through getBuiltinModule, not `import`: an ESM import of a builtin
// evaluates every lazy export, and node:http's pull in undici, http2, tls and
// zlib, which the daemon never uses: ~6 MiB of its RSS (13 in a bare process).
const { createServer } = process.getBuiltinModule('node:http');

export interface DaemonOptions {
  socket: string;
  stateDir: string;
  runDir: string;
  netnsDir: string;
  etcNetnsDir: string;
  defaultBridge: boolean;
  /** Serve Docker's plugin socket (knit.sock) in this directory; undefined: do not. */
  dockerPluginDir?: string | undefined;
  /** Upstream resolvers for names Knit does not own (`--dns`); none: the host's /etc/resolv.conf. */
  dnsServers?: string[] | undefined;
  log: (msg: string) => void;
}

export interface Daemon {
  engine: Engine;
  server: Server;
  report: ReconcileReport;
  stop(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const started = Date.now();
  mkdirSync(opts.stateDir, { recursive: true });
  mkdirSync(opts.runDir, { recursive: true });
  const dbPath = join(opts.stateDir, 'knit.db');
  const store: Store = openSqliteStore(dbPath);
  const host = openHost(opts.netnsDir);
  const etcDirs = sandboxEtcSpares(opts.etcNetnsDir);
  const engine = new Engine(store, host, { etcNetnsDir: opts.etcNetnsDir, etcDirs });

  const report = await reconcile(engine);
  logReport(opts.log, report);
  await ensureBuiltinNetworks(engine, opts.defaultBridge);
  // Names are loaded before the API accepts a request, so none is missed.
  const dns = new DaemonDns(engine, { upstreams: opts.dnsServers ?? [], log: opts.log });
  await dns.start();
  // Beside a dockerd, Knit's bridges need Docker's FORWARD chain to let them through.
  const dockerUser = dockerUserRules(engine, opts.log);
  dockerUser.start();
  // Per-route handling times of the API and the Docker plugin (GET /v1/metrics).
  const timings = new Timings();
  let docker: DockerPlugin | undefined;
  if (opts.dockerPluginDir) docker = await startDockerPlugin(engine, { dir: opts.dockerPluginDir, log: opts.log, dockerUser, timings });

  const status = async (): Promise<StatusView> => ({
    daemon: {
      pid: process.pid,
      socket: opts.socket,
      stateDir: opts.stateDir,
      runDir: opts.runDir,
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      netns: host.netnsPath,
    },
    store: { backend: 'sqlite', path: dbPath, revision: await store.revision() },
    counts: await engine.counts(),
  });

  const server = createServer(apiHandler({ engine, status, timings, cni: new CniService(engine, dns), socket: opts.socket }));
  mkdirSync(dirname(opts.socket), { recursive: true });
  rmSync(opts.socket, { force: true }); // a socket file left by a killed daemon
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.socket, () => resolve());
  });
  chmodSync(opts.socket, 0o660);
  opts.log(`knit daemon ready on ${opts.socket} (state ${opts.stateDir})`);
  // With NODE_COMPILE_CACHE (bin/knit sets it), what this start compiled is
  // written now rather than at exit: a daemon that gets killed still leaves the
  // next start a warm cache, which spares it Node's TypeScript stripper.
  process.getBuiltinModule('node:module').flushCompileCache();

  return {
    engine,
    server,
    report,
    async stop() {
      dockerUser.stop();
      await docker?.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await dns.stop();
      rmSync(opts.socket, { force: true });
      await closeHost(host);
      etcDirs.close();
      await store.close();
    },
  };
}

function logReport(log: (m: string) => void, r: ReconcileReport): void {
  const parts: string[] = [];
  if (r.undoneSandboxes.length) parts.push(`undid ${r.undoneSandboxes.length} half-made sandboxes`);
  if (r.undoneEndpoints.length) parts.push(`undid ${r.undoneEndpoints.length} half-made endpoints`);
  if (r.recreatedNetns.length) parts.push(`recreated ${r.recreatedNetns.length} namespaces`);
  if (r.repairedEndpoints.length) parts.push(`repaired ${r.repairedEndpoints.join(', ')}`);
  if (r.removedLinks.length) parts.push(`removed leftover links ${r.removedLinks.join(', ')}`);
  if (r.releasedAddresses) parts.push(`released ${r.releasedAddresses} orphaned addresses`);
  for (const e of r.errors) parts.push(`error: ${e}`);
  if (parts.length) log(`reconcile: ${parts.join('; ')}`);
}
