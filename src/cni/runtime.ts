// The CNI runtime (libcni's CNIConfig): runs a network's plugin chain for
// ADD (in order, each plugin getting the previous result), DEL (in reverse,
// all getting the cached ADD result), CHECK, STATUS and GC, and keeps the
// result cache.
import { CniError } from './errors.ts';
import { ResultCache, type CachedAttachment } from './cache.ts';
import { buildOneConfig, injectConf, type NetworkConfigList, type PluginConfig, type RuntimeConf } from './conf.ts';
import {
  execPluginWithoutResult,
  execPluginWithResult,
  findInPath,
  getVersionInfo,
  type ExecOptions,
  type InvokeArgs,
} from './invoke.ts';
import type { GCAttachment, Result, VersionInfo } from './types.ts';
import { greaterThanOrEqual } from './version.ts';

export type { RuntimeConf } from './conf.ts';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** utils.ValidateContainerID / ValidateNetworkName / ValidateInterfaceName. */
export function validateContainerID(id: string): void {
  if (id === '') throw new CniError(3, 'missing containerID');
  if (!NAME_RE.test(id)) throw new CniError(4, 'invalid characters in containerID', id);
}

export function validateNetworkName(name: string): void {
  if (name === '') throw new CniError(7, 'missing network name:');
  if (!NAME_RE.test(name)) throw new CniError(7, 'invalid characters found in network name', name);
}

export function validateInterfaceName(ifName: string): void {
  if (ifName.length === 0) throw new CniError(4, 'interface name is empty');
  if (Buffer.byteLength(ifName) > 15) {
    throw new CniError(4, 'interface name is too long', 'interface name should be less than 16 characters');
  }
  if (ifName === '.' || ifName === '..') throw new CniError(4, 'interface name is . or ..');
  if (/[/:\s]/u.test(ifName)) throw new CniError(4, 'interface name contains / or : or whitespace characters');
}

/** `type="bridge" name="mynet"`, as libcni names a failing plugin. */
function describe(p: PluginConfig, listName: string): string {
  return `type=${JSON.stringify(p.network.type ?? '')} name=${JSON.stringify(listName)}`;
}

/** An error that keeps the plugin's CNI code while adding libcni's context. */
function wrap(err: unknown, prefix: string): Error {
  const msg = err instanceof Error ? err.message : String(err);
  if (err instanceof CniError) return new CniError(err.code, `${prefix}: ${err.msg}`, err.details, { cause: err });
  return new Error(`${prefix}: ${msg}`, { cause: err });
}

export interface CniRuntimeOptions {
  /** Plugin search path (CNI_PATH). */
  path: readonly string[];
  /** Result cache root; default /var/lib/cni. */
  cacheDir?: string;
  exec?: ExecOptions;
}

export class CniRuntime {
  readonly path: readonly string[];
  readonly cache: ResultCache;
  readonly execOptions: ExecOptions;

  constructor(opts: CniRuntimeOptions) {
    this.path = opts.path;
    this.cache = new ResultCache(opts.cacheDir);
    this.execOptions = opts.exec ?? {};
  }

  private invokeArgs(command: string, rt: RuntimeConf | undefined): InvokeArgs {
    return {
      command,
      containerID: rt?.containerID ?? '',
      netns: rt?.netns ?? '',
      ifName: rt?.ifName ?? '',
      pluginArgs: rt?.args ?? [],
      path: this.path.join(':'),
    };
  }

  private async addNetwork(list: NetworkConfigList, p: PluginConfig, prev: Result | undefined, rt: RuntimeConf): Promise<Result> {
    const pluginPath = findInPath(p.network.type ?? '', this.path);
    validateContainerID(rt.containerID);
    validateNetworkName(list.name);
    validateInterfaceName(rt.ifName);
    const conf = buildOneConfig(list.name, list.cniVersion, p, prev, rt);
    return execPluginWithResult(pluginPath, conf.bytes, this.invokeArgs('ADD', rt), this.execOptions);
  }

  /** AddNetworkList: the chain in order; the final result is cached, nothing is cached on failure. */
  async addNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<Result> {
    let result: Result | undefined;
    for (const p of list.plugins) {
      try {
        result = await this.addNetwork(list, p, result, rt);
      } catch (err) {
        throw wrap(err, `plugin ${describe(p, list.name)} failed (add)`);
      }
    }
    if (result === undefined) throw new Error(`network ${JSON.stringify(list.name)} has no plugins`);
    try {
      this.cache.add(result, list.bytes, list.name, rt);
    } catch (err) {
      throw wrap(err, `failed to set network ${JSON.stringify(list.name)} cached result`);
    }
    return result;
  }

  /** CheckNetworkList: needs 0.4.0+; every plugin gets the cached ADD result. */
  async checkNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
    if (!greaterThanOrEqual(list.cniVersion, '0.4.0')) {
      throw new Error(`configuration version ${JSON.stringify(list.cniVersion)} does not support the CHECK command`);
    }
    if (list.disableCheck) return;
    let cached: Result | undefined;
    try {
      cached = this.cache.getResult(list.name, list.cniVersion, rt);
    } catch (err) {
      throw wrap(err, `failed to get network ${JSON.stringify(list.name)} cached result`);
    }
    for (const p of list.plugins) {
      const pluginPath = findInPath(p.network.type ?? '', this.path);
      const conf = buildOneConfig(list.name, list.cniVersion, p, cached, rt);
      await execPluginWithoutResult(pluginPath, conf.bytes, this.invokeArgs('CHECK', rt), this.execOptions);
    }
  }

  /**
   * DelNetworkList: the chain in reverse; from 0.4.0 on every plugin gets the
   * cached ADD result. An unreadable cache entry is dropped and DEL goes on
   * without it; the entry is removed once every plugin succeeded.
   */
  async delNetworkList(list: NetworkConfigList, rt: RuntimeConf): Promise<void> {
    let cached: Result | undefined;
    if (greaterThanOrEqual(list.cniVersion, '0.4.0')) {
      try {
        cached = this.cache.getResult(list.name, list.cniVersion, rt);
      } catch {
        this.cache.del(list.name, rt);
        cached = undefined;
      }
    }
    for (let i = list.plugins.length - 1; i >= 0; i--) {
      const p = list.plugins[i] as PluginConfig;
      try {
        const pluginPath = findInPath(p.network.type ?? '', this.path);
        const conf = buildOneConfig(list.name, list.cniVersion, p, cached, rt);
        await execPluginWithoutResult(pluginPath, conf.bytes, this.invokeArgs('DEL', rt), this.execOptions);
      } catch (err) {
        throw wrap(err, `plugin ${describe(p, list.name)} failed (delete)`);
      }
    }
    this.cache.del(list.name, rt);
  }

  /** GetStatusNetworkList: before 1.1.0 always ready; else the first failing plugin's error, code kept. */
  async statusNetworkList(list: NetworkConfigList): Promise<void> {
    if (!greaterThanOrEqual(list.cniVersion, '1.1.0')) return;
    for (const p of list.plugins) {
      const conf = injectConf(p, { name: list.name, cniVersion: list.cniVersion });
      const pluginPath = findInPath(p.network.type ?? '', this.path);
      await execPluginWithoutResult(pluginPath, conf.bytes, this.invokeArgs('STATUS', undefined), this.execOptions);
    }
  }

  /**
   * GCNetworkList: first a full DEL for every cached attachment of this
   * network not in `validAttachments` (undefined = none is valid, as cnitool
   * passes), then, from 1.1.0 on, GC to every plugin. Errors are collected.
   */
  async gcNetworkList(list: NetworkConfigList, validAttachments?: readonly GCAttachment[]): Promise<void> {
    if (list.disableGC) return;
    const errors: Error[] = [];
    let cached: CachedAttachment[] = [];
    try {
      cached = this.cache.attachments();
    } catch {
      return;
    }
    const valid = new Set((validAttachments ?? []).map((a) => `${a.containerID}\0${a.ifname}`));
    for (const a of cached) {
      if (a.network !== list.name || valid.has(`${a.containerID}\0${a.ifName}`)) continue;
      const rt: RuntimeConf = {
        containerID: a.containerID,
        netns: a.netns,
        ifName: a.ifName,
        args: a.cniArgs,
        capabilityArgs: a.capabilityArgs,
      };
      try {
        await this.delNetworkList(list, rt);
      } catch (err) {
        errors.push(wrap(err, `failed to delete stale attachment ${rt.containerID} ${rt.ifName}`));
      }
    }
    if (greaterThanOrEqual(list.cniVersion, '1.1.0')) {
      const inject: Record<string, unknown> = { name: list.name, cniVersion: list.cniVersion };
      if (validAttachments !== undefined) {
        const v = validAttachments.map((a) => ({ containerID: a.containerID, ifname: a.ifname }));
        inject['cni.dev/valid-attachments'] = v;
        inject['cni.dev/attachments'] = v;
      }
      for (const p of list.plugins) {
        try {
          const conf = injectConf(p, inject);
          const pluginPath = findInPath(p.network.type ?? '', this.path);
          await execPluginWithoutResult(pluginPath, conf.bytes, this.invokeArgs('GC', undefined), this.execOptions);
        } catch (err) {
          errors.push(wrap(err, `failed to GC plugin ${p.network.type ?? ''}`));
        }
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, errors.map((e) => e.message).join('\n'));
  }

  getCachedResult(list: NetworkConfigList, rt: RuntimeConf): Result | undefined {
    return this.cache.getResult(list.name, list.cniVersion, rt);
  }

  getCachedConfig(list: NetworkConfigList, rt: RuntimeConf): { config: Buffer; rt: RuntimeConf } | undefined {
    return this.cache.getConfig(list.name, rt);
  }

  getCachedAttachments(containerID = ''): CachedAttachment[] {
    return this.cache.attachments(containerID);
  }

  async getVersionInfo(pluginType: string): Promise<VersionInfo> {
    return getVersionInfo(findInPath(pluginType, this.path), this.execOptions);
  }

  /**
   * ValidateNetworkList: every plugin exists and supports the list's version;
   * returns the capabilities the list declares.
   */
  async validateNetworkList(list: NetworkConfigList): Promise<string[]> {
    const version = list.cniVersion === '' ? '0.1.0' : list.cniVersion;
    const caps = new Set<string>();
    const errors: string[] = [];
    for (const p of list.plugins) {
      const type = p.network.type ?? '';
      try {
        const info = await this.getVersionInfo(type);
        if (!info.supportedVersions.includes(version)) {
          errors.push(`plugin ${type} does not support config version ${JSON.stringify(version)}`);
        }
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
      for (const [c, on] of Object.entries(p.network.capabilities ?? {})) if (on) caps.add(c);
    }
    if (errors.length > 0) throw new Error(`[${errors.join(' ')}]`);
    return [...caps];
  }
}
