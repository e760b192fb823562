// Wire shapes of the CNI protocol: results of every spec version, plugin and
// list configuration, errors, VERSION output, GC attachments. Schemas use
// zod/mini because the plugin executable loads this file (start-up cost).
// Decoding follows Go's encoding/json as libcni uses it: unknown keys are
// ignored, null means absent, addresses are parsed and re-printed canonically.
import * as z from 'zod/mini';
import { familyOf } from '../lib/ip.ts';

// ---- normalised result types (what decode returns and encode prints) ----

export interface DNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

/** 1.0.0 / 1.1.0 interface. */
export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

/** 0.3.x / 0.4.0 interface. */
export interface Interface040 {
  name: string;
  mac?: string;
  sandbox?: string;
}

export interface IPConfig {
  interface?: number;
  address: string;
  gateway?: string;
}

export interface IPConfig040 extends IPConfig {
  version: string;
}

export interface Result100 {
  cniVersion: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

export interface Result040 {
  cniVersion: string;
  interfaces?: Interface040[];
  ips?: IPConfig040[];
  routes?: Route[];
  dns: DNS;
}

export interface IPConfig020 {
  ip: string;
  gateway?: string;
  routes?: Route[];
}

export interface Result020 {
  cniVersion: string;
  ip4?: IPConfig020;
  ip6?: IPConfig020;
  dns: DNS;
}

export type Result = Result020 | Result040 | Result100;

export interface GCAttachment {
  containerID: string;
  ifname: string;
}

export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

// ---- address checks shared by the schemas ----

/** Go's net.ParseCIDR: "ip/len" with the host bits kept. */
export function isCIDR(s: string): boolean {
  const slash = s.indexOf('/');
  if (slash < 0) return false;
  const fam = familyOf(s.slice(0, slash));
  const len = s.slice(slash + 1);
  return fam !== undefined && /^\d{1,3}$/.test(len) && Number(len) <= (fam === 4 ? 32 : 128);
}

const cidr = z.string().check(z.refine(isCIDR, { message: 'invalid CIDR address' }));
// Go's net.IP accepts "" as nil.
const ipOrEmpty = z.string().check(z.refine((s) => s === '' || familyOf(s) !== undefined, { message: 'invalid IP address' }));
const opt = <T extends z.ZodMiniType>(t: T) => z.optional(z.nullable(t));
const goInt = z.int();
const strList = opt(z.array(z.string()));

export const DNSSchema = z.object({
  nameservers: strList,
  domain: opt(z.string()),
  search: strList,
  options: strList,
});

export const RouteSchema = z.object({
  dst: cidr,
  gw: opt(ipOrEmpty),
  mtu: opt(goInt),
  advmss: opt(goInt),
  priority: opt(goInt),
  table: opt(goInt),
  scope: opt(goInt),
});

export const InterfaceSchema = z.object({
  name: opt(z.string()),
  mac: opt(z.string()),
  mtu: opt(goInt),
  sandbox: opt(z.string()),
  socketPath: opt(z.string()),
  pciID: opt(z.string()),
});

export const IPConfigSchema = z.object({
  version: opt(z.string()),
  interface: opt(goInt),
  address: cidr,
  gateway: opt(ipOrEmpty),
});

export const Result100Schema = z.object({
  cniVersion: opt(z.string()),
  interfaces: opt(z.array(InterfaceSchema)),
  ips: opt(z.array(IPConfigSchema)),
  routes: opt(z.array(RouteSchema)),
  dns: opt(DNSSchema),
});
// 0.3.x/0.4.0 share the raw shape; the decoder keeps fewer fields.
export const Result040Schema = Result100Schema;

export const IPConfig020Schema = z.object({
  ip: cidr,
  gateway: opt(ipOrEmpty),
  routes: opt(z.array(RouteSchema)),
});

export const Result020Schema = z.object({
  cniVersion: opt(z.string()),
  ip4: opt(IPConfig020Schema),
  ip6: opt(IPConfig020Schema),
  dns: opt(DNSSchema),
});

export const GCAttachmentSchema = z.object({
  containerID: z.string(),
  ifname: z.string(),
});

/** The fields libcni and skel decode from a plugin's configuration (types.PluginConf); others pass through. */
export const PluginConfSchema = z.looseObject({
  cniVersion: opt(z.string()),
  name: opt(z.string()),
  type: opt(z.string()),
  capabilities: opt(z.record(z.string(), z.boolean())),
  ipam: opt(z.looseObject({ type: opt(z.string()) })),
  dns: opt(DNSSchema),
  prevResult: opt(z.record(z.string(), z.unknown())),
  'cni.dev/valid-attachments': opt(z.array(GCAttachmentSchema)),
});
export type PluginConf = z.infer<typeof PluginConfSchema>;

/** A network configuration list as written on disk (libcni accepts "true"/"false" strings for the flags). */
const boolish = z.union([z.boolean(), z.string()]);
export const NetConfListSchema = z.looseObject({
  cniVersion: opt(z.string()),
  cniVersions: opt(z.array(z.string())),
  name: z.string(),
  disableCheck: z.optional(boolish),
  disableGC: z.optional(boolish),
  loadOnlyInlinedPlugins: z.optional(boolish),
  plugins: z.optional(z.array(z.record(z.string(), z.unknown()))),
});

/** A plugin's error as libcni decodes it: every field optional, code a uint. */
export const ErrorSchema = z.looseObject({
  cniVersion: opt(z.string()),
  code: opt(z.int().check(z.nonnegative())),
  msg: opt(z.string()),
  details: opt(z.string()),
});

export const VersionInfoSchema = z.looseObject({
  cniVersion: opt(z.string()),
  supportedVersions: opt(z.array(z.string())),
});

/** libcni's result cache file, kind "cniCacheV1". */
export const CacheFileSchema = z.object({
  kind: z.string(),
  containerId: opt(z.string()),
  config: opt(z.base64()),
  ifName: opt(z.string()),
  networkName: opt(z.string()),
  netns: opt(z.string()),
  cniArgs: opt(z.array(z.tuple([z.string(), z.string()]))),
  capabilityArgs: opt(z.record(z.string(), z.unknown())),
  result: opt(z.record(z.string(), z.unknown())),
});

/** "a.b[0].c: message" for the first few issues: errors must name the field. */
export function describeIssues(error: z.core.$ZodError, prefix = ''): string {
  return error.issues
    .slice(0, 3)
    .map((i) => {
      let path = prefix;
      for (const p of i.path) {
        path += typeof p === 'number' ? `[${p}]` : path === '' ? String(p) : `.${String(p)}`;
      }
      return path === '' ? i.message : `${path}: ${i.message}`;
    })
    .join('; ');
}
