// The daemon side of Knit's CNI plugins: what an ADD, DEL, CHECK, GC or
// STATUS of `knit` or `knit-ipam` does to the engine. The executables are
// thin forwarders: the whole call (CNI_* and stdin) comes to the daemon, the
// plugin protocol runs there (plugin-call.ts) and its handlers
// (plugin-handlers.ts) come here. Everything that touches the kernel or the
// store happens in the daemon, which owns both, so a plugin call costs one
// process start and one round trip.
import { createHash } from 'node:crypto';
import type { Engine } from '../engine/engine.ts';
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import type { GCAttachment, IPConfig, Result100, Route } from './types.ts';
import { CniError, ErrorCode } from './errors.ts';
import { KnitError } from '../lib/errors.ts';
import { parseCniArgs } from './args.ts';
import { parseCniNetConf, parseIpamConf, type CniNetConf, type IpamConf } from './netconf.ts';
import { checkAttachment } from './check.ts';
import { getLink, setBridgePort, setLink } from '../kernel/link.ts';
import { IFF_PROMISC } from '../kernel/netlink/constants.ts';
import { macFromId } from '../kernel/mac.ts';
import { withNetns, isNetns } from '../kernel/netns.ts';
import { withSocket } from '../kernel/netlink/socket.ts';
import { addRoute } from '../kernel/route.ts';
import { contains, familyOf, formatPrefix, parsePrefix, parseIP, formatIP } from '../lib/ip.ts';
import { rangeOf, usableBounds, type Pool, type PoolSpec } from '../ipam/pool.ts';
import { knitResolver, type DnsService } from '../services/dns/resolver.ts';
import { resultDns } from './result-dns.ts';

export type CniVerb = 'add' | 'del' | 'check' | 'gc' | 'status';

/** One plugin call, decoded from its environment and stdin. */
export interface CniRequest {
  plugin: 'knit' | 'knit-ipam';
  containerId?: string;
  netns?: string;
  ifname?: string;
  args?: string;
  config: Record<string, unknown>;
  /** The result of a delegated IPAM plugin the plugin process ran (ADD). */
  ipamResult?: Result100;
}

/** Labels on a sandbox the CNI plugin made: GC and DEL find attachments by them. */
export const LABEL_CONTAINER = 'cni.knit.dev/container-id';
export const LABEL_IFNAME = 'cni.knit.dev/ifname';
export const LABEL_NETWORK = 'cni.knit.dev/network';

/** One sandbox per (container, ifname): a pod's interfaces come and go independently. */
export function sandboxNameFor(containerId: string, ifname: string): string {
  return `cni-${createHash('sha256').update(`${containerId}\0${ifname}`).digest('hex').slice(0, 32)}`;
}

/** The IPAM owner of a knit-ipam allocation. */
export function ipamOwnerFor(containerId: string, ifname: string): string {
  return `cni-ipam:${containerId}:${ifname}`;
}

export class CniService {
  private readonly engine: Engine;
  /** Serializes first-use network creation so concurrent ADDs share one network. */
  private creating: Promise<unknown> = Promise.resolve();

  /** Bridge MACs by network id and bridge name (resultFor). */
  private readonly bridgeMacs = new Map<string, string>();

  /** The daemon's DNS, whose answering addresses an ADD result names; none in tools and tests. */
  private readonly dns: DnsService | undefined;

  constructor(engine: Engine, dns?: DnsService) {
    this.engine = engine;
    this.dns = dns;
  }

  /** Runs one verb; failures are thrown (CniError, or errors toCniError maps). */
  async run(verb: CniVerb, req: CniRequest): Promise<Result100 | undefined> {
    const ipam = req.plugin === 'knit-ipam';
    switch (verb) {
      case 'add':
        return ipam ? this.ipamAdd(req) : this.add(req);
      case 'del':
        return ipam ? this.ipamDel(req) : this.del(req);
      case 'check':
        return ipam ? this.ipamCheck(req) : this.check(req);
      case 'gc':
        return ipam ? this.ipamGc(req) : this.gc(req);
      case 'status':
        return this.status(req);
      default:
        throw new CniError(ErrorCode.InvalidEnvironmentVariables, `unknown CNI_COMMAND: ${verb}`);
    }
  }

  // ---- knit ----------------------------------------------------------------

  private async add(req: CniRequest): Promise<Result100> {
    const conf = parseCniNetConf(req.config);
    const { containerId, ifname, netns } = need(req, ['containerId', 'ifname', 'netns']);
    if (!isNetns(netns)) throw new CniError(ErrorCode.InvalidNetNS, `failed to open netns ${JSON.stringify(netns)}: not a network namespace`, 'CNI_NETNS');
    const args = cniArgs(req.args ?? '');
    const rc = conf.runtimeConfig;
    if (req.ipamResult?.ips?.length && !conf.create.subnets) {
      // A delegated IPAM plugin chose the addresses: the network takes their subnets.
      const subnets = req.ipamResult.ips.map((i) => ({
        subnet: formatPrefix(parsePrefix(i.address, 'ipam result address', false)),
        ...(i.gateway ? { gateway: i.gateway } : {}),
        auxAddresses: {},
      }));
      conf.create.subnets = subnets;
      if (subnets.some((x) => x.subnet.includes(':'))) conf.create.ipv6 = true;
    }
    const net = await this.ensureNetwork(conf);
    const ips = [...(rc.ips ?? []), ...(args.IP ?? []), ...(req.ipamResult?.ips ?? []).map((i) => i.address)];
    const v4 = ips.map((a) => a.split('/')[0] as string).find((a) => familyOf(a) === 4);
    const v6 = ips.map((a) => a.split('/')[0] as string).find((a) => familyOf(a) === 6);
    const mac = rc.mac ?? args.MAC;
    const aliases = rc.aliases?.[conf.name] ?? rc.aliases?.[net.name] ?? [];
    const name = sandboxNameFor(containerId, ifname);
    const labels: Record<string, string> = {
      [LABEL_CONTAINER]: containerId,
      [LABEL_IFNAME]: ifname,
      [LABEL_NETWORK]: net.name,
    };
    if (args.K8S_POD_NAMESPACE) labels['k8s.pod.namespace'] = args.K8S_POD_NAMESPACE;
    if (args.K8S_POD_NAME) labels['k8s.pod.name'] = args.K8S_POD_NAME;
    if (conf.ipam.type !== undefined && conf.ipam.type !== 'knit' && conf.ipam.type !== 'knit-ipam') labels['cni.knit.dev/ipam'] = conf.ipam.type;
    await this.engine.createSandbox({
      name,
      netnsPath: netns,
      origin: 'cni',
      labels,
      ...(conf.dns || rc.dns ? { dns: dnsOf(rc.dns ?? conf.dns ?? {}) } : {}),
      networks: [
        {
          network: net.name,
          ifname,
          defaultRoute: conf.isDefaultGateway,
          ...(v4 ? { ip: v4 } : {}),
          ...(v6 ? { ipv6: v6 } : {}),
          ...(mac ? { mac } : {}),
          ...(aliases.length ? { aliases } : {}),
          ...(rc.portMappings?.length ? { publish: rc.portMappings.map(publishSpec) } : {}),
          ...(conf.bandwidth ? { bandwidth: conf.bandwidth } : {}),
        },
      ],
    });
    const sb = await this.engine.sandbox(name);
    const ep = await this.endpointOf(sb);
    if (!ep) throw new CniError(ErrorCode.Internal, `sandbox ${name} has no endpoint after ADD`);
    this.applyBridgePortFlags(conf, net, ep);
    const result = await this.resultFor(conf, net, sb, ep);
    const extra = this.installIpamRoutes(sb, ep, net, req.ipamResult?.routes ?? [], result.routes ?? []);
    if (extra.length) result.routes = [...(result.routes ?? []), ...extra];
    return result;
  }

  private async del(req: CniRequest): Promise<undefined> {
    const conf = parseCniNetConf(req.config);
    const { containerId, ifname } = need(req, ['containerId', 'ifname']);
    void conf;
    await this.removeAttachment(sandboxNameFor(containerId, ifname));
    return undefined;
  }

  private async check(req: CniRequest): Promise<undefined> {
    const conf = parseCniNetConf(req.config);
    const { containerId, ifname, netns } = need(req, ['containerId', 'ifname', 'netns']);
    const sb = await this.findSandbox(sandboxNameFor(containerId, ifname));
    if (!sb) throw new CniError(ErrorCode.UnknownContainer, `container ${containerId} has no attachment ${ifname} on network ${conf.name}`, 'CNI_CONTAINERID');
    const ep = await this.endpointOf(sb);
    if (!ep) throw new CniError(ErrorCode.UnknownContainer, `container ${containerId} has no endpoint ${ifname}`, 'CNI_CONTAINERID');
    const net = await this.engine.network(conf.name);
    const diffs = checkAttachment({ netns, sandbox: sb, endpoint: ep, network: net, prevResult: conf.prevResult, hostNl: this.engine.host.nl });
    if (diffs.length) throw new CniError(ErrorCode.Internal, `CHECK of ${ifname} in ${netns} failed: ${diffs.join('; ')}`);
    return undefined;
  }

  private async gc(req: CniRequest): Promise<undefined> {
    const conf = parseCniNetConf(req.config);
    const valid = validAttachments(req.config);
    const stale = (await this.engine.state.sandboxes()).filter(
      (s) =>
        s.origin === 'cni' &&
        s.labels[LABEL_NETWORK] === conf.name &&
        !valid.has(`${s.labels[LABEL_CONTAINER] ?? ''}\0${s.labels[LABEL_IFNAME] ?? ''}`),
    );
    for (const s of stale) await this.removeAttachment(s.name);
    return undefined;
  }

  private async status(req: CniRequest): Promise<undefined> {
    const name = typeof req.config.name === 'string' ? req.config.name : '';
    const net = (await this.engine.state.networks()).find((n) => n.name === name);
    if (!net) return undefined; // made on first ADD
    if (net.driver === 'bridge' && net.bridge) {
      const br = getLink(this.engine.host.nl, net.bridge);
      if (!br || !br.up) {
        throw new CniError(ErrorCode.LimitedConnectivity, `bridge ${net.bridge} of network ${net.name} is ${br ? 'down' : 'missing'}`, 'bridge');
      }
    }
    return undefined;
  }

  // ---- knit-ipam -----------------------------------------------------------

  private async ipamAdd(req: CniRequest): Promise<Result100> {
    const ipam = parseIpamConf(req.config);
    const { containerId, ifname } = need(req, ['containerId', 'ifname']);
    const args = cniArgs(req.args ?? '');
    const key = await this.ipamNetwork(ipam);
    const rec = await this.engine.ipam.getNetwork(key);
    if (!rec) throw new CniError(ErrorCode.Internal, `IPAM pools of ${ipam.network} vanished`);
    const owner = ipamOwnerFor(containerId, ifname);
    const wanted = [...(ipam.runtimeIps ?? []), ...(args.IP ?? [])].map((a) => a.split('/')[0] as string);
    const ips: IPConfig[] = [];
    try {
      for (const pool of rec.pools) {
        const family = familyOf(pool.gateway) as 4 | 6;
        const want = wanted.find((a) => familyOf(a) === family);
        const got = want
          ? await this.engine.ipam.allocate(key, { family, owner, ip: want })
          : await this.allocateIn(key, family, owner, sectionRange(ipam, family, pool));
        ips.push({ address: `${got}/${parsePrefix(pool.subnet).len}`, gateway: pool.gateway });
      }
    } catch (err) {
      await this.engine.ipam.releaseOwner(owner, key);
      throw err;
    }
    const routes: Route[] = ipam.routes ?? [];
    return { cniVersion: '1.1.0', ips, routes, ...(ipam.dns ? { dns: ipam.dns } : {}) };
  }

  /**
   * The next free address, from the pool's own round-robin allocator when the
   * range is the pool's (knit-ipam's own pools carry rangeStart/rangeEnd).
   * A range the pool does not carry (the section names a Knit network's pool)
   * is searched in the allocations, not address by address.
   */
  private async allocateIn(key: string, family: 4 | 6, owner: string, range: SectionRange | undefined): Promise<string> {
    if (!range) return this.engine.ipam.allocate(key, { family, owner });
    const held = (await this.engine.ipam.addressesOf(owner)).find((a) => a.network === key && a.family === family);
    if (held) return held.ip;
    // Another ADD may take the same gap first: then look again.
    for (let attempt = 0; ; attempt++) {
      const ip = await this.firstGap(key, family, range);
      try {
        return await this.engine.ipam.allocate(key, { family, owner, ip });
      } catch (err) {
        if (!(err instanceof KnitError && err.code === 'conflict') || attempt >= 100) throw err;
      }
    }
  }

  /** The lowest address of [lo, hi] no allocation holds: one pass over the allocations, in address order. */
  private async firstGap(key: string, family: 4 | 6, { lo, hi, reserved }: SectionRange): Promise<string> {
    const skip = (a: bigint) => {
      while (reserved.has(a)) a++;
      return a;
    };
    let next = skip(lo);
    for (const a of await this.engine.ipam.allocations(key)) {
      if (a.family !== family) continue;
      const addr = parseIP(a.ip).addr;
      if (addr < next) continue;
      if (addr > next || next > hi) break;
      next = skip(addr + 1n);
    }
    if (next > hi) {
      throw new KnitError('exhausted', `no free address in ${formatIP(family, lo)}-${formatIP(family, hi)} of network ${key}`, { field: 'ipam.rangeStart' });
    }
    return formatIP(family, next);
  }

  private async ipamDel(req: CniRequest): Promise<undefined> {
    const ipam = parseIpamConf(req.config);
    const { containerId, ifname } = need(req, ['containerId', 'ifname']);
    const key = await this.ipamKeyIfExists(ipam.network);
    if (key) await this.engine.ipam.releaseOwner(ipamOwnerFor(containerId, ifname), key);
    return undefined;
  }

  private async ipamCheck(req: CniRequest): Promise<undefined> {
    const ipam = parseIpamConf(req.config);
    const { containerId, ifname } = need(req, ['containerId', 'ifname']);
    const key = await this.ipamKeyIfExists(ipam.network);
    const held = key ? (await this.engine.ipam.addressesOf(ipamOwnerFor(containerId, ifname))).filter((a) => a.network === key) : [];
    if (held.length === 0) throw new CniError(ErrorCode.UnknownContainer, `container ${containerId} (${ifname}) holds no address on ${ipam.network}`, 'CNI_CONTAINERID');
    return undefined;
  }

  private async ipamGc(req: CniRequest): Promise<undefined> {
    const ipam = parseIpamConf(req.config);
    const valid = validAttachments(req.config);
    const key = await this.ipamKeyIfExists(ipam.network);
    if (!key) return undefined;
    for (const a of await this.engine.ipam.allocations(key)) {
      if (!a.owner.startsWith('cni-ipam:')) continue;
      const rest = a.owner.slice('cni-ipam:'.length);
      const cut = rest.lastIndexOf(':');
      if (!valid.has(`${rest.slice(0, cut)}\0${rest.slice(cut + 1)}`)) await this.engine.ipam.release(key, a.ip);
    }
    return undefined;
  }

  /**
   * The IPAM key knit-ipam allocates from: the Knit network of that name when
   * there is one (so plugins share its pool with Knit's own endpoints), else
   * pools of its own, made from the section on first use.
   */
  private async ipamNetwork(ipam: IpamConf): Promise<string> {
    const existing = await this.ipamKeyIfExists(ipam.network);
    if (existing) return existing;
    const key = `cni-ipam:${ipam.network}`;
    return this.serialized(async () => {
      if (await this.engine.ipam.getNetwork(key)) return key;
      await this.engine.ipam.createNetwork(key, {
        pools: ipam.pools.map((p) => withSectionRange(ipam, p)),
        ipv4: ipam.pools.length === 0 || ipam.pools.some((p) => !p.subnet.includes(':')),
        ipv6: ipam.pools.some((p) => p.subnet.includes(':')),
        hostRoutes: this.engine.hostRoutes(),
      });
      return key;
    });
  }

  private async ipamKeyIfExists(name: string): Promise<string | undefined> {
    const net = (await this.engine.state.networks()).find((n) => n.name === name);
    if (net) return net.id;
    const key = `cni-ipam:${name}`;
    return (await this.engine.ipam.getNetwork(key)) ? key : undefined;
  }

  // ---- helpers -------------------------------------------------------------

  /** The Knit network named by the config, created from it on first use. */
  private async ensureNetwork(conf: CniNetConf): Promise<Network> {
    const find = async () => (await this.engine.state.networks()).find((n) => n.name === conf.name);
    const found = await find();
    if (found) return found;
    return this.serialized(async () => {
      const again = await find();
      if (again) return again;
      await this.engine.createNetwork(conf.create);
      const made = await find();
      if (!made) throw new CniError(ErrorCode.Internal, `network ${conf.name} vanished right after it was created`);
      return made;
    });
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.creating.then(fn, fn);
    this.creating = run.catch(() => undefined);
    return run;
  }

  private async findSandbox(name: string): Promise<Sandbox | undefined> {
    return (await this.engine.state.sandboxes()).find((s) => s.name === name);
  }

  private async endpointOf(sb: Sandbox): Promise<Endpoint | undefined> {
    return (await this.engine.state.endpoints()).find((e) => e.sandboxId === sb.id);
  }

  /** DEL: nothing left is success; so is a namespace that is already gone. */
  private async removeAttachment(name: string): Promise<void> {
    try {
      await this.engine.deleteSandbox(name);
    } catch (err) {
      if (err instanceof KnitError && err.code === 'not-found') return;
      throw err;
    }
  }

  /**
   * The bridge's MAC, looked up once per network when it is the one Knit set
   * on a bridge it made (macFromId): a set MAC stays. An adopted bridge's
   * follows its ports (the lowest one's), so it is looked up every time.
   */
  private bridgeMac(net: Network, bridge: string): string {
    const key = `${net.id}\0${bridge}`;
    const known = this.bridgeMacs.get(key);
    if (known !== undefined) return known;
    const mac = getLink(this.engine.host.nl, bridge)?.mac ?? '';
    if (mac === macFromId(net.id)) this.bridgeMacs.set(key, mac);
    return mac;
  }

  /** hairpinMode and promiscMode as the reference bridge plugin applies them. */
  private applyBridgePortFlags(conf: CniNetConf, net: Network, ep: Endpoint): void {
    if (!ep.hostIfname) return;
    if (conf.hairpinMode) setHairpin(this.engine, ep.hostIfname);
    // The reference plugin turns the bridge promiscuous and never back: other attachments may rely on it.
    if (conf.promiscMode && net.bridge) setPromisc(this.engine, net.bridge);
  }

  /** Routes a delegated IPAM plugin asked for (the reference bridge installs them in the container too). */
  private installIpamRoutes(sb: Sandbox, ep: Endpoint, net: Network, routes: Route[], have: Route[]): Route[] {
    const added: Route[] = [];
    for (const r of routes) {
      const fam = r.dst.includes(':') ? 6 : 4;
      const gw = r.gw ?? net.subnets.find((x) => (x.subnet.includes(':') ? 6 : 4) === fam)?.gateway;
      if (have.some((h) => h.dst === r.dst)) continue;
      const dst = r.dst === '0.0.0.0/0' || r.dst === '::/0' ? 'default' : r.dst;
      withNetns(sb.netnsPath, () =>
        withSocket(undefined, (s) => {
          const link = getLink(s, ep.ifname);
          if (!link) throw new CniError(ErrorCode.Internal, `interface ${ep.ifname} vanished while adding route ${r.dst}`);
          addRoute(s, { family: fam, dst, oif: link.index, ...(gw ? { gateway: gw } : {}) });
        }),
      );
      added.push({ dst: r.dst, ...(gw ? { gw } : {}) });
    }
    return added;
  }

  private async resultFor(conf: CniNetConf, net: Network, sb: Sandbox, ep: Endpoint): Promise<Result100> {
    const nl = this.engine.host.nl;
    const interfaces: Result100['interfaces'] = [];
    if (net.bridge) interfaces.push({ name: net.bridge, mac: this.bridgeMac(net, net.bridge) });
    // A veth's ends share the MTU they were made with, and the driver gave
    // each end the MAC of the record: no lookup (a get right after an attach
    // waits behind the kernel's work on the new link), and no visit to the
    // sandbox's namespace. A record from before hostMac: the host end tells.
    const peer = !ep.hostIfname ? undefined : ep.hostMac !== undefined ? { mac: ep.hostMac, mtu: net.mtu } : getLink(nl, ep.hostIfname);
    if (ep.hostIfname) interfaces.push({ name: ep.hostIfname, mac: peer?.mac ?? '' });
    const inside = peer ? { mac: ep.mac, mtu: peer.mtu } : withNetns(sb.netnsPath, () => withSocket(undefined, (s) => getLink(s, ep.ifname)));
    const ctr = interfaces.length;
    interfaces.push({ name: ep.ifname, mac: inside?.mac ?? ep.mac, sandbox: sb.netnsPath, ...(inside ? { mtu: inside.mtu } : {}) });
    const ips: IPConfig[] = [];
    const routes: Route[] = [];
    for (const cidr of [ep.ipv4, ep.ipv6]) {
      if (!cidr) continue;
      const fam = cidr.includes(':') ? 6 : 4;
      const sub = net.subnets.find((s) => (s.subnet.includes(':') ? 6 : 4) === fam);
      const gw = conf.isGateway || ep.defaultRoute ? sub?.gateway : undefined;
      ips.push({ interface: ctr, address: cidr, ...(gw ? { gateway: gw } : {}) });
      if (ep.defaultRoute && sub?.gateway && !net.internal) routes.push({ dst: fam === 4 ? '0.0.0.0/0' : '::/0', gw: sub.gateway });
    }
    // Only a server that answers now is named: the container's first query may come right after ADD.
    const nameservers = (await this.dns?.nameserversFor(net)) ?? [];
    const knit = nameservers.length > 0 ? { nameservers, search: knitResolver([net]).search } : { nameservers: [], search: [] };
    const dns = resultDns(knit, conf.runtimeConfig.dns, conf.dns);
    return { cniVersion: '1.1.0', interfaces, ips, routes, ...(dns ? { dns } : {}) };
  }
}

/** A pool spec with the section's rangeStart/rangeEnd when they are in its subnet (host-local's range). */
function withSectionRange(ipam: IpamConf, p: PoolSpec): PoolSpec {
  const sub = parsePrefix(p.subnet, 'ipam.subnet');
  const inside = (ip: string | undefined) => ip !== undefined && familyOf(ip) === sub.family && contains(sub, sub.family, parseIP(ip).addr);
  return {
    ...p,
    ...(inside(ipam.rangeStart) ? { rangeStart: ipam.rangeStart } : {}),
    ...(inside(ipam.rangeEnd) ? { rangeEnd: ipam.rangeEnd } : {}),
  };
}

/** A knit-ipam section's rangeStart..rangeEnd over a pool that does not carry it. */
interface SectionRange {
  lo: bigint;
  hi: bigint;
  /** The gateway and aux addresses: never handed out. */
  reserved: Set<bigint>;
}

/**
 * The section's range for a pool that does not carry it already (a Knit
 * network's pool shared by name); undefined when the pool's allocator covers it.
 */
function sectionRange(ipam: IpamConf, family: 4 | 6, pool: Pool): SectionRange | undefined {
  const start = ipam.rangeStart !== undefined && familyOf(ipam.rangeStart) === family ? ipam.rangeStart : undefined;
  const end = ipam.rangeEnd !== undefined && familyOf(ipam.rangeEnd) === family ? ipam.rangeEnd : undefined;
  if (start === undefined && end === undefined) return undefined;
  if ((start === undefined || pool.rangeStart === start) && (end === undefined || pool.rangeEnd === end)) return undefined;
  const r = rangeOf(pool);
  const { lo: usableLo, hi: usableHi } = usableBounds(r.subnet);
  const lo = start === undefined ? r.first : parseIP(start, 'ipam.rangeStart').addr;
  const hi = end === undefined ? r.last : parseIP(end, 'ipam.rangeEnd').addr;
  if (lo < usableLo || hi > usableHi || lo > hi) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `ipam.rangeStart/rangeEnd ${start ?? '(start)'}-${end ?? '(end)'} is not a range of usable addresses in ${pool.subnet}`, 'ipam.rangeStart');
  }
  return { lo, hi, reserved: r.reserved };
}

function setPromisc(engine: Engine, bridge: string): void {
  const link = getLink(engine.host.nl, bridge);
  if (link && (link.flags & IFF_PROMISC) === 0) setLink(engine.host.nl, link.index, { promisc: true });
}

function setHairpin(engine: Engine, ifname: string): void {
  const link = getLink(engine.host.nl, ifname);
  if (link) setBridgePort(engine.host.nl, link.index, { hairpin: true });
}

function need<K extends 'containerId' | 'ifname' | 'netns'>(req: CniRequest, keys: K[]): Record<K, string> {
  const env: Record<string, string> = { containerId: 'CNI_CONTAINERID', ifname: 'CNI_IFNAME', netns: 'CNI_NETNS' };
  const out = {} as Record<K, string>;
  for (const k of keys) {
    const v = req[k];
    if (typeof v !== 'string' || v === '') throw new CniError(ErrorCode.InvalidEnvironmentVariables, `required env variables [${env[k]}] missing`);
    out[k] = v;
  }
  return out;
}

function cniArgs(args: string): ReturnType<typeof parseCniArgs> {
  try {
    return parseCniArgs(args);
  } catch (err) {
    throw new CniError(ErrorCode.InvalidEnvironmentVariables, err instanceof Error ? err.message : String(err), 'CNI_ARGS');
  }
}

function validAttachments(config: Record<string, unknown>): Set<string> {
  const raw = config['cni.dev/valid-attachments'];
  const list: GCAttachment[] = Array.isArray(raw) ? (raw as GCAttachment[]) : [];
  return new Set(list.map((a) => `${a.containerID}\0${a.ifname}`));
}

function dnsOf(d: { nameservers?: string[]; search?: string[]; options?: string[] }): { servers: string[]; search: string[]; options: string[] } {
  return { servers: d.nameservers ?? [], search: d.search ?? [], options: d.options ?? [] };
}

/** A CNI portMapping as Knit's publish spec: [hostIP:]hostPort:containerPort/proto. */
function publishSpec(p: { hostPort: number; containerPort: number; protocol?: string; hostIP?: string }): string {
  const proto = (p.protocol ?? 'tcp').toLowerCase();
  const host = p.hostIP && p.hostIP !== '' ? (p.hostIP.includes(':') ? `[${p.hostIP}]:` : `${p.hostIP}:`) : '';
  return `${host}${p.hostPort}:${p.containerPort}/${proto}`;
}
