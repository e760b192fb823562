// Executing a plugin as libcni's invoke package does: find <dir>/<type> in
// CNI_PATH, run it with the runtime's environment plus CNI_*, config on
// stdin, result on stdout, and turn failures into CNI errors.
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringifyArgs, type ArgPair } from './args.ts';
import { CniError, ErrorCode } from './errors.ts';
import { ErrorSchema, VersionInfoSchema, type Result, type VersionInfo } from './types.ts';
import { CURRENT, decodeConfVersion } from './version.ts';
import { createResult } from './decode.ts';

export interface InvokeArgs {
  command: string;
  containerID: string;
  netns: string;
  ifName: string;
  pluginArgs: readonly ArgPair[];
  /** CNI_PATH, ":"-joined. */
  path: string;
}

/** invoke.Args.AsEnv: the caller's environment plus the CNI_* variables. */
export function envFor(args: InvokeArgs, base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  env.CNI_COMMAND = args.command;
  env.CNI_CONTAINERID = args.containerID;
  env.CNI_NETNS = args.netns;
  env.CNI_ARGS = stringifyArgs(args.pluginArgs);
  env.CNI_IFNAME = args.ifName;
  env.CNI_PATH = args.path;
  return env;
}

/** FindInPath: the first regular file <dir>/<plugin>. */
export function findInPath(plugin: string, paths: readonly string[]): string {
  if (plugin.includes('/')) throw new Error(`invalid plugin name: ${plugin}`);
  if (paths.length === 0) throw new Error('no paths provided');
  for (const dir of paths) {
    const full = join(dir, plugin);
    try {
      if (statSync(full).isFile()) return full;
    } catch {
      // not in this dir
    }
  }
  throw new Error(`failed to find plugin "${plugin}" in path [${paths.join(' ')}]`);
}

export interface ExecOptions {
  /** Kill the plugin after this long (libcni: the context's deadline). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Where a successful plugin's stderr goes (libcni copies it to its own). */
  stderr?: (chunk: Buffer) => void;
}

interface RunOutcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  spawnError?: NodeJS.ErrnoException;
}

function runOnce(path: string, stdin: Buffer, env: Record<string, string>, opts: ExecOptions): Promise<RunOutcome> {
  return new Promise((resolve) => {
    const child = spawn(path, [], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.timeoutMs !== undefined ? { timeout: opts.timeoutMs } : {}),
      ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let spawnError: NodeJS.ErrnoException | undefined;
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e: NodeJS.ErrnoException) => {
      spawnError = e;
    });
    // A plugin that exits without reading stdin must not crash us with EPIPE.
    child.stdin.on('error', () => {});
    child.stdin.end(stdin);
    child.on('close', (code, signal) => {
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err),
        ...(spawnError !== undefined ? { spawnError } : {}),
      });
    });
  });
}

function exitText(o: RunOutcome): string {
  if (o.spawnError !== undefined) return o.spawnError.message;
  return o.signal !== null ? `signal: ${o.signal}` : `exit status ${o.code}`;
}

/** RawExec.pluginErr: the plugin's own error object, or a description of the failure. */
export function pluginError(stdout: Buffer, stderr: Buffer, exit: string): CniError {
  if (stdout.length === 0) {
    if (stderr.length === 0) return new CniError(ErrorCode.Unknown, `netplugin failed with no error message: ${exit}`);
    return new CniError(ErrorCode.Unknown, `netplugin failed: ${JSON.stringify(stderr.toString())}: ${exit}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout.toString());
  } catch (err) {
    return new CniError(
      ErrorCode.Unknown,
      `netplugin failed but error parsing its diagnostic message ${JSON.stringify(stdout.toString())}: ${(err as Error).message}`,
    );
  }
  const p = ErrorSchema.safeParse(parsed);
  if (!p.success) {
    return new CniError(
      ErrorCode.Unknown,
      `netplugin failed but error parsing its diagnostic message ${JSON.stringify(stdout.toString())}: ${p.error.issues[0]?.message ?? ''}`,
    );
  }
  return new CniError(p.data.code ?? 0, p.data.msg ?? '', p.data.details ?? '');
}

/** RawExec.ExecPlugin: stdout on success, a CniError otherwise; retries "text file busy". */
export async function execPlugin(
  path: string,
  stdin: Buffer,
  env: Record<string, string>,
  opts: ExecOptions = {},
): Promise<Buffer> {
  for (let attempt = 0; ; attempt++) {
    const o = await runOnce(path, stdin, env, opts);
    if (o.spawnError?.code === 'ETXTBSY' && attempt < 5) {
      await sleep(1000);
      continue;
    }
    if (o.spawnError !== undefined || o.code !== 0) throw pluginError(o.stdout, o.stderr, exitText(o));
    if (o.stderr.length > 0) (opts.stderr ?? ((c) => process.stderr.write(c)))(o.stderr);
    return o.stdout;
  }
}

/** fixupResultVersion: a result without cniVersion is taken to be in the config's version. */
export function fixupResultVersion(netconf: Buffer, stdout: Buffer): { version: string; raw: unknown } {
  const confVersion = decodeConfVersion(JSON.parse(netconf.toString()));
  let raw: unknown;
  try {
    raw = JSON.parse(stdout.toString());
  } catch (err) {
    throw new Error(`failed to unmarshal raw result: ${(err as Error).message}`);
  }
  if (raw === null) raw = {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new Error('failed to unmarshal raw result: not a JSON object');
  const v = (raw as Record<string, unknown>).cniVersion;
  if (typeof v === 'string' && v !== '') return { version: v, raw };
  return { version: confVersion, raw: { ...(raw as object), cniVersion: confVersion } };
}

export async function execPluginWithResult(
  path: string,
  netconf: Buffer,
  args: InvokeArgs,
  opts: ExecOptions = {},
): Promise<Result> {
  const stdout = await execPlugin(path, netconf, envFor(args), opts);
  const { version, raw } = fixupResultVersion(netconf, stdout);
  return createResult(version, raw);
}

export async function execPluginWithoutResult(
  path: string,
  netconf: Buffer,
  args: InvokeArgs,
  opts: ExecOptions = {},
): Promise<void> {
  await execPlugin(path, netconf, envFor(args), opts);
}

/** version.PluginDecoder: VERSION output. */
export function decodeVersionInfo(stdout: Buffer): VersionInfo {
  let raw: unknown;
  try {
    raw = JSON.parse(stdout.toString());
  } catch (err) {
    throw new Error(`decoding version info: ${(err as Error).message}`);
  }
  const p = VersionInfoSchema.safeParse(raw);
  if (!p.success) throw new Error(`decoding version info: ${p.error.issues[0]?.message ?? 'invalid'}`);
  const cniVersion = p.data.cniVersion ?? '';
  if (cniVersion === '') throw new Error('decoding version info: missing field cniVersion');
  const supported = p.data.supportedVersions ?? [];
  if (supported.length === 0) {
    if (cniVersion === '0.2.0') return { cniVersion, supportedVersions: ['0.1.0', '0.2.0'] };
    throw new Error('decoding version info: missing field supportedVersions');
  }
  return { cniVersion, supportedVersions: supported };
}

/** GetVersionInfo: asks a plugin which versions it speaks. */
export async function getVersionInfo(path: string, opts: ExecOptions = {}): Promise<VersionInfo> {
  const args: InvokeArgs = { command: 'VERSION', containerID: '', netns: 'dummy', ifName: 'dummy', pluginArgs: [], path: 'dummy' };
  const stdin = Buffer.from(JSON.stringify({ cniVersion: CURRENT }));
  let stdout: Buffer;
  try {
    stdout = await execPlugin(path, stdin, envFor(args), opts);
  } catch (err) {
    // Plugins from before VERSION existed.
    if (err instanceof CniError && err.message === 'unknown CNI_COMMAND: VERSION') {
      return { cniVersion: CURRENT, supportedVersions: ['0.1.0'] };
    }
    throw err;
  }
  return decodeVersionInfo(stdout);
}
