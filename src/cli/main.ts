// The `knit` command: dispatch to a command group. Everything here stays
// light (node:util parseArgs, node:http); what is heavy loads lazily: exec's
// koffi, and the daemon and CNI modules, which always run from src/.
import { checkFormat, DEFAULT_SOCKET, parseCommand, takeLeadingGlobals, UsageError, type Globals, type Parsed } from './args.ts';
import { Client, ClientError } from './client.ts';
import type { Command, Context } from './command.ts';
import { EXEC_USAGE, parseExecArgs, runExec } from './exec.ts';
import { clientVersion, miscCommands } from './misc.ts';
import { networkCommands } from './network.ts';
import type { Io } from './output.ts';
import { sandboxCommands } from './sandbox.ts';

const GROUPS: Record<string, Record<string, Command>> = { network: networkCommands, sandbox: sandboxCommands };
const ALIASES: Record<string, string> = { list: 'ls', remove: 'rm' };

const OVERVIEW = `Usage: knit [--socket PATH] [--format table|json] COMMAND ...

Networks:
  network create NAME [--driver D] [--subnet CIDR]... [--gateway IP]... [--ip-range CIDR]...
                 [--ipv6] [--internal] [--opt k=v]... [--label k=v]...
  network ls | inspect NAME... | rm NAME...
  network connect NET SANDBOX [--ip IP] [--alias A]...  |  network disconnect NET SANDBOX
Sandboxes:
  sandbox create NAME [--network NET]... [--ip IP] [--alias A]... [--publish SPEC]...
                 [--hostname H] [--label k=v]... [--join SANDBOX]
  sandbox ls | inspect NAME... | rm NAME...
  exec SANDBOX -- CMD [ARG...]     run a command in the sandbox's network namespace
Daemon and more:
  version | status                 versions; the daemon, its store and counts
  daemon [--socket PATH] [--state-dir DIR] [--run-dir DIR]
  cni ...  |  install cni ...      the CNI runtime and plugin installation

--socket PATH (or KNIT_SOCKET; default ${DEFAULT_SOCKET}) and --format may stand anywhere before '--'.
\`knit COMMAND --help\` shows a command's form.
`;

/** Modules of other layers, loaded from src/ (never bundled into the CLI) and only when asked for. */
const FROM_SOURCE = {
  daemon: { path: 'agent/main.ts', export: 'runDaemon' },
  cni: { path: 'cni/runtime-cli.ts', export: 'runCniCommand' },
  install: { path: 'cni/install.ts', export: 'runInstall' },
} as const;

// The bundler sets this to where src/ lies from dist/; from source it is the parent of cli/.
declare const __KNIT_SRC__: string | undefined;

async function runFromSource(which: keyof typeof FROM_SOURCE, argv: string[]): Promise<number> {
  const { path, export: name } = FROM_SOURCE[which];
  const url = new URL(path, new URL(typeof __KNIT_SRC__ === 'string' ? __KNIT_SRC__ : '../', import.meta.url));
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url.href)) as Record<string, unknown>;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ERR_MODULE_NOT_FOUND' && e.message.includes(path)) {
      throw new ClientError(`\`knit ${which}\` is not part of this build: ${url.pathname} is missing`);
    }
    throw err;
  }
  const fn = mod[name];
  if (typeof fn !== 'function') throw new ClientError(`${url.pathname} does not export ${name}()`);
  return (fn as (argv: string[]) => Promise<number>)(argv);
}

function helpText(cmd: Command): string {
  return `Usage: ${cmd.usage}\n\n${cmd.summary[0]?.toUpperCase()}${cmd.summary.slice(1)}.\n\nGlobal options: --socket PATH (env KNIT_SOCKET, default ${DEFAULT_SOCKET}), --format table|json\n`;
}

function makeContext(io: Io, env: NodeJS.ProcessEnv, before: Globals, after: Parsed['values']): Context {
  const socket = (after.socket as string | undefined) ?? before.socket ?? env.KNIT_SOCKET ?? DEFAULT_SOCKET;
  if (socket === '') throw new UsageError('--socket needs a path; usage: knit --socket PATH COMMAND ...');
  const format = checkFormat((after.format as string | undefined) ?? before.format);
  let client: Client | undefined;
  return { io, env, socket, format, client: () => (client ??= new Client(socket)) };
}

export async function main(argv: string[], io: Io = process, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  try {
    return await dispatch(argv, io, env);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`knit: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ClientError) {
      io.stderr.write(`knit: ${err.message}\n`);
      return 1;
    }
    io.stderr.write(`knit: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

async function dispatch(argv: string[], io: Io, env: NodeJS.ProcessEnv): Promise<number> {
  const { globals, rest, version } = takeLeadingGlobals(argv);
  if (version) {
    io.stdout.write(`knit version ${clientVersion()}\n`);
    return 0;
  }
  const [word, ...args] = rest;
  if (word === undefined || word === 'help') {
    if (word === 'help' && args.length > 0) return dispatch([...args, '--help'], io, env);
    (globals.help === true || word === 'help' ? io.stdout : io.stderr).write(OVERVIEW);
    return globals.help === true || word === 'help' ? 0 : 2;
  }

  switch (word) {
    case 'daemon':
      return runFromSource('daemon', globals.socket === undefined ? args : ['--socket', globals.socket, ...args]);
    case 'cni':
      return runFromSource('cni', args);
    case 'install':
      if (args[0] !== 'cni') throw new UsageError(`unknown install target${args[0] === undefined ? '' : ` '${args[0]}'`}; usage: knit install cni ...`);
      return runFromSource('install', args.slice(1));
    case 'exec': {
      const parsed = parseExecArgs(args);
      if (globals.help === true || parsed.parsed.values.help === true) {
        io.stdout.write(`Usage: ${EXEC_USAGE}\n\nRun CMD inside the sandbox's network namespace (with /etc/netns/SANDBOX/ applied), passing stdio through; exits with CMD's status.\n`);
        return 0;
      }
      return runExec(makeContext(io, env, globals, parsed.parsed.values), parsed);
    }
  }

  let cmd: Command | undefined;
  let cmdArgs = args;
  const group = GROUPS[word];
  if (group !== undefined) {
    const sub = args[0];
    const names = Object.keys(group).join(', ');
    if (sub === undefined || sub === '--help' || sub === '-h') {
      const help = Object.values(group).map((c) => `  ${c.usage}\n      ${c.summary}`).join('\n');
      if (sub !== undefined || globals.help === true) {
        io.stdout.write(`Usage:\n${help}\n`);
        return 0;
      }
      throw new UsageError(`'knit ${word}' needs a subcommand: ${names}; usage: knit ${word} SUBCOMMAND ...`);
    }
    cmd = group[ALIASES[sub] ?? sub];
    if (cmd === undefined) throw new UsageError(`unknown command 'knit ${word} ${sub}': use one of ${names}`);
    cmdArgs = args.slice(1);
  } else {
    cmd = miscCommands[word];
    if (cmd === undefined) {
      throw new UsageError(`unknown command '${word}': use network, sandbox, exec, version, status or daemon (knit --help lists them)`);
    }
  }

  const p = parseCommand(cmdArgs, cmd.options, cmd.usage);
  if (globals.help === true || p.values.help === true) {
    io.stdout.write(helpText(cmd));
    return 0;
  }
  return cmd.run(makeContext(io, env, globals, p.values), p);
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
