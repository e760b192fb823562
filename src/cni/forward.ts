// The `knit` and `knit-ipam` executables: forward the call to Knit's daemon
// and print its answer. The CNI protocol and the handlers run in the daemon
// (plugin-call.ts), which also reads this process's stdin and network
// namespace through /proc (caller.ts). So what an executable does, and every
// container start waits for, is: start, read its CNI_* variables, one request
// on the daemon's socket, print. Measured here (bench/README.md): loading the
// protocol cost ~1.5 ms of CPU a call, and reading stdin or stat-ing a file
// starts Bun's thread pool, ~1.5 ms more.
//
// The executable reads its stdin itself only when it must: when no daemon
// answers on $KNIT_SOCKET (or the default), since its configuration may name
// another socket, and when the daemon cannot read it (a terminal, a socket,
// another pid namespace). With no daemon at all it runs the protocol itself
// (skel.ts, loaded then): it validates the environment and stdin as always,
// answers VERSION, and fails with code 11 ("try again later"; 50 for STATUS)
// saying how to start a daemon.
import type { PluginCall, PluginReply } from './plugin-call.ts';
import type { PluginName } from './plugin-handlers.ts';
import { ownNetnsId, processIO, type PluginIO } from './plugin-io.ts';
import { Client, ClientError } from '../cli/client.ts';
import { CniError, ErrorCode } from './errors.ts';
import { configOf, socketPath } from './daemon-socket.ts';

const ABOUT: Record<PluginName, string> = {
  knit: 'knit: Knit container networking CNI plugin (a client of the Knit daemon)',
  'knit-ipam': 'knit-ipam: Knit IPAM as a CNI IPAM plugin (a client of the Knit daemon)',
};

/** The commands the daemon serves; VERSION and anything else is answered here. */
const FORWARDED = new Set(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS']);

/**
 * The variables the CNI protocol defines, read one by one: enumerating the
 * environment builds all of it on Bun (~80 page faults a call).
 */
const CNI_VARIABLES = ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH', 'CNI_NETNS_OVERRIDE'] as const;

function cniEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of CNI_VARIABLES) {
    const v = env[k];
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** Why the daemon did not answer, as the CNI error the executable prints. */
function unanswered(err: unknown, socket: string): CniError {
  if (err instanceof ClientError && err.code === undefined && err.status === undefined) {
    return new CniError(
      ErrorCode.TryAgainLater,
      `the Knit daemon is not reachable at ${socket}`,
      `start it with 'knit daemon' (or set KNIT_SOCKET to its socket): ${err.message}`,
    );
  }
  return new CniError(ErrorCode.Internal, err instanceof Error ? err.message : String(err));
}

/** The protocol run here, every command failing with `err`: see the header. */
async function runHere(plugin: PluginName, io: PluginIO, err: unknown): Promise<number> {
  const [{ runPlugin, failingHandlers }, { ALL_VERSIONS }] = await Promise.all([import('./skel.ts'), import('./version.ts')]);
  // No daemon: this plugin cannot serve ADD at all, which STATUS reports as 50.
  const statusErr = err instanceof CniError && err.code === ErrorCode.TryAgainLater ? new CniError(ErrorCode.PluginNotAvailable, err.msg, err.details) : err;
  const status = async (): Promise<never> => {
    throw statusErr;
  };
  return runPlugin({ ...failingHandlers({ versions: ALL_VERSIONS, about: ABOUT[plugin] }, err), status }, io);
}

/** `io` with its stdin already read. */
function withStdin(io: PluginIO, data: Buffer): PluginIO {
  return { ...io, readStdin: async () => data };
}

/** A call that carries the stdin, with this process's namespace for the own-netns check. */
async function callWithStdin(plugin: PluginName, env: Record<string, string>, stdin: string): Promise<PluginCall> {
  const own = await ownNetnsId();
  return { plugin, env, stdin, ...(own ? { netns: own } : {}) };
}

/** One call: the daemon's answer, or the protocol run here when there is none. */
async function run(plugin: PluginName, io: PluginIO): Promise<number> {
  if (!FORWARDED.has(io.env.CNI_COMMAND ?? '')) return runHere(plugin, io, new CniError(ErrorCode.Internal, 'not forwarded'));
  const env = cniEnv(io.env);
  let socket = socketPath(io.env);
  let call: PluginCall = { plugin, env };
  let stdinData: Buffer | undefined;
  // At most three rounds: the first daemon, then the one the configuration names or
  // the same one sent the stdin it could not read; a call with stdin is never redirected.
  for (;;) {
    let reply: PluginReply;
    try {
      reply = await new Client(socket).post<PluginReply>('/v1/cni/exec', call);
    } catch (err) {
      if (stdinData !== undefined) return runHere(plugin, withStdin(io, stdinData), unanswered(err, socket));
      try {
        stdinData = await io.readStdin();
      } catch (readErr) {
        // skel reads it again and reports the failure as it always does (code 5).
        return runHere(plugin, io, readErr);
      }
      const stdin = stdinData.toString('utf8');
      const tried = socket;
      try {
        socket = socketPath(io.env, configOf(stdin));
      } catch (badSocket) {
        return runHere(plugin, withStdin(io, stdinData), badSocket);
      }
      const daemonWantsStdin = err instanceof ClientError && err.field === 'stdin';
      if (socket === tried && !daemonWantsStdin) return runHere(plugin, withStdin(io, stdinData), unanswered(err, socket));
      call = await callWithStdin(plugin, env, stdin);
      continue;
    }
    if ('socket' in reply) {
      // The configuration names another daemon: the call goes there with the stdin read for it.
      socket = reply.socket;
      stdinData = Buffer.from(reply.stdin, 'utf8');
      call = await callWithStdin(plugin, env, reply.stdin);
      continue;
    }
    if (reply.stdout !== '') io.stdout(reply.stdout);
    if (reply.stderr !== '') io.stderr(reply.stderr);
    return reply.code;
  }
}

/** Entry point of a plugin executable: runs the call and sets the exit code. */
export async function forward(plugin: PluginName): Promise<void> {
  const io = processIO();
  const code = await run(plugin, io);
  await io.flush?.();
  // Exit now rather than let the runtime wind down: on Bun that saved ~0.4 ms of
  // CPU and ~60 page faults a call. Everything is written: flushed above on Bun,
  // and Node writes to pipes and files synchronously on Linux.
  process.exit(code);
}
