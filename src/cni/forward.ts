// The `knit` and `knit-ipam` executables: forward the whole call to Knit's
// daemon and print its answer. The CNI protocol and the handlers run in the
// daemon (plugin-call.ts), so what an executable loads, and every container
// start waits for, is this file and the HTTP client: forwarded ADDs took
// ~1.5 ms less CPU and ~2.4 ms less wall time than an executable that ran
// the protocol itself (measured interleaved, bench/README.md).
//
// Only when the daemon cannot answer does the executable run the protocol
// itself (skel.ts, loaded then): it validates the environment and stdin as
// always, answers VERSION, and fails with code 11 ("try again later"; 50 for
// STATUS) saying how to start a daemon.
import type { PluginCall, PluginOutput } from './plugin-call.ts';
import type { PluginName } from './plugin-handlers.ts';
import { ownNetnsId, processIO, type PluginIO } from './plugin-io.ts';
import { Client, ClientError } from '../cli/client.ts';
import { CniError, ErrorCode } from './errors.ts';

export const DEFAULT_SOCKET = '/run/knit/knit.sock';

const ABOUT: Record<PluginName, string> = {
  knit: 'knit: Knit container networking CNI plugin (a client of the Knit daemon)',
  'knit-ipam': 'knit-ipam: Knit IPAM as a CNI IPAM plugin (a client of the Knit daemon)',
};

/** The commands the daemon serves; VERSION and anything else is answered here. */
const FORWARDED = new Set(['ADD', 'DEL', 'CHECK', 'GC', 'STATUS']);

/**
 * The daemon's socket: the network configuration's `socket` first, because a
 * runtime may run DEL from a process that did not inherit the environment
 * ADD ran with (podman's conmon cleanup does); then $KNIT_SOCKET; then the default.
 */
export function socketPath(
  env: Readonly<Record<string, string | undefined>> = process.env,
  config: Readonly<Record<string, unknown>> = {},
): string {
  const c = config.socket;
  if (c !== undefined && c !== null) {
    if (typeof c !== 'string' || !c.startsWith('/')) {
      throw new CniError(ErrorCode.InvalidNetworkConfig, `socket: must be the absolute path of the Knit daemon's socket, got ${JSON.stringify(c)}`, 'socket');
    }
    return c;
  }
  const s = env.KNIT_SOCKET;
  return s !== undefined && s !== '' ? s : DEFAULT_SOCKET;
}

/** The configuration as far as finding the daemon needs it; the daemon reports a bad one. */
function configOf(stdin: string): Record<string, unknown> {
  try {
    const c: unknown = JSON.parse(stdin);
    return typeof c === 'object' && c !== null && !Array.isArray(c) ? (c as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function cniEnv(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('CNI_') && v !== undefined) out[k] = v;
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
  const [{ runPlugin }, { ALL_VERSIONS }] = await Promise.all([import('./skel.ts'), import('./version.ts')]);
  const fail = async (): Promise<never> => {
    throw err;
  };
  return runPlugin(
    {
      versions: ALL_VERSIONS,
      about: ABOUT[plugin],
      add: fail,
      del: fail,
      check: fail,
      gc: fail,
      status: async () => {
        // No daemon: this plugin cannot serve ADD at all.
        throw err instanceof CniError && err.code === ErrorCode.TryAgainLater ? new CniError(ErrorCode.PluginNotAvailable, err.msg, err.details) : err;
      },
    },
    io,
  );
}

/** One call: the daemon's answer, or the protocol run here when there is none. */
async function run(plugin: PluginName, io: PluginIO): Promise<number> {
  if (!FORWARDED.has(io.env.CNI_COMMAND ?? '')) return runHere(plugin, io, new CniError(ErrorCode.Internal, 'not forwarded'));
  const netns = ownNetnsId();
  let stdinData: Buffer;
  try {
    stdinData = await io.readStdin();
  } catch (err) {
    // skel reads it again and reports the failure as it always does (code 5).
    return runHere(plugin, io, err);
  }
  const stdin = stdinData.toString('utf8');
  let socket: string | undefined;
  let out: PluginOutput;
  try {
    socket = socketPath(io.env, configOf(stdin));
    const own = await netns;
    const call: PluginCall = { plugin, env: cniEnv(io.env), stdin, ...(own ? { netns: own } : {}) };
    out = await new Client(socket).post<PluginOutput>('/v1/cni/exec', call);
  } catch (err) {
    return runHere(plugin, { ...io, readStdin: async () => stdinData }, socket === undefined ? err : unanswered(err, socket));
  }
  if (out.stdout !== '') io.stdout(out.stdout);
  if (out.stderr !== '') io.stderr(out.stderr);
  return out.code;
}

/** Entry point of a plugin executable: runs the call and sets the exit code. */
export async function forward(plugin: PluginName): Promise<void> {
  const io = processIO();
  const code = await run(plugin, io);
  await io.flush?.();
  process.exitCode = code;
}
