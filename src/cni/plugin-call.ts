// A forwarded plugin call, run in the daemon. The `knit` and `knit-ipam`
// executables send their invocation here (POST /v1/cni/exec): their CNI_*
// variables, and their stdin only when the daemon cannot read it itself
// (caller.ts). The plugin protocol (skel.ts) runs here over that, with the
// handlers of plugin-handlers.ts, and the reply is what the executable prints
// and its exit code.
//
// Why: every container start waits for the plugin process. The protocol, its
// version conversions and the handlers are code the daemon has loaded and
// compiled already; an executable that carried them paid ~1.5 ms of CPU to
// load them on each call, and one that read its own stdin ~1.5 ms more
// (forward.ts).
import { statSync } from 'node:fs';
import { invalid } from '../lib/errors.ts';
import { failingHandlers, runPlugin } from './skel.ts';
import { isNetnsOf, type NetnsId, type PluginIO } from './plugin-io.ts';
import { pluginHandlers, type PluginName } from './plugin-handlers.ts';
import { callerNetns, readCallerStdin, type Caller } from './caller.ts';
import { configOf, socketPath } from './daemon-socket.ts';
import type { CniService } from './service.ts';

/** What an executable sends. */
export interface PluginCall {
  plugin: PluginName;
  /** The CNI_* variables of its environment. */
  env: Record<string, string>;
  /** Its stdin, the network configuration; absent: the daemon reads it from the caller. */
  stdin?: string;
  /** Its own network namespace (CNI_NETNS must not be it); absent: the caller's, or unknown. */
  netns?: NetnsId;
}

/** What the executable prints and exits with. */
export interface PluginOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The configuration names another daemon's socket: the executable sends the
 * call there, with the stdin the daemon read for it.
 */
export interface PluginRedirect {
  socket: string;
  stdin: string;
}

export type PluginReply = PluginOutput | PluginRedirect;

/** Where the daemon serving a call listens, to tell its own socket from another's. */
export interface Served {
  socket: string;
}

/** Checks a call's shape: a malformed one is a 400 naming the field, never a half-run plugin. */
export function decodePluginCall(body: unknown): PluginCall {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body', 'a plugin call is a JSON object {plugin, env, stdin?, netns?}');
  const b = body as Record<string, unknown>;
  if (b.plugin !== 'knit' && b.plugin !== 'knit-ipam') throw invalid('plugin', `must be "knit" or "knit-ipam", got ${JSON.stringify(b.plugin)}`);
  const env = b.env;
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw invalid('env', 'must be an object of CNI_* variables');
  for (const [k, v] of Object.entries(env)) {
    if (typeof v !== 'string') throw invalid(`env.${k}`, `must be a string, got ${typeof v}`);
  }
  if (b.stdin !== undefined && typeof b.stdin !== 'string') throw invalid('stdin', "must be the plugin's stdin as a string");
  let netns: NetnsId | undefined;
  if (b.netns !== undefined) {
    const n = b.netns as Record<string, unknown> | null;
    if (typeof n !== 'object' || n === null || !Number.isSafeInteger(n.dev) || !Number.isSafeInteger(n.ino)) {
      throw invalid('netns', "must be {dev, ino} of the plugin's own network namespace");
    }
    netns = { dev: n.dev as number, ino: n.ino as number };
  }
  return { plugin: b.plugin, env: env as Record<string, string>, ...(b.stdin !== undefined ? { stdin: b.stdin } : {}), ...(netns ? { netns } : {}) };
}

/**
 * Runs a forwarded call to the end; CNI errors are in its output, as the
 * executable prints them. `caller` is the process on the connection, when
 * the kernel names it.
 */
export async function runPluginCall(service: CniService, body: unknown, caller: Caller | undefined, served: Served): Promise<PluginReply> {
  const call = decodePluginCall(body);
  let stdin = call.stdin;
  let handlers = pluginHandlers(call.plugin, service);
  if (stdin === undefined) {
    const data = caller === undefined ? undefined : await readCallerStdin(caller);
    if (data === undefined) {
      throw invalid('stdin', "the daemon cannot read this plugin process's stdin (not a pipe or a file, or the process is not visible from here): send it in the call");
    }
    stdin = data.toString('utf8');
    // The executable chose this daemon without reading its configuration, which may name another.
    let socket: string;
    try {
      socket = socketPath({ KNIT_SOCKET: served.socket }, configOf(stdin));
    } catch (err) {
      socket = served.socket;
      handlers = failingHandlers(handlers, err);
    }
    if (socket !== served.socket && !sameFile(socket, served.socket)) return { socket, stdin };
  }
  const own = call.netns ?? (caller === undefined ? undefined : await callerNetns(caller));
  const input = stdin;
  let stdout = '';
  let stderr = '';
  const io: PluginIO = {
    env: call.env,
    readStdin: async () => Buffer.from(input, 'utf8'),
    stdout: (s) => void (stdout += s),
    stderr: (s) => void (stderr += s),
    isOwnNetns: (path) => isNetnsOf(path, own),
  };
  const code = await runPlugin(handlers, io);
  return { code, stdout, stderr };
}

function sameFile(a: string, b: string): boolean {
  try {
    const x = statSync(a);
    const y = statSync(b);
    return x.dev === y.dev && x.ino === y.ino;
  } catch {
    return false;
  }
}
