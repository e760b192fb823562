// The configuration of Knit's CNI plugins, checked field by field: the
// reference bridge plugin's names (bridge, isGateway, isDefaultGateway,
// ipMasq, mtu, hairpinMode, promiscMode), Knit's (driver, subnet, ranges,
// internal, icc, enableDns), the ipam section and runtimeConfig capabilities. A bad
// field is code 7 naming it, as the reference plugins do.
import type { DNS, Result100, Route } from './types.ts';
import type { Bandwidth, NetworkCreate } from '../model/index.ts';
import type { PoolSpec } from '../ipam/pool.ts';
import { CniError, ErrorCode } from './errors.ts';
import { isCIDR } from './types.ts';
import { familyOf, formatPrefix, parsePrefix } from '../lib/ip.ts';
import { convertResult } from './version.ts';
import { parsePrevResult } from './decode.ts';
import { bandwidthProblem } from '../drivers/bandwidth.ts';

export interface PortMappingCap {
  hostPort: number;
  containerPort: number;
  protocol?: string;
  hostIP?: string;
}

export interface RuntimeConfig {
  portMappings?: PortMappingCap[];
  bandwidth?: Record<string, unknown>;
  ips?: string[];
  mac?: string;
  dns?: DNS;
  ipRanges?: RangeConf[][];
  /** podman's shape: network name -> aliases. */
  aliases?: Record<string, string[]>;
}

export interface RangeConf {
  subnet: string;
  rangeStart?: string;
  rangeEnd?: string;
  gateway?: string;
}

export interface CniNetConf {
  name: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  hairpinMode: boolean;
  promiscMode: boolean;
  ipam: { type?: string };
  dns?: DNS;
  runtimeConfig: RuntimeConfig;
  /** Shaping from the plugin config's own keys, else runtimeConfig.bandwidth; absent when all zero. */
  bandwidth?: Bandwidth;
  prevResult?: Result100;
  /** The Knit network to create on first use. */
  create: NetworkCreate;
}

export interface IpamConf {
  /** The network name: knit-ipam shares the pools of a Knit network of this name. */
  network: string;
  pools: PoolSpec[];
  rangeStart?: string;
  rangeEnd?: string;
  routes?: Route[];
  dns?: DNS;
  runtimeIps?: string[];
}

const bad = (field: string, msg: string) => new CniError(ErrorCode.InvalidNetworkConfig, `${field}: ${msg}`, field);

function obj(v: unknown, field: string): Record<string, unknown> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw bad(field, `must be an object, got ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}

function bool(c: Record<string, unknown>, key: string, field = key): boolean | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw bad(field, `must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function str(c: Record<string, unknown>, key: string, field = key): string | undefined {
  const v = c[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw bad(field, `must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function cidr(v: string | undefined, field: string): string | undefined {
  if (v === undefined) return undefined;
  if (!isCIDR(v)) throw bad(field, `'${v}' is not a CIDR subnet (e.g. 10.22.0.0/16)`);
  return formatPrefix(parsePrefix(v, field, false));
}

function ip(v: string | undefined, field: string): string | undefined {
  if (v === undefined) return undefined;
  if (familyOf(v) === undefined) throw bad(field, `'${v}' is not an IP address`);
  return v;
}

function ranges(v: unknown, field: string): RangeConf[][] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw bad(field, 'must be a list of range sets ([[{"subnet": ...}]])');
  return v.map((set, i) => {
    if (!Array.isArray(set)) throw bad(`${field}[${i}]`, 'must be a list of ranges');
    return set.map((r, j) => {
      const f = `${field}[${i}][${j}]`;
      const o = obj(r, f) ?? {};
      const subnet = cidr(str(o, 'subnet', `${f}.subnet`), `${f}.subnet`);
      if (!subnet) throw bad(`${f}.subnet`, 'a range needs its subnet');
      const rs = ip(str(o, 'rangeStart', `${f}.rangeStart`), `${f}.rangeStart`);
      const re = ip(str(o, 'rangeEnd', `${f}.rangeEnd`), `${f}.rangeEnd`);
      const gw = ip(str(o, 'gateway', `${f}.gateway`), `${f}.gateway`);
      return { subnet, ...(rs ? { rangeStart: rs } : {}), ...(re ? { rangeEnd: re } : {}), ...(gw ? { gateway: gw } : {}) };
    });
  });
}

function poolsOf(sets: RangeConf[][] | undefined, subnet: string | undefined, gateway: string | undefined): PoolSpec[] {
  const out: PoolSpec[] = [];
  if (subnet) out.push({ subnet, ...(gateway ? { gateway } : {}) });
  for (const set of sets ?? []) {
    const first = set[0];
    if (first && !out.some((p) => p.subnet === first.subnet)) out.push({ subnet: first.subnet, ...(first.gateway ? { gateway: first.gateway } : {}) });
  }
  return out;
}

function dnsOf(v: unknown, field: string): DNS | undefined {
  const o = obj(v, field);
  if (!o) return undefined;
  const list = (k: string) => {
    const x = o[k];
    if (x === undefined || x === null) return undefined;
    if (!Array.isArray(x) || x.some((e) => typeof e !== 'string')) throw bad(`${field}.${k}`, 'must be a list of strings');
    return x as string[];
  };
  const out: DNS = {};
  const ns = list('nameservers');
  const search = list('search');
  const options = list('options');
  const domain = str(o, 'domain', `${field}.domain`);
  if (ns) out.nameservers = ns;
  if (domain) out.domain = domain;
  if (search) out.search = search;
  if (options) out.options = options;
  return Object.keys(out).length ? out : undefined;
}

function runtimeConfigOf(v: unknown): RuntimeConfig {
  const o = obj(v, 'runtimeConfig') ?? {};
  const rc: RuntimeConfig = {};
  if (Array.isArray(o.portMappings)) {
    rc.portMappings = o.portMappings.map((p, i) => {
      const f = `runtimeConfig.portMappings[${i}]`;
      const m = obj(p, f) ?? {};
      const port = (k: string) => {
        const x = m[k];
        if (typeof x !== 'number' || !Number.isInteger(x) || x < 1 || x > 65535) throw bad(`${f}.${k}`, `must be a port 1-65535, got ${JSON.stringify(x)}`);
        return x;
      };
      const protocol = str(m, 'protocol', `${f}.protocol`);
      if (protocol && !/^(tcp|udp)$/i.test(protocol)) throw bad(`${f}.protocol`, `'${protocol}' is not tcp or udp (sctp is not supported)`);
      const hostIP = ip(str(m, 'hostIP', `${f}.hostIP`), `${f}.hostIP`);
      return { hostPort: port('hostPort'), containerPort: port('containerPort'), ...(protocol ? { protocol } : {}), ...(hostIP ? { hostIP } : {}) };
    });
  }
  const bw = obj(o.bandwidth, 'runtimeConfig.bandwidth');
  if (bw) rc.bandwidth = bw;
  if (Array.isArray(o.ips)) {
    rc.ips = o.ips.map((x, i) => {
      const f = `runtimeConfig.ips[${i}]`;
      if (typeof x !== 'string' || (!isCIDR(x) && familyOf(x) === undefined)) throw bad(f, `${JSON.stringify(x)} is not an IP address or CIDR`);
      return x;
    });
  }
  const mac = str(o, 'mac', 'runtimeConfig.mac');
  if (mac) {
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw bad('runtimeConfig.mac', `'${mac}' is not a MAC address`);
    rc.mac = mac;
  }
  const dns = dnsOf(o.dns, 'runtimeConfig.dns');
  if (dns) rc.dns = dns;
  const ipr = ranges(o.ipRanges, 'runtimeConfig.ipRanges');
  if (ipr) rc.ipRanges = ipr;
  const al = obj(o.aliases, 'runtimeConfig.aliases');
  if (al) {
    rc.aliases = {};
    for (const [k, list] of Object.entries(al)) {
      if (!Array.isArray(list) || list.some((e) => typeof e !== 'string')) throw bad(`runtimeConfig.aliases.${k}`, 'must be a list of names');
      rc.aliases[k] = list as string[];
    }
  }
  return rc;
}

function prevResultOf(config: Record<string, unknown>): Result100 | undefined {
  let r;
  try {
    r = parsePrevResult(config);
  } catch (err) {
    throw new CniError(ErrorCode.DecodingFailure, `prevResult: ${err instanceof Error ? err.message : String(err)}`, 'prevResult');
  }
  return r === undefined ? undefined : (convertResult(r, '1.1.0') as Result100);
}

/** Decodes the `knit` plugin's configuration. */
export function parseCniNetConf(c: Record<string, unknown>): CniNetConf {
  const name = str(c, 'name');
  if (!name) throw bad('name', 'missing network name');
  const ipam = obj(c.ipam, 'ipam') ?? {};
  const ipamType = str(ipam, 'type', 'ipam.type');
  const ownIpam = ipamType === undefined || ipamType === 'knit' || ipamType === 'knit-ipam';
  const rc = runtimeConfigOf(c.runtimeConfig);
  const subnet = cidr(str(c, 'subnet'), 'subnet') ?? (ownIpam ? cidr(str(ipam, 'subnet', 'ipam.subnet'), 'ipam.subnet') : undefined);
  const gateway = ip(str(c, 'gateway'), 'gateway') ?? (ownIpam ? ip(str(ipam, 'gateway', 'ipam.gateway'), 'ipam.gateway') : undefined);
  const sets = ranges(c.ranges, 'ranges') ?? (ownIpam ? ranges(ipam.ranges, 'ipam.ranges') : undefined) ?? rc.ipRanges;
  let pools = poolsOf(sets, subnet, gateway);
  if (!ownIpam) {
    // A delegated IPAM plugin owns the addresses; the network still needs
    // a subnet for its gateway, which the plugin process passes back to us.
    pools = [];
  }
  const driver = str(c, 'driver') ?? 'bridge';
  if (driver !== 'bridge') throw bad('driver', `'${driver}' is not supported by the knit CNI plugin; use "bridge"`);
  const mtu = c.mtu;
  if (mtu !== undefined && mtu !== null && (typeof mtu !== 'number' || !Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) {
    throw bad('mtu', `must be an integer 68-65535, got ${JSON.stringify(mtu)}`);
  }
  const options: Record<string, string> = {};
  const bridge = str(c, 'bridge');
  if (bridge) {
    if (Buffer.byteLength(bridge) > 15 || /[/:\s]/.test(bridge)) throw bad('bridge', `'${bridge}' is not a valid interface name (at most 15 bytes, no / : or spaces)`);
    options.bridge = bridge;
  }
  const ipMasq = bool(c, 'ipMasq');
  if (ipMasq !== undefined) options.masquerade = String(ipMasq);
  const icc = bool(c, 'icc');
  if (icc !== undefined) options.icc = String(icc);
  const fastpath = bool(c, 'fastpath');
  if (fastpath !== undefined) options.fastpath = String(fastpath);
  // Knit's `--opt dns=false`; `dns` itself is the CNI spec's resolver section.
  const enableDns = bool(c, 'enableDns');
  if (enableDns !== undefined) options.dns = String(enableDns);
  if (typeof mtu === 'number') options.mtu = String(mtu);
  const internal = bool(c, 'internal');
  const isDefaultGateway = bool(c, 'isDefaultGateway') ?? false;
  const ipv6 = pools.some((p) => p.subnet.includes(':'));
  const create: NetworkCreate = {
    name,
    driver,
    origin: 'cni',
    options,
    labels: { 'cni.knit.dev/created-by': 'cni' },
    ...(pools.length ? { subnets: pools.map((p) => ({ subnet: p.subnet, ...(p.gateway ? { gateway: p.gateway } : {}), auxAddresses: {} })) } : {}),
    ...(ipv6 ? { ipv6 } : {}),
    ...(internal !== undefined ? { internal } : {}),
  };
  const dns = dnsOf(c.dns, 'dns');
  const prev = prevResultOf(c);
  const bw = bandwidthOf(c, rc);
  return {
    name,
    isGateway: (bool(c, 'isGateway') ?? false) || isDefaultGateway,
    isDefaultGateway,
    hairpinMode: bool(c, 'hairpinMode') ?? false,
    promiscMode: bool(c, 'promiscMode') ?? false,
    ipam: ipamType ? { type: ipamType } : {},
    runtimeConfig: rc,
    create,
    ...(bw ? { bandwidth: bw } : {}),
    ...(dns ? { dns } : {}),
    ...(prev ? { prevResult: prev } : {}),
  };
}

const BANDWIDTH_KEYS = ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const;
const SUBNET_KEYS = ['unshapedSubnets', 'shapedSubnets'] as const;

/**
 * As the reference bandwidth plugin: the keys at the top of the config,
 * when any is there, win over runtimeConfig.bandwidth. Rates in bits/s and
 * bursts in bits; a direction with both 0 is not shaped. unshapedSubnets
 * (everything but these is shaped) and shapedSubnets (only these are) are
 * lists of CIDRs, at most one of them.
 */
function bandwidthOf(c: Record<string, unknown>, rc: RuntimeConfig): Bandwidth | undefined {
  const top = [...BANDWIDTH_KEYS, ...SUBNET_KEYS].some((k) => c[k] !== undefined && c[k] !== null);
  const src = top ? c : rc.bandwidth;
  if (src === undefined) return undefined;
  const prefix = top ? '' : 'runtimeConfig.bandwidth.';
  const bw: Bandwidth = { ingressRate: 0, ingressBurst: 0, egressRate: 0, egressBurst: 0 };
  for (const k of BANDWIDTH_KEYS) {
    const v = src[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${prefix}${k}`, `must be a non-negative integer (${k.endsWith('Rate') ? 'bits/s' : 'bits'}), got ${JSON.stringify(v)}`);
    bw[k] = v;
  }
  const p = bandwidthProblem(bw);
  if (p) throw bad(`${prefix}${p.key}`, p.msg);
  for (const k of SUBNET_KEYS) {
    const v = src[k];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v)) throw bad(`${prefix}${k}`, `must be a list of CIDR subnets (e.g. ["10.0.0.0/8"]), got ${JSON.stringify(v)}`);
    const list = v.map((x, i) => {
      if (typeof x !== 'string') throw bad(`${prefix}${k}[${i}]`, `must be a CIDR subnet string, got ${JSON.stringify(x)}`);
      return cidr(x, `${prefix}${k}[${i}]`) as string;
    });
    if (list.length > 0) bw[k] = list;
  }
  if (bw.unshapedSubnets && bw.shapedSubnets) {
    throw bad(`${prefix}shapedSubnets`, 'unshapedSubnets and shapedSubnets cannot both be given: list what to exempt, or what to shape');
  }
  return bw.ingressRate > 0 || bw.egressRate > 0 ? bw : undefined;
}

/** Decodes the `knit-ipam` plugin's configuration: its `ipam` section, host-local's names accepted. */
export function parseIpamConf(c: Record<string, unknown>): IpamConf {
  const network = str(c, 'name');
  if (!network) throw bad('name', 'missing network name');
  const ipam = obj(c.ipam, 'ipam');
  if (!ipam) throw bad('ipam', 'knit-ipam needs an "ipam" section, e.g. {"type": "knit-ipam", "subnet": "10.22.0.0/16"}');
  const subnet = cidr(str(ipam, 'subnet', 'ipam.subnet'), 'ipam.subnet');
  const gateway = ip(str(ipam, 'gateway', 'ipam.gateway'), 'ipam.gateway');
  const sets = ranges(ipam.ranges, 'ipam.ranges');
  const rangeStart = ip(str(ipam, 'rangeStart', 'ipam.rangeStart'), 'ipam.rangeStart') ?? sets?.[0]?.[0]?.rangeStart;
  const rangeEnd = ip(str(ipam, 'rangeEnd', 'ipam.rangeEnd'), 'ipam.rangeEnd') ?? sets?.[0]?.[0]?.rangeEnd;
  const rc = runtimeConfigOf(c.runtimeConfig);
  const pools = poolsOf(sets ?? rc.ipRanges, subnet, gateway);
  let routes: Route[] | undefined;
  if (ipam.routes !== undefined && ipam.routes !== null) {
    if (!Array.isArray(ipam.routes)) throw bad('ipam.routes', 'must be a list of {"dst": CIDR, "gw"?: IP}');
    routes = ipam.routes.map((r, i) => {
      const f = `ipam.routes[${i}]`;
      const o = obj(r, f) ?? {};
      const dst = cidr(str(o, 'dst', `${f}.dst`), `${f}.dst`);
      if (!dst) throw bad(`${f}.dst`, 'a route needs its dst');
      const gw = ip(str(o, 'gw', `${f}.gw`), `${f}.gw`);
      return { dst, ...(gw ? { gw } : {}) };
    });
  }
  const dns = dnsOf(c.dns, 'dns');
  return {
    network,
    pools,
    ...(rangeStart ? { rangeStart } : {}),
    ...(rangeEnd ? { rangeEnd } : {}),
    ...(routes ? { routes } : {}),
    ...(dns ? { dns } : {}),
    ...(rc.ips ? { runtimeIps: rc.ips } : {}),
  };
}
