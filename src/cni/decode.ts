// Decoding a result (a plugin's stdout, the cache, a prevResult) into the
// typed Result of a given version, validated by the schemas of types.ts. Apart
// from version.ts so that the plugin executables, which only print results
// the daemon made, never load zod.
import { CniError, ErrorCode, quote } from './errors.ts';
import { describeIssues, Result020Schema, Result100Schema, type Interface, type Interface040, type IPConfig, type IPConfig020, type IPConfig040, type Result, type Result020, type Result040, type Result100 } from './types.ts';
import { cidrOut, decodeConfVersion, dnsIsEmpty, dnsOut, ipOut, listOut, numOut, routeOut, strOut, V020, V040, V100 } from './version.ts';

function badResult(prefix: string, issues: string): Error {
  return new Error(`${prefix}: ${issues}`);
}

function mismatch(supported: readonly string[], got: string): Error {
  return new Error(`result type supports [${supported.join(' ')}] but unmarshalled CNIVersion is ${quote(got)}`);
}

/**
 * create.Create(version, bytes): picks the result type registered for
 * `version`, decodes `raw` with it, and requires the embedded cniVersion to
 * be one that type handles.
 */
export function createResult(version: string, raw: unknown): Result {
  if (V020.includes(version) || version === '') return decode020(raw);
  if (V040.includes(version)) return decode040(raw);
  if (V100.includes(version)) return decode100(raw);
  throw new Error(`unsupported CNI result version ${quote(version)}`);
}

/** create.CreateFromBytes: the version comes from the JSON itself ("" = 0.1.0). */
export function createResultFromJSON(raw: unknown): Result {
  return createResult(decodeConfVersion(raw), raw);
}

function decode020(raw: unknown): Result020 {
  const p = Result020Schema.safeParse(raw);
  if (!p.success) throw badResult('invalid 0.2.0 result', describeIssues(p.error));
  const v = p.data.cniVersion ?? '';
  if (!['', ...V020].includes(v)) throw mismatch(['', ...V020], v);
  const out: Result020 = { cniVersion: v === '' ? '0.1.0' : v, dns: {} };
  for (const fam of ['ip4', 'ip6'] as const) {
    const c = p.data[fam];
    if (c === undefined || c === null) continue;
    const ipc: IPConfig020 = { ip: cidrOut(c.ip) };
    const gw = ipOut(c.gateway);
    if (gw !== undefined) ipc.gateway = gw;
    const routes = listOut(c.routes);
    if (routes !== undefined) ipc.routes = routes.map(routeOut);
    out[fam] = ipc;
  }
  out.dns = dnsOut(p.data.dns);
  return out;
}

function decode040(raw: unknown): Result040 {
  const p = Result100Schema.safeParse(raw);
  if (!p.success) throw badResult('invalid result', describeIssues(p.error));
  const v = p.data.cniVersion ?? '';
  if (!V040.includes(v)) throw mismatch(V040, v);
  const out: Result040 = { cniVersion: v, dns: {} };
  const ifs = listOut(p.data.interfaces);
  if (ifs !== undefined) {
    out.interfaces = ifs.map((i) => {
      const o: Interface040 = { name: i.name ?? '' };
      const mac = strOut(i.mac);
      if (mac !== undefined) o.mac = mac;
      const sandbox = strOut(i.sandbox);
      if (sandbox !== undefined) o.sandbox = sandbox;
      return o;
    });
  }
  const ips = listOut(p.data.ips);
  if (ips !== undefined) {
    out.ips = ips.map((c) => {
      const o: IPConfig040 = { version: c.version ?? '', address: cidrOut(c.address) };
      if (c.interface !== undefined && c.interface !== null) o.interface = c.interface;
      const gw = ipOut(c.gateway);
      if (gw !== undefined) o.gateway = gw;
      return o;
    });
  }
  const routes = listOut(p.data.routes);
  if (routes !== undefined) out.routes = routes.map(routeOut);
  out.dns = dnsOut(p.data.dns);
  return out;
}

function decode100(raw: unknown): Result100 {
  const p = Result100Schema.safeParse(raw);
  if (!p.success) throw badResult('invalid result', describeIssues(p.error));
  const v = p.data.cniVersion ?? '';
  if (!V100.includes(v)) throw mismatch(V100, v);
  const out: Result100 = { cniVersion: v };
  const ifs = listOut(p.data.interfaces);
  if (ifs !== undefined) {
    out.interfaces = ifs.map((i) => {
      const o: Interface = { name: i.name ?? '' };
      const mac = strOut(i.mac);
      if (mac !== undefined) o.mac = mac;
      const mtu = numOut(i.mtu);
      if (mtu !== undefined) o.mtu = mtu;
      const sandbox = strOut(i.sandbox);
      if (sandbox !== undefined) o.sandbox = sandbox;
      const socketPath = strOut(i.socketPath);
      if (socketPath !== undefined) o.socketPath = socketPath;
      const pciID = strOut(i.pciID);
      if (pciID !== undefined) o.pciID = pciID;
      return o;
    });
  }
  const ips = listOut(p.data.ips);
  if (ips !== undefined) {
    out.ips = ips.map((c) => {
      const o: IPConfig = { address: cidrOut(c.address) };
      if (c.interface !== undefined && c.interface !== null) o.interface = c.interface;
      const gw = ipOut(c.gateway);
      if (gw !== undefined) o.gateway = gw;
      return o;
    });
  }
  const routes = listOut(p.data.routes);
  if (routes !== undefined) out.routes = routes.map(routeOut);
  const dns = dnsOut(p.data.dns);
  if (!dnsIsEmpty(dns)) out.dns = dns;
  return out;
}

/**
 * version.ParsePrevResult: the prevResult of a plugin's configuration in the
 * configuration's version (the embedded cniVersion, when set, must be one the
 * same result type handles).
 */
export function parsePrevResult(conf: Record<string, unknown>): Result | undefined {
  const raw = conf.prevResult;
  if (raw === undefined || raw === null) return undefined;
  const confVersion = decodeConfVersion(conf);
  let obj = raw;
  if (typeof raw === 'object' && !Array.isArray(raw)) {
    const v = (raw as Record<string, unknown>).cniVersion;
    if (v === undefined || v === '') obj = { ...raw, cniVersion: confVersion };
  }
  try {
    return createResult(confVersion, obj);
  } catch (err) {
    throw new CniError(ErrorCode.DecodingFailure, `could not parse prevResult: ${(err as Error).message}`);
  }
}
