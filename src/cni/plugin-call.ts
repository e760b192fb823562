// A forwarded plugin call, run in the daemon. The `knit` and `knit-ipam`
// executables send their whole invocation here (POST /v1/cni/exec): their
// CNI_* variables, stdin and own network namespace. The plugin protocol
// (skel.ts) runs here over that, with the handlers of plugin-handlers.ts, and
// the reply is what the executable prints and its exit code.
//
// Why: every container start waits for the plugin process. The protocol, its
// version conversions and the handlers are code the daemon has loaded and
// compiled already; an executable that carried them paid ~1.5 ms of CPU to
// load them on each call (forward.ts).
import { invalid } from '../lib/errors.ts';
import { runPlugin } from './skel.ts';
import { isNetnsOf, type NetnsId, type PluginIO } from './plugin-io.ts';
import { pluginHandlers, type PluginName } from './plugin-handlers.ts';
import type { CniService } from './service.ts';

/** What an executable sends. */
export interface PluginCall {
  plugin: PluginName;
  /** The CNI_* variables of its environment. */
  env: Record<string, string>;
  /** Its stdin, the network configuration. */
  stdin: string;
  /** Its own network namespace (CNI_NETNS must not be it); absent when unreadable. */
  netns?: NetnsId;
}

/** What the executable prints and exits with. */
export interface PluginOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Checks a call's shape: a malformed one is a 400 naming the field, never a half-run plugin. */
export function decodePluginCall(body: unknown): PluginCall {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('body', 'a plugin call is a JSON object {plugin, env, stdin, netns?}');
  const b = body as Record<string, unknown>;
  if (b.plugin !== 'knit' && b.plugin !== 'knit-ipam') throw invalid('plugin', `must be "knit" or "knit-ipam", got ${JSON.stringify(b.plugin)}`);
  const env = b.env;
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw invalid('env', 'must be an object of CNI_* variables');
  for (const [k, v] of Object.entries(env)) {
    if (typeof v !== 'string') throw invalid(`env.${k}`, `must be a string, got ${typeof v}`);
  }
  if (typeof b.stdin !== 'string') throw invalid('stdin', 'must be the plugin\'s stdin as a string');
  let netns: NetnsId | undefined;
  if (b.netns !== undefined) {
    const n = b.netns as Record<string, unknown> | null;
    if (typeof n !== 'object' || n === null || !Number.isSafeInteger(n.dev) || !Number.isSafeInteger(n.ino)) {
      throw invalid('netns', 'must be {dev, ino} of the plugin\'s own network namespace');
    }
    netns = { dev: n.dev as number, ino: n.ino as number };
  }
  return { plugin: b.plugin, env: env as Record<string, string>, stdin: b.stdin, ...(netns ? { netns } : {}) };
}

/** Runs a forwarded call to the end; CNI errors are in its output, as the executable prints them. */
export async function runPluginCall(service: CniService, body: unknown): Promise<PluginOutput> {
  const call = decodePluginCall(body);
  let stdout = '';
  let stderr = '';
  const io: PluginIO = {
    env: call.env,
    readStdin: async () => Buffer.from(call.stdin, 'utf8'),
    stdout: (s) => void (stdout += s),
    stderr: (s) => void (stderr += s),
    isOwnNetns: (path) => isNetnsOf(path, call.netns),
  };
  const code = await runPlugin(pluginHandlers(call.plugin, service), io);
  return { code, stdout, stderr };
}
