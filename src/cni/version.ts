// Spec versions, their comparison, and results: converting between versions exactly as libcni's
// converter graph does, and printing the way Go's encoders print.
import { canonicalIP, isIPv4 } from '../lib/ip.ts';
import { CniError, ErrorCode, quote, quoteList } from './errors.ts';
// Decoding untrusted results (zod) is in decode.ts: the plugins load this file
// on every start and must not pay for zod.
import type {
  DNS,
  Interface040,
  IPConfig,
  IPConfig040,
  Result,
  Result020,
  Result040,
  Result100,
  Route,
} from './types.ts';

/** The spec version this library implements (libcni's version.Current()). */
export const CURRENT = '1.1.0';
export const ALL_VERSIONS: readonly string[] = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

export const V020: readonly string[] = ['0.1.0', '0.2.0'];
export const V040: readonly string[] = ['0.3.0', '0.3.1', '0.4.0'];
export const V100: readonly string[] = ['1.0.0', '1.1.0'];

/** Supported versions from `min` on, like version.VersionsStartingFrom. */
export function versionsFrom(min: string): string[] {
  const i = ALL_VERSIONS.indexOf(min);
  return i < 0 ? [] : ALL_VERSIONS.slice(i);
}

/** version.ParseVersion: up to three numeric parts, "" is 0.1.0. */
export function parseVersion(version: string): [number, number, number] {
  if (version === '') return [0, 1, 0];
  const parts = version.split('.');
  if (parts.length >= 4) throw new Error(`invalid version ${quote(version)}: too many parts`);
  const names = ['major', 'minor', 'micro'];
  const out: [number, number, number] = [0, 0, 0];
  parts.forEach((p, i) => {
    // strconv.Atoi: optional sign, decimal digits only.
    if (!/^[+-]?\d+$/.test(p)) throw new Error(`failed to convert ${names[i]} version part ${quote(p)}`);
    out[i] = Number(p);
  });
  return out;
}

export function compareVersions(a: string, b: string): number {
  const x = parseVersion(a);
  const y = parseVersion(b);
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
  return 0;
}

export function greaterThan(a: string, b: string): boolean {
  return compareVersions(a, b) > 0;
}

export function greaterThanOrEqual(a: string, b: string): boolean {
  return compareVersions(a, b) >= 0;
}

/**
 * libcni's list version selection: the highest of `cniVersions` plus
 * `cniVersion`, ignoring any newer than this library; with nothing left
 * the plain cniVersion stays.
 */
export function selectVersion(cniVersion: string, cniVersions: readonly string[] | undefined): string {
  if (cniVersions === undefined) return cniVersion;
  const vs: string[] = [];
  cniVersions.forEach((v, i) => {
    let gt: boolean;
    try {
      gt = greaterThan(v, CURRENT);
    } catch (err) {
      throw new Error(`invalid cniVersions entry ${v} at index ${i}: ${(err as Error).message}`);
    }
    if (!gt) vs.push(v);
  });
  if (cniVersion !== '') {
    let gt: boolean;
    try {
      gt = greaterThan(cniVersion, CURRENT);
    } catch (err) {
      throw new Error(`invalid cniVersion ${cniVersion}: ${(err as Error).message}`);
    }
    if (!gt) vs.push(cniVersion);
  }
  vs.sort(compareVersions);
  return vs.length > 0 ? (vs[vs.length - 1] as string) : cniVersion;
}

/** create.DecodeVersion / version.ConfigDecoder: a config's version, "" meaning 0.1.0. */
export function decodeConfVersion(conf: unknown): string {
  if (typeof conf !== 'object' || conf === null || Array.isArray(conf)) {
    throw new Error('decoding version from network config: not a JSON object');
  }
  const v = (conf as Record<string, unknown>).cniVersion;
  if (v === undefined || v === null || v === '') return '0.1.0';
  if (typeof v !== 'string') throw new Error(`decoding version from network config: cniVersion must be a string, got ${typeof v}`);
  return v;
}

/** version.Reconciler: the config version must be an exact member of the plugin's list. */
export function reconcile(configVersion: string, supported: readonly string[]): CniError | undefined {
  if (supported.includes(configVersion)) return undefined;
  return new CniError(
    ErrorCode.IncompatibleCNIVersion,
    'incompatible CNI versions',
    `config is ${quote(configVersion)}, plugin supports ${quoteList(supported)}`,
  );
}

// ------------------------------------------- normalizing (Go's omitempty)

export function cidrOut(s: string): string {
  const slash = s.indexOf('/');
  return `${canonicalIP(s.slice(0, slash))}${s.slice(slash)}`;
}

export function ipOut(s: string | null | undefined): string | undefined {
  return s === undefined || s === null || s === '' ? undefined : canonicalIP(s);
}

export function strOut(s: string | null | undefined): string | undefined {
  return s === undefined || s === null || s === '' ? undefined : s;
}

export function numOut(n: number | null | undefined): number | undefined {
  return n === undefined || n === null || n === 0 ? undefined : n;
}

export function listOut<T>(l: T[] | null | undefined): T[] | undefined {
  return l === undefined || l === null || l.length === 0 ? undefined : l;
}

export type RawRoute = { dst: string; gw?: string | null; mtu?: number | null; advmss?: number | null; priority?: number | null; table?: number | null; scope?: number | null };
export type RawDNS = { nameservers?: string[] | null; domain?: string | null; search?: string[] | null; options?: string[] | null };

/** A Route with Go's omitempty rules: zero mtu/advmss/priority vanish, table/scope 0 stay. */
export function routeOut(r: RawRoute): Route {
  const out: Route = { dst: cidrOut(r.dst) };
  const gw = ipOut(r.gw);
  if (gw !== undefined) out.gw = gw;
  const mtu = numOut(r.mtu);
  if (mtu !== undefined) out.mtu = mtu;
  const advmss = numOut(r.advmss);
  if (advmss !== undefined) out.advmss = advmss;
  const priority = numOut(r.priority);
  if (priority !== undefined) out.priority = priority;
  if (r.table !== undefined && r.table !== null) out.table = r.table;
  if (r.scope !== undefined && r.scope !== null) out.scope = r.scope;
  return out;
}

export function dnsOut(d: RawDNS | null | undefined): DNS {
  const out: DNS = {};
  if (d === undefined || d === null) return out;
  const ns = listOut(d.nameservers);
  if (ns !== undefined) out.nameservers = [...ns];
  const domain = strOut(d.domain);
  if (domain !== undefined) out.domain = domain;
  const search = listOut(d.search);
  if (search !== undefined) out.search = [...search];
  const options = listOut(d.options);
  if (options !== undefined) out.options = [...options];
  return out;
}

export function dnsIsEmpty(d: DNS | undefined): boolean {
  return d === undefined || (d.nameservers === undefined && d.domain === undefined && d.search === undefined && d.options === undefined);
}

// -------------------------------------------------------------- conversion

export function isResult020(r: Result): r is Result020 {
  return V020.includes(r.cniVersion);
}

export function isResult040(r: Result): r is Result040 {
  return V040.includes(r.cniVersion);
}

export function isResult100(r: Result): r is Result100 {
  return V100.includes(r.cniVersion);
}

function copyDNS(d: DNS | undefined): DNS {
  return dnsOut(d);
}

function copyRoute(r: Route): Route {
  return { ...r };
}

function from02xTo04x(from: Result020, to: string): Result040 {
  const out: Result040 = { cniVersion: to, dns: copyDNS(from.dns) };
  const ips: IPConfig040[] = [];
  const routes: Route[] = [];
  for (const [fam, ver] of [['ip4', '4'], ['ip6', '6']] as const) {
    const c = from[fam];
    if (c === undefined) continue;
    const ip: IPConfig040 = { version: ver, address: c.ip };
    if (c.gateway !== undefined) ip.gateway = c.gateway;
    ips.push(ip);
    for (const r of c.routes ?? []) routes.push(copyRoute(r));
  }
  if (ips.length > 0) out.ips = ips;
  if (routes.length > 0) out.routes = routes;
  return out;
}

function from04xTo02x(from: Result040, to: string): Result020 {
  const out: Result020 = { cniVersion: to, dns: copyDNS(from.dns) };
  for (const ip of from.ips ?? []) {
    // 0.2.0 has room for one address per family: the first of each wins.
    if (ip.version === '4' && out.ip4 === undefined) {
      out.ip4 = ip.gateway === undefined ? { ip: ip.address } : { ip: ip.address, gateway: ip.gateway };
    } else if (ip.version === '6' && out.ip6 === undefined) {
      out.ip6 = ip.gateway === undefined ? { ip: ip.address } : { ip: ip.address, gateway: ip.gateway };
    }
    if (out.ip4 !== undefined && out.ip6 !== undefined) break;
  }
  for (const r of from.routes ?? []) {
    const target = isIPv4(r.dst.slice(0, r.dst.indexOf('/'))) ? out.ip4 : out.ip6;
    if (target === undefined) continue;
    const route: Route = r.gw === undefined ? { dst: r.dst } : { dst: r.dst, gw: r.gw };
    (target.routes ??= []).push(route);
  }
  if (out.ip4 === undefined && out.ip6 === undefined) throw new Error('cannot convert: no valid IP addresses');
  return out;
}

function from04xTo04x(from: Result040, to: string): Result040 {
  return structuredClone({ ...from, cniVersion: to });
}

function from04xTo1x(from: Result040, to: string): Result100 {
  const out: Result100 = { cniVersion: to };
  if (from.interfaces !== undefined) out.interfaces = from.interfaces.map((i) => ({ ...i }));
  if (from.ips !== undefined) {
    out.ips = from.ips.map((c) => {
      const o: IPConfig = { address: c.address };
      if (c.interface !== undefined) o.interface = c.interface;
      if (c.gateway !== undefined) o.gateway = c.gateway;
      return o;
    });
  }
  if (from.routes !== undefined) out.routes = from.routes.map(copyRoute);
  const dns = copyDNS(from.dns);
  if (!dnsIsEmpty(dns)) out.dns = dns;
  return out;
}

function from1xTo04x(from: Result100, to: string): Result040 {
  const out: Result040 = { cniVersion: to, dns: copyDNS(from.dns) };
  if (from.interfaces !== undefined) {
    // 0.4.0 interfaces carry only name, mac and sandbox.
    out.interfaces = from.interfaces.map((i) => {
      const o: Interface040 = { name: i.name };
      if (i.mac !== undefined) o.mac = i.mac;
      if (i.sandbox !== undefined) o.sandbox = i.sandbox;
      return o;
    });
  }
  if (from.ips !== undefined) {
    out.ips = from.ips.map((c) => {
      const o: IPConfig040 = { version: isIPv4(c.address.slice(0, c.address.indexOf('/'))) ? '4' : '6', address: c.address };
      if (c.interface !== undefined) o.interface = c.interface;
      if (c.gateway !== undefined) o.gateway = c.gateway;
      return o;
    });
  }
  if (from.routes !== undefined) out.routes = from.routes.map(copyRoute);
  return out;
}

/**
 * types.Result.GetAsVersion: converts along libcni's registered converters.
 * Every pair of the seven versions is reachable; unknown versions are refused,
 * and so is a result without addresses going to 0.1.0/0.2.0.
 */
export function convertResult(from: Result, toVersion: string): Result {
  const to = toVersion === '' ? '0.1.0' : toVersion;
  const fromVersion = from.cniVersion;
  if (fromVersion === to) return from;
  const known = ALL_VERSIONS.includes(fromVersion) && ALL_VERSIONS.includes(to);
  if (!known) throw new Error(`no converter for CNI result version ${fromVersion} to ${to}`);
  if (isResult020(from)) {
    if (V020.includes(to)) return { ...structuredClone(from), cniVersion: to };
    const r040 = from02xTo04x(from, V040.includes(to) ? to : '0.4.0');
    return V040.includes(to) ? r040 : from04xTo1x(r040, to);
  }
  if (isResult040(from)) {
    if (V020.includes(to)) return from04xTo02x(from, to);
    if (V040.includes(to)) return from04xTo04x(from, to);
    return from04xTo1x(from, to);
  }
  const r100 = from as Result100;
  if (V100.includes(to)) return { ...structuredClone(r100), cniVersion: to };
  if (V040.includes(to)) return from1xTo04x(r100, to);
  return from04xTo02x(from1xTo04x(r100, '0.4.0'), to);
}

/** Any result as the current (1.1.0) model, for plugins and runtimes to work on. */
export function toCurrent(r: Result): Result100 {
  return convertResult(r, CURRENT) as Result100;
}

// ---------------------------------------------------------------- printing

/** Sorts object keys recursively: Go re-marshals 1.x results through a map. */
export function sortKeysDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeysDeep);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeysDeep((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** Field order of Go's structs for 0.x results; 1.x go through a map (sorted keys). */
export function resultToJSONValue(r: Result): unknown {
  if (isResult100(r)) return sortKeysDeep(r);
  const route = (x: Route) => {
    const o: Record<string, unknown> = { dst: x.dst };
    for (const k of ['gw', 'mtu', 'advmss', 'priority', 'table', 'scope'] as const) if (x[k] !== undefined) o[k] = x[k];
    return o;
  };
  const dns = (d: DNS) => {
    const o: Record<string, unknown> = {};
    for (const k of ['nameservers', 'domain', 'search', 'options'] as const) if (d[k] !== undefined) o[k] = d[k];
    return o;
  };
  const out: Record<string, unknown> = { cniVersion: r.cniVersion };
  if (isResult020(r)) {
    for (const fam of ['ip4', 'ip6'] as const) {
      const c = r[fam];
      if (c === undefined) continue;
      const o: Record<string, unknown> = { ip: c.ip };
      if (c.gateway !== undefined) o.gateway = c.gateway;
      if (c.routes !== undefined) o.routes = c.routes.map(route);
      out[fam] = o;
    }
  } else {
    const r4 = r as Result040;
    if (r4.interfaces !== undefined) {
      out.interfaces = r4.interfaces.map((i) => {
        const o: Record<string, unknown> = { name: i.name };
        if (i.mac !== undefined) o.mac = i.mac;
        if (i.sandbox !== undefined) o.sandbox = i.sandbox;
        return o;
      });
    }
    if (r4.ips !== undefined) {
      out.ips = r4.ips.map((c) => {
        const o: Record<string, unknown> = { version: c.version };
        if (c.interface !== undefined) o.interface = c.interface;
        o.address = c.address;
        if (c.gateway !== undefined) o.gateway = c.gateway;
        return o;
      });
    }
    if (r4.routes !== undefined) out.routes = r4.routes.map(route);
  }
  out.dns = dns(r.dns ?? {});
  return out;
}

/** Result.PrintTo: indented with four spaces, no trailing newline. */
export function formatResult(r: Result): string {
  return JSON.stringify(resultToJSONValue(r), null, 4);
}

/** types.PrintResult's conversion step; `result` without cniVersion is taken as current. */
export function resultAsVersion(result: Result, version: string): Result {
  const from = result.cniVersion === '' ? { ...result, cniVersion: CURRENT } : result;
  return convertResult(from, version);
}

/** A result's addresses, any version: used by CHECK-style comparisons and tests. */
export function addressesOf(r: Result): string[] {
  if (isResult020(r)) return [r.ip4?.ip, r.ip6?.ip].filter((x): x is string => x !== undefined);
  return ((r as Result100).ips ?? []).map((i) => i.address);
}
