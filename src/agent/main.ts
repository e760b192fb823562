// `knit daemon [--socket PATH] [--state-dir DIR] [--run-dir DIR] ...`
import { parseArgs } from 'node:util';
import { startDaemon } from './daemon.ts';
import { messageOf } from '../lib/errors.ts';
import { statSync } from 'node:fs';
import { DEFAULT_PLUGIN_DIR } from '../docker/plugin.ts';

const USAGE = `usage: knit daemon [--socket PATH] [--state-dir DIR] [--run-dir DIR] [--netns-dir DIR] [--etc-netns-dir DIR] [--no-default-bridge] [--docker-plugin-dir DIR | --no-docker-plugin] [--dns IP[:PORT]]...`;

export async function runDaemon(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        socket: { type: 'string' },
        'state-dir': { type: 'string' },
        'run-dir': { type: 'string' },
        'netns-dir': { type: 'string' },
        'etc-netns-dir': { type: 'string' },
        'no-default-bridge': { type: 'boolean' },
        'docker-plugin-dir': { type: 'string' },
        'no-docker-plugin': { type: 'boolean' },
        dns: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`knit daemon: ${messageOf(err)}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  restartWithoutTypeStripper();
  const runDir = values['run-dir'] ?? '/run/knit';
  const log = (m: string) => process.stderr.write(`${new Date().toISOString()} ${m}\n`);
  try {
    const daemon = await startDaemon({
      socket: values.socket ?? process.env.KNIT_SOCKET ?? `${runDir}/knit.sock`,
      stateDir: values['state-dir'] ?? '/var/lib/knit',
      runDir,
      netnsDir: values['netns-dir'] ?? '/run/netns',
      etcNetnsDir: values['etc-netns-dir'] ?? '/etc/netns',
      defaultBridge: !values['no-default-bridge'],
      dnsServers: values.dns ?? [],
      dockerPluginDir: values['no-docker-plugin'] ? undefined : (values['docker-plugin-dir'] ?? (inInitialNetns() ? DEFAULT_PLUGIN_DIR : undefined)),
      log,
    });
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        log(`${sig}: stopping; networks and sandboxes stay up in the kernel`);
        void daemon.stop().then(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    return 0;
  } catch (err) {
    process.stderr.write(`knit daemon: ${messageOf(err)}\n`);
    return 1;
  }
}

/**
 * A dockerd can only use Knit's bridges from the namespace they live in; a
 * daemon in another namespace (tests, several daemons side by side) serves
 * the plugin only where --docker-plugin-dir says, never on the shared default.
 */
function inInitialNetns(): boolean {
  try {
    return statSync('/proc/self/ns/net').ino === statSync('/proc/1/ns/net').ino;
  } catch {
    return false;
  }
}

const REEXEC_ENV = 'KNIT_DAEMON_REEXEC';

/**
 * The daemon runs from src/: Node strips each .ts file's types with amaro, a
 * WebAssembly module that then stays loaded for the life of the process
 * (~25 MiB of RSS). With a compile cache (bin/knit sets NODE_COMPILE_CACHE) a
 * start whose modules are all cached never loads it. A start that did load it
 * (the first one, or one after an edit) has compiled every module the daemon
 * imports by now: it writes them to the cache and execs itself once, before
 * opening anything, so the daemon that serves starts warm.
 */
function restartWithoutTypeStripper(): void {
  if (process.env[REEXEC_ENV] !== undefined) {
    delete process.env[REEXEC_ENV]; // not for the daemon's children
    return;
  }
  const mod = process.getBuiltinModule('node:module');
  const loaded = (process as { moduleLoadList?: string[] }).moduleLoadList;
  if (mod.getCompileCacheDir() === undefined || !loaded?.includes('NativeModule internal/deps/amaro/dist/index')) return;
  mod.flushCompileCache();
  process.execve?.(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, [REEXEC_ENV]: '1' });
}
