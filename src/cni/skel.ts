// The plugin side of the protocol, as the reference skel (pkg/skel) does it:
// read CNI_* and stdin, validate them (codes 4/3/5/6/7), gate versions
// (code 1), call the handler, print the result in the config's version, or
// print the error object on stdout and exit 1. Everything it touches is
// injected (PluginIO): the daemon runs it over a forwarded call
// (plugin-call.ts), an executable over its own process only when no daemon
// answers (forward.ts), and unit tests over fakes.
import { CniError, ErrorCode, toCniError } from './errors.ts';
import type { Result, VersionInfo } from './types.ts';
import { CURRENT, decodeConfVersion, formatResult, greaterThanOrEqual, reconcile, resultAsVersion } from './version.ts';
import type { PluginIO } from './plugin-io.ts';

export interface CmdArgs {
  containerID: string;
  netns: string;
  ifName: string;
  args: string;
  path: string;
  netnsOverride: string;
  stdinData: Buffer;
  /** stdin parsed: the plugin's configuration. */
  config: Record<string, unknown>;
  /** The configuration's cniVersion ("" read as 0.1.0). */
  cniVersion: string;
}

export type { PluginIO };

export interface PluginHandlers {
  /** Returns the result (any version; one without cniVersion is taken as current). */
  add?: (args: CmdArgs) => Promise<Result>;
  del?: (args: CmdArgs) => Promise<void>;
  check?: (args: CmdArgs) => Promise<void>;
  status?: (args: CmdArgs) => Promise<void>;
  gc?: (args: CmdArgs) => Promise<void>;
  /** The spec versions this plugin speaks (VERSION output, exact-match gate). */
  versions: readonly string[];
  /** Printed to stderr when run with no CNI_COMMAND. */
  about?: string;
}


const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

type Cmd = 'ADD' | 'CHECK' | 'DEL' | 'GC' | 'STATUS';
const REQUIRED: Record<string, readonly Cmd[]> = {
  CNI_COMMAND: ['ADD', 'CHECK', 'DEL', 'GC', 'STATUS'],
  CNI_CONTAINERID: ['ADD', 'CHECK', 'DEL'],
  CNI_NETNS: ['ADD', 'CHECK'],
  CNI_IFNAME: ['ADD', 'CHECK', 'DEL'],
  CNI_ARGS: [],
  CNI_PATH: ['ADD', 'CHECK', 'DEL', 'GC', 'STATUS'],
  CNI_NETNS_OVERRIDE: [],
};

function validateContainerID(id: string): CniError | undefined {
  if (!NAME_RE.test(id)) return new CniError(ErrorCode.InvalidEnvironmentVariables, 'invalid characters in containerID', id);
  return undefined;
}

// skel's own messages; details name the variable where skel leaves them empty.
function validateIfName(name: string): CniError | undefined {
  const bad = (msg: string, details = `CNI_IFNAME=${JSON.stringify(name)}`) =>
    new CniError(ErrorCode.InvalidEnvironmentVariables, msg, details);
  if (Buffer.byteLength(name) > 15) return bad('interface name is too long', 'interface name should be less than 16 characters');
  if (name === '.' || name === '..') return bad('interface name is . or ..');
  if (/[/:\s]/u.test(name)) return bad('interface name contains / or : or whitespace characters');
  return undefined;
}

const VALIDATORS: Record<string, (v: string) => CniError | undefined> = {
  CNI_CONTAINERID: validateContainerID,
  CNI_IFNAME: validateIfName,
};

interface Parsed {
  cmd: string;
  args: CmdArgs;
}

async function readEnvAndStdin(io: PluginIO): Promise<Parsed> {
  const get = (k: string) => io.env[k] ?? '';
  const cmd = get('CNI_COMMAND');
  const missing: string[] = [];
  for (const [name, requiredFor] of Object.entries(REQUIRED)) {
    const value = get(name);
    const required = requiredFor.includes(cmd as Cmd);
    if (value === '') {
      if (required || name === 'CNI_COMMAND') missing.push(name);
    } else if (required) {
      const err = VALIDATORS[name]?.(value);
      if (err !== undefined) throw err;
    }
  }
  if (missing.length > 0) {
    throw new CniError(ErrorCode.InvalidEnvironmentVariables, `required env variables [${missing.join(',')}] missing`);
  }

  let stdinData: Buffer = Buffer.alloc(0);
  if (cmd !== 'VERSION') {
    try {
      stdinData = await io.readStdin();
    } catch (err) {
      throw new CniError(ErrorCode.IOFailure, `error reading from stdin: ${(err as Error).message}`);
    }
  }
  let config: Record<string, unknown> = {};
  if (cmd !== 'VERSION') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(stdinData.toString('utf8'));
    } catch (err) {
      throw new CniError(ErrorCode.DecodingFailure, `error unmarshall network config: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new CniError(ErrorCode.DecodingFailure, 'error unmarshall network config: expected a JSON object');
    }
    config = parsed as Record<string, unknown>;
    const name = config.name;
    if (name !== undefined && name !== null && typeof name !== 'string') {
      throw new CniError(ErrorCode.DecodingFailure, `error unmarshall network config: name must be a string, got ${typeof name}`);
    }
    if (name === undefined || name === null || name === '') {
      throw new CniError(ErrorCode.InvalidNetworkConfig, 'missing network name');
    }
    if (!NAME_RE.test(name)) throw new CniError(ErrorCode.InvalidNetworkConfig, 'invalid characters found in network name', name);
  }
  return {
    cmd,
    args: {
      containerID: get('CNI_CONTAINERID'),
      netns: get('CNI_NETNS'),
      ifName: get('CNI_IFNAME'),
      args: get('CNI_ARGS'),
      path: get('CNI_PATH'),
      netnsOverride: get('CNI_NETNS_OVERRIDE'),
      stdinData,
      config,
      cniVersion: '',
    },
  };
}

function confVersion(args: CmdArgs): string {
  try {
    return decodeConfVersion(args.config);
  } catch (err) {
    throw new CniError(ErrorCode.DecodingFailure, (err as Error).message);
  }
}

function gte(a: string, b: string): boolean {
  try {
    return greaterThanOrEqual(a, b);
  } catch (err) {
    throw new CniError(ErrorCode.DecodingFailure, (err as Error).message);
  }
}

/** CHECK/GC/STATUS: the config must be at least `min` and the plugin must speak a version >= it. */
function gateVerb(verb: string, min: string, version: string, supported: readonly string[]): void {
  if (!gte(version, min)) throw new CniError(ErrorCode.IncompatibleCNIVersion, `config version does not allow ${verb}`);
  if (!supported.some((v) => gte(v, version))) {
    throw new CniError(ErrorCode.IncompatibleCNIVersion, `plugin version does not allow ${verb}`);
  }
}

async function checkNetns(args: CmdArgs, io: PluginIO): Promise<void> {
  const o = args.netnsOverride;
  if (o.toUpperCase() === 'TRUE' || o === '1') return;
  if (await io.isOwnNetns(args.netns)) {
    throw new CniError(ErrorCode.InvalidNetNS, "plugin's netns and netns from CNI_NETNS should not be the same");
  }
}

function notImplemented(verb: string): CniError {
  return new CniError(ErrorCode.Internal, `plugin does not implement ${verb}`);
}

/**
 * Runs one plugin invocation and returns the exit code (0 or 1). Writes the
 * result or the error object to io.stdout, logs only to io.stderr.
 */
/** `base` with every command failing with `err`: a call refused before any handler could run. */
export function failingHandlers(base: PluginHandlers, err: unknown): PluginHandlers {
  const fail = async (): Promise<never> => {
    throw err;
  };
  return { ...base, add: fail, del: fail, check: fail, gc: fail, status: fail };
}

export async function runPlugin(handlers: PluginHandlers, io: PluginIO): Promise<number> {
  let version: string | undefined;
  try {
    let parsed: Parsed;
    try {
      parsed = await readEnvAndStdin(io);
    } catch (err) {
      if (
        err instanceof CniError &&
        err.code === ErrorCode.InvalidEnvironmentVariables &&
        (io.env.CNI_COMMAND ?? '') === '' &&
        handlers.about !== undefined
      ) {
        io.stderr(`${handlers.about}\n`);
        io.stderr(`CNI protocol versions supported: ${handlers.versions.join(', ')}\n`);
        return 0;
      }
      throw err;
    }
    const { cmd, args } = parsed;
    if (cmd === 'VERSION') {
      const info: VersionInfo = { cniVersion: CURRENT, supportedVersions: [...handlers.versions] };
      io.stdout(`${JSON.stringify(info)}\n`);
      return 0;
    }
    if (!['ADD', 'CHECK', 'DEL', 'GC', 'STATUS'].includes(cmd)) {
      throw new CniError(ErrorCode.InvalidEnvironmentVariables, `unknown CNI_COMMAND: ${cmd}`);
    }
    version = confVersion(args);
    args.cniVersion = version;
    if (cmd === 'CHECK') gateVerb('CHECK', '0.4.0', version, handlers.versions);
    if (cmd === 'GC') gateVerb('GC', '1.1.0', version, handlers.versions);
    if (cmd === 'STATUS') gateVerb('STATUS', '1.1.0', version, handlers.versions);
    const incompatible = reconcile(version, handlers.versions);
    if (incompatible !== undefined) throw incompatible;

    switch (cmd) {
      case 'ADD': {
        // skel checks after the callback; checking first keeps a plugin from
        // configuring its own namespace at all.
        await checkNetns(args, io);
        if (handlers.add === undefined) throw notImplemented('ADD');
        const result = await handlers.add(args);
        const out = resultAsVersion(result, version);
        io.stdout(formatResult(out));
        return 0;
      }
      case 'DEL':
        await checkNetns(args, io);
        if (handlers.del === undefined) throw notImplemented('DEL');
        await handlers.del(args);
        return 0;
      case 'CHECK':
        if (handlers.check === undefined) throw notImplemented('CHECK');
        await handlers.check(args);
        return 0;
      case 'GC':
        if (handlers.gc === undefined) throw notImplemented('GC');
        await handlers.gc(args);
        return 0;
      default:
        if (handlers.status === undefined) throw notImplemented('STATUS');
        await handlers.status(args);
        return 0;
    }
  } catch (err) {
    const e = toCniError(err);
    io.stdout(JSON.stringify(e.toJSON(version ?? versionFromEnvSafe()), null, 4));
    return 1;
  }
}

// The error object carries the library's version when the config's is unknown.
function versionFromEnvSafe(): string {
  return CURRENT;
}
