// libcni's result cache, byte-compatible so that libcni-based runtimes
// (containerd, CRI-O, podman) and Knit can read each other's entries:
// <cacheDir>/results/<network>-<containerID>-<ifname>, kind "cniCacheV1".
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArgPair } from './args.ts';
import type { RuntimeConf } from './conf.ts';
import { CacheFileSchema, type Result } from './types.ts';
import { convertResult, resultToJSONValue, sortKeysDeep } from './version.ts';
import { createResultFromJSON } from './decode.ts';

export const CACHE_KIND = 'cniCacheV1';
export const DEFAULT_CACHE_DIR = '/var/lib/cni';

/** One cached attachment (libcni NetworkAttachment). */
export interface CachedAttachment {
  containerID: string;
  network: string;
  ifName: string;
  config: Buffer;
  netns: string;
  cniArgs: ArgPair[];
  capabilityArgs: Record<string, unknown>;
}

type AttachmentKey = Pick<RuntimeConf, 'containerID' | 'ifName'>;

export class ResultCache {
  readonly dir: string;

  constructor(dir: string = DEFAULT_CACHE_DIR) {
    this.dir = dir;
  }

  get resultsDir(): string {
    return join(this.dir, 'results');
  }

  filePath(netName: string, rt: AttachmentKey): string {
    if (netName === '' || rt.containerID === '' || rt.ifName === '') {
      throw new Error(
        `cache file path requires network name (${JSON.stringify(netName)}), container ID (${JSON.stringify(rt.containerID)}), and interface name (${JSON.stringify(rt.ifName)})`,
      );
    }
    return join(this.resultsDir, `${netName}-${rt.containerID}-${rt.ifName}`);
  }

  /** cacheAdd: written after a whole ADD chain succeeded. */
  add(result: Result, config: Buffer, netName: string, rt: RuntimeConf): void {
    // Field order of Go's cachedInfo struct; maps (capabilityArgs, result) come out key-sorted.
    const cached: Record<string, unknown> = {
      kind: CACHE_KIND,
      containerId: rt.containerID,
      config: config.toString('base64'),
      ifName: rt.ifName,
      networkName: netName,
    };
    if (rt.netns !== '') cached.netns = rt.netns;
    if (rt.args.length > 0) cached.cniArgs = rt.args;
    if (Object.keys(rt.capabilityArgs).length > 0) cached.capabilityArgs = sortKeysDeep(rt.capabilityArgs);
    cached.result = sortKeysDeep(resultToJSONValue(result));
    const file = this.filePath(netName, rt);
    mkdirSync(this.resultsDir, { recursive: true, mode: 0o700 });
    // Write then rename: a crash must not leave the zero-byte files that break later DELs.
    const tmp = join(this.resultsDir, `.tmp-${process.pid}-${Date.now()}`);
    writeFileSync(tmp, JSON.stringify(cached), { mode: 0o600 });
    renameSync(tmp, file);
  }

  /** cacheDel: a missing entry is fine. */
  del(netName: string, rt: AttachmentKey): void {
    let file: string;
    try {
      file = this.filePath(netName, rt);
    } catch {
      return;
    }
    rmSync(file, { force: true });
  }

  private read(netName: string, rt: AttachmentKey): Buffer | undefined {
    try {
      return readFileSync(this.filePath(netName, rt));
    } catch {
      return undefined;
    }
  }

  /**
   * getCachedResult: the cached final ADD result converted to `cniVersion`,
   * undefined when there is no entry. A file that is not a cniCacheV1 object
   * is read as the legacy format (a bare result).
   */
  getResult(netName: string, cniVersion: string, rt: AttachmentKey): Result | undefined {
    const data = this.read(netName, rt);
    if (data === undefined) return undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(data.toString());
    } catch (err) {
      throw new Error(`failed to parse cached result of network ${JSON.stringify(netName)}: ${(err as Error).message}`);
    }
    const p = CacheFileSchema.safeParse(raw);
    const resultJSON = p.success && p.data.kind === CACHE_KIND ? (p.data.result ?? {}) : raw;
    const result = createResultFromJSON(resultJSON);
    try {
      return convertResult(result, cniVersion);
    } catch (err) {
      throw new Error(`failed to convert cached result to config version ${JSON.stringify(cniVersion)}: ${(err as Error).message}`);
    }
  }

  /** getCachedConfig: the conflist bytes and the ADD's CNI args and capability args. */
  getConfig(netName: string, rt: RuntimeConf): { config: Buffer; rt: RuntimeConf } | undefined {
    const data = this.read(netName, rt);
    if (data === undefined) return undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(data.toString());
    } catch (err) {
      throw new Error(`failed to unmarshal cached network ${JSON.stringify(netName)} config: ${(err as Error).message}`);
    }
    const p = CacheFileSchema.safeParse(raw);
    if (!p.success) throw new Error(`failed to unmarshal cached network ${JSON.stringify(netName)} config: ${p.error.issues[0]?.message}`);
    if (p.data.kind !== CACHE_KIND) {
      throw new Error(`read cached network ${JSON.stringify(netName)} config has wrong kind: ${p.data.kind}`);
    }
    return {
      config: Buffer.from(p.data.config ?? '', 'base64'),
      rt: { ...rt, args: p.data.cniArgs ?? rt.args, capabilityArgs: p.data.capabilityArgs ?? {} },
    };
  }

  /** GetCachedAttachments: every valid cniCacheV1 entry, optionally of one container, in file-name order. */
  attachments(containerID = ''): CachedAttachment[] {
    let names: string[];
    try {
      names = readdirSync(this.resultsDir).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: CachedAttachment[] = [];
    for (const name of names) {
      if (name.startsWith('.tmp-')) continue;
      if (containerID !== '') {
        const part = `-${containerID}-`;
        const pos = name.indexOf(part);
        if (pos <= 0 || pos + part.length >= name.length) continue;
      }
      let raw: unknown;
      try {
        raw = JSON.parse(readFileSync(join(this.resultsDir, name), 'utf8'));
      } catch {
        continue;
      }
      const p = CacheFileSchema.safeParse(raw);
      if (!p.success || p.data.kind !== CACHE_KIND) continue;
      const c = p.data;
      if (containerID !== '' && c.containerId !== containerID) continue;
      if (!c.ifName || !c.networkName) continue;
      out.push({
        containerID: c.containerId ?? '',
        network: c.networkName,
        ifName: c.ifName,
        config: Buffer.from(c.config ?? '', 'base64'),
        netns: c.netns ?? '',
        cniArgs: c.cniArgs ?? [],
        capabilityArgs: c.capabilityArgs ?? {},
      });
    }
    return out;
  }
}
