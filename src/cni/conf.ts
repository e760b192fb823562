// Loading network configurations as libcni's conf.go does: .conflist files
// first (lexical order, first whose name matches), then single-plugin
// .conf/.json files wrapped as a one-plugin list, plus plugin configs from
// the sibling folder <dir>/<network name>/*.conf. Also the per-plugin request
// (stdin) derivation: name, cniVersion, prevResult, runtimeConfig.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { quote } from './errors.ts';
import { describeIssues, PluginConfSchema, type PluginConf, type Result } from './types.ts';
import { resultToJSONValue, selectVersion, sortKeysDeep } from './version.ts';

export interface PluginConfig {
  /** The fields libcni decodes (type, capabilities, ...). */
  network: PluginConf;
  /** The whole object, unknown keys included: it is what the plugin receives. */
  raw: Record<string, unknown>;
  bytes: Buffer;
}

export interface NetworkConfigList {
  name: string;
  /** The version chosen from cniVersion and cniVersions. */
  cniVersion: string;
  disableCheck: boolean;
  disableGC: boolean;
  loadOnlyInlinedPlugins: boolean;
  plugins: PluginConfig[];
  /** The bytes as read: what the result cache stores. */
  bytes: Buffer;
}

export class NotFoundError extends Error {
  constructor(dir: string, name: string) {
    super(`no net configuration with name "${name}" in ${dir}`);
    this.name = 'NotFoundError';
  }
}

export class NoConfigsFoundError extends Error {
  constructor(dir: string) {
    super(`no net configurations found in ${dir}`);
    this.name = 'NoConfigsFoundError';
  }
}

function goType(v: unknown): string {
  if (v === null) return '<nil>';
  if (Array.isArray(v)) return '[]interface {}';
  switch (typeof v) {
    case 'string':
      return 'string';
    case 'number':
      return 'float64';
    case 'boolean':
      return 'bool';
    default:
      return 'map[string]interface {}';
  }
}

function parseJSON(bytes: Buffer | string): unknown {
  return JSON.parse(typeof bytes === 'string' ? bytes : bytes.toString('utf8'));
}

/** NetworkPluginConfFromBytes: one plugin's object, which must name its `type`. */
export function pluginConfFromBytes(bytes: Buffer): PluginConfig {
  let raw: unknown;
  try {
    raw = parseJSON(bytes);
  } catch (err) {
    throw new Error(`error parsing configuration: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error(`error parsing configuration: expected a JSON object, got ${goType(raw)}`);
  }
  const p = PluginConfSchema.safeParse(raw);
  if (!p.success) throw new Error(`error parsing configuration: ${describeIssues(p.error)}`);
  if (p.data.type === undefined || p.data.type === null || p.data.type === '') {
    throw new Error(`error parsing configuration: missing 'type'`);
  }
  return { network: p.data, raw: raw as Record<string, unknown>, bytes };
}

function pluginConfFromObject(obj: unknown): PluginConfig {
  return pluginConfFromBytes(Buffer.from(JSON.stringify(sortKeysDeep(obj))));
}

/** NetworkConfFromBytes: a list, its version negotiated, inlined plugins parsed. */
export function confListFromBytes(bytes: Buffer): NetworkConfigList {
  const fail = (msg: string): Error => new Error(`error parsing configuration list: ${msg}`);
  let raw: unknown;
  try {
    raw = parseJSON(bytes);
  } catch (err) {
    throw fail((err as Error).message);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw fail(`expected a JSON object, got ${goType(raw)}`);
  const list = raw as Record<string, unknown>;

  if (!('name' in list)) throw fail('no name');
  const name = list.name;
  if (typeof name !== 'string') throw fail(`invalid name type ${goType(name)}`);

  let cniVersion = '';
  if ('cniVersion' in list) {
    if (typeof list.cniVersion !== 'string') throw fail(`invalid cniVersion type ${goType(list.cniVersion)}`);
    cniVersion = list.cniVersion;
  }
  if ('cniVersions' in list) {
    const rvs = list.cniVersions;
    if (!Array.isArray(rvs)) throw fail(`invalid type for cniVersions: ${goType(rvs)}`);
    const vs: string[] = [];
    rvs.forEach((v, i) => {
      if (typeof v !== 'string') throw fail(`invalid type for cniVersions index ${i}: ${goType(v)}`);
      vs.push(v);
    });
    try {
      cniVersion = selectVersion(cniVersion, vs);
    } catch (err) {
      throw fail((err as Error).message);
    }
  }

  const readBool = (key: string): boolean => {
    if (!(key in list)) return false;
    const v = list[key];
    if (typeof v === 'boolean') return v;
    if (typeof v !== 'string') throw fail(`invalid type ${goType(v)} for ${key}`);
    const s = v.toLowerCase();
    if (s === 'true') return true;
    if (s === 'false') return false;
    throw fail(`invalid value ${quote(s)} for ${key}`);
  };
  const out: NetworkConfigList = {
    name,
    cniVersion,
    disableCheck: readBool('disableCheck'),
    disableGC: readBool('disableGC'),
    loadOnlyInlinedPlugins: readBool('loadOnlyInlinedPlugins'),
    plugins: [],
    bytes,
  };

  if (!('plugins' in list)) {
    if (out.loadOnlyInlinedPlugins) throw fail("`loadOnlyInlinedPlugins` is true, and no 'plugins' key");
    return out;
  }
  const plugins = list.plugins;
  if (!Array.isArray(plugins)) throw fail(`invalid 'plugins' type ${goType(plugins)}`);
  if (plugins.length === 0) throw fail('no plugins in list');
  plugins.forEach((p, i) => {
    try {
      out.plugins.push(pluginConfFromObject(p));
    } catch (err) {
      throw new Error(`failed to parse plugin config ${i}: ${(err as Error).message}`);
    }
  });
  return out;
}

/** ConfFiles: regular files in `dir` (not recursive) with one of the extensions; a missing dir is empty. */
export function confFiles(dir: string, extensions: readonly string[]): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries
    .filter((e) => !e.isDirectory() && extensions.includes(extname(e.name)))
    .map((e) => join(dir, e.name));
}

function readConfFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new Error(`error reading ${file}: ${(err as Error).message}`);
  }
}

/** Plugin objects in <dir>/<network name>/*.conf, in file-name order (CNI 1.1). */
export function pluginConfsFromDir(confDir: string, networkName: string): PluginConfig[] {
  const dir = join(confDir, networkName);
  let files: string[];
  try {
    files = confFiles(dir, ['.conf']).sort();
  } catch (err) {
    throw new Error(`failed to read plugin config files in ${dir}: ${(err as Error).message}`);
  }
  return files.map((f) => pluginConfFromBytes(readConfFile(f)));
}

/** NetworkConfFromFile: a conflist plus its sibling-folder plugins. */
export function confListFromFile(file: string): NetworkConfigList {
  const list = confListFromBytes(readConfFile(file));
  if (!list.loadOnlyInlinedPlugins) list.plugins.push(...pluginConfsFromDir(dirname(file), list.name));
  if (list.plugins.length === 0) throw new Error('no plugin configs found');
  return list;
}

/** ConfListFromConf: a single-plugin config wrapped as a list. */
export function confListFromConf(conf: PluginConfig): NetworkConfigList {
  const wrapped = {
    cniVersion: conf.network.cniVersion ?? '',
    name: conf.network.name ?? '',
    plugins: [conf.raw],
  };
  return confListFromBytes(Buffer.from(JSON.stringify(wrapped)));
}

/** LoadConf: the first .conf/.json (lexical order) whose name matches. */
export function loadConf(dir: string, name: string): PluginConfig {
  const files = confFiles(dir, ['.conf', '.json']).sort();
  if (files.length === 0) throw new NoConfigsFoundError(dir);
  for (const f of files) {
    const conf = pluginConfFromBytes(readConfFile(f));
    if (conf.network.name === name) return conf;
  }
  throw new NotFoundError(dir, name);
}

/** LoadNetworkConf: the network `name` from `dir`, conflists first. */
export function loadNetworkConfList(dir: string, name: string): NetworkConfigList {
  const lists = confFiles(dir, ['.conflist']).sort();
  for (const f of lists) {
    const list = confListFromFile(f);
    if (list.name === name) return list;
  }
  try {
    return confListFromConf(loadConf(dir, name));
  } catch (err) {
    if (err instanceof NoConfigsFoundError && lists.length > 0) throw new NotFoundError(dir, name);
    throw err;
  }
}

/** InjectConf: set top-level keys of a plugin's object (null values refused). */
export function injectConf(orig: PluginConfig, values: Record<string, unknown>): PluginConfig {
  const config: Record<string, unknown> = { ...orig.raw };
  for (const [key, value] of Object.entries(values)) {
    if (key === '') throw new Error('keys cannot be empty');
    if (value === undefined || value === null) throw new Error(`key '${key}' value must not be nil`);
    config[key] = value;
  }
  return pluginConfFromObject(config);
}

/** What the runtime knows about one attachment (libcni RuntimeConf). */
export interface RuntimeConf {
  containerID: string;
  netns: string;
  ifName: string;
  args: [string, string][];
  capabilityArgs: Record<string, unknown>;
}

/**
 * runtimeConfig for the capabilities the plugin declares true and the
 * runtime has values for; a static runtimeConfig stays when none apply.
 */
export function injectRuntimeConfig(orig: PluginConfig, rt: RuntimeConf): PluginConfig {
  const rc: Record<string, unknown> = {};
  for (const [cap, supported] of Object.entries(orig.network.capabilities ?? {})) {
    if (!supported) continue;
    if (Object.hasOwn(rt.capabilityArgs, cap)) rc[cap] = rt.capabilityArgs[cap];
  }
  return Object.keys(rc).length > 0 ? injectConf(orig, { runtimeConfig: rc }) : orig;
}

/** buildOneConfig: the stdin of one plugin in a chain. */
export function buildOneConfig(
  name: string,
  cniVersion: string,
  orig: PluginConfig,
  prevResult: Result | undefined,
  rt: RuntimeConf | undefined,
): PluginConfig {
  const inject: Record<string, unknown> = { name, cniVersion };
  if (prevResult !== undefined) inject.prevResult = resultToJSONValue(prevResult);
  const conf = injectConf(orig, inject);
  return rt === undefined ? conf : injectRuntimeConfig(conf, rt);
}
