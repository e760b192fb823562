// knit exec SANDBOX -- CMD [ARG...]: run a command in a sandbox's network
// namespace from the CLI's own process, as `ip netns exec` does.
//
// The main thread enters the netns (setns through koffi) just long enough to
// spawn the child, which inherits the thread's netns. A multi-threaded
// process cannot setns into a mount namespace, so when /etc/netns/NAME exists
// the child is `unshare --mount` running a small sh that remounts /sys and
// bind-mounts each /etc/netns/NAME/FILE over /etc/FILE before exec'ing the
// command; without that directory nothing else is spawned.
import type { ChildProcess } from 'node:child_process';
import type { SandboxView } from '../model/api.ts';
import { parseCommand, UsageError, type Parsed } from './args.ts';
import { ClientError, seg } from './client.ts';
import type { Context } from './command.ts';

export const EXEC_USAGE = 'knit exec SANDBOX [--] CMD [ARG...]';

/** The sandbox and the command, split where `--` stands (or after SANDBOX). */
export interface ExecArgs {
  sandbox: string;
  command: string[];
  /** The options before the command (--socket, --format, --help). */
  parsed: Parsed;
}

/**
 * knit's own options may stand before and after SANDBOX; the command starts
 * after `--`, or at the first word after SANDBOX that is not an option. A `--`
 * later on belongs to the command.
 */
export function parseExecArgs(args: string[]): ExecArgs {
  const options: string[] = [];
  let sandboxSeen = false;
  let i = 0;
  for (; i < args.length; i++) {
    const a = args[i] as string;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      if (sandboxSeen) break;
      sandboxSeen = true;
    } else if ((a === '--socket' || a === '--format') && i + 1 < args.length) {
      options.push(a);
      i++;
    }
    options.push(args[i] as string);
  }
  const command = args.slice(i);
  const p = parseCommand(options, {}, EXEC_USAGE);
  if (p.values.help === true) return { sandbox: '', command: [], parsed: p };
  if (p.positionals.length === 0) throw new UsageError(`missing SANDBOX; usage: ${EXEC_USAGE}`);
  if (p.positionals.length > 1) {
    throw new UsageError(`unexpected argument '${p.positionals[1]}' before '--'; usage: ${EXEC_USAGE}`);
  }
  if (command.length === 0) throw new UsageError(`missing CMD; usage: ${EXEC_USAGE}`);
  return { sandbox: p.positionals[0] as string, command, parsed: p };
}

// $1: the /etc/netns/NAME directory; the rest: the command.
const ETC_SCRIPT = `d=$1; shift
umount -l /sys 2>/dev/null
if ! mount -t sysfs knit-netns /sys; then echo "knit exec: cannot mount a sysfs for the sandbox's netns" >&2; exit 125; fi
for f in "$d"/* "$d"/.[!.]* "$d"/..?*; do
  [ -e "$f" ] || continue
  t=/etc/\${f##*/}
  if [ ! -e "$t" ]; then echo "knit exec: $t does not exist: $f not applied" >&2; continue; fi
  mount --bind "$f" "$t" || echo "knit exec: cannot bind $f over $t" >&2
done
exec "$@"`;

function isDir(path: string): boolean {
  try {
    return process.getBuiltinModule('node:fs').statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** argv of the child: the command itself, or wrapped to apply /etc/netns/NAME. */
export function childArgv(sandboxName: string, command: string[], etcRoot: string): string[] {
  const dir = `${etcRoot}/${sandboxName}`;
  if (!isDir(dir)) return command;
  // slave, as `ip netns exec` makes it: mounts made on the host later still show.
  return ['unshare', '--mount', '--propagation', 'slave', '--', 'sh', '-c', ETC_SCRIPT, 'knit-exec', dir, ...command];
}

export async function runExec(ctx: Context, { sandbox: name, command }: ExecArgs): Promise<number> {
  const box = await ctx.client().get<SandboxView>(`/v1/sandboxes/${seg(name)}`);
  // A daemon started with --etc-netns-dir keeps the files elsewhere; the env says where.
  const argv = childArgv(box.name, command, ctx.env.KNIT_ETC_NETNS_DIR ?? '/etc/netns');
  // koffi and the netns helper load only here: every other command stays light.
  const { withNetns } = await import('../kernel/netns.ts');
  // Loaded here, not imported: every other command stays light (see client.ts).
  const { spawn } = process.getBuiltinModule('node:child_process');
  let child: ChildProcess;
  try {
    child = withNetns(box.netnsPath, () => spawn(argv[0] as string, argv.slice(1), { stdio: 'inherit', env: childEnv(ctx.env) }));
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const hint = msg.includes('EPERM') ? ': entering a network namespace needs root' : '';
    throw new ClientError(`cannot enter the network namespace of sandbox '${box.name}' (${box.netnsPath}): ${msg}${hint}`);
  }
  return waitChild(ctx, child, command[0] as string);
}

/** The caller's environment, with what the launcher set aside for Node's sake given back. */
export function childEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const saved = env.KNIT_SAVED_NODE_EXTRA_CA_CERTS;
  if (saved === undefined) return env;
  const out: NodeJS.ProcessEnv = { ...env, NODE_EXTRA_CA_CERTS: saved };
  delete out.KNIT_SAVED_NODE_EXTRA_CA_CERTS;
  return out;
}

function waitChild(ctx: Context, child: ChildProcess, cmd: string): Promise<number> {
  // Like a shell: the terminal's ^C and ^\ reach the child too, which decides;
  // a TERM or HUP sent to knit alone is passed on.
  const ignore = (): void => {};
  const forward = (sig: NodeJS.Signals): void => {
    child.kill(sig);
  };
  process.on('SIGINT', ignore);
  process.on('SIGQUIT', ignore);
  process.on('SIGTERM', forward);
  process.on('SIGHUP', forward);
  const done = (): void => {
    process.off('SIGINT', ignore);
    process.off('SIGQUIT', ignore);
    process.off('SIGTERM', forward);
    process.off('SIGHUP', forward);
  };
  return new Promise<number>((resolve) => {
    child.on('error', (err: NodeJS.ErrnoException) => {
      done();
      if (err.code === 'ENOENT') {
        ctx.io.stderr.write(`knit: exec: ${cmd}: command not found\n`);
        resolve(127);
      } else {
        ctx.io.stderr.write(`knit: exec: ${cmd}: ${err.message}\n`);
        resolve(126);
      }
    });
    child.on('exit', (code, signal) => {
      done();
      if (code !== null) resolve(code);
      else resolve(128 + (signal === null ? 0 : (process.getBuiltinModule('node:os').constants.signals[signal] ?? 0)));
    });
  });
}
