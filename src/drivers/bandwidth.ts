// An endpoint's bandwidth limits, as the CNI bandwidth plugin applies them:
// traffic into the sandbox is what the host-side veth sends, shaped by a tbf
// root qdisc there; traffic out of the sandbox is what the veth receives,
// redirected (u32 match-all + mirred) to an ifb device whose tbf shapes it.
// The ifb carries the endpoint's owner alias, so reconcile removes a leftover.
// With unshapedSubnets or shapedSubnets the shaper is an htb instead of the
// tbf: an uncapped class 1:1 and a capped class 1:30, u32 filters sending
// the listed subnets (the remote end: source into the sandbox, destination
// out of it) to the class the list is about, the rest to the other.
import type { Host } from '../engine/host.ts';
import type { Bandwidth, Endpoint } from '../model/index.ts';
import { KnitError, invalid, messageOf } from '../lib/errors.ts';
import { createIfb, deleteLink, getLink, type Link } from '../kernel/link.ts';
import { NetlinkError } from '../kernel/netlink/socket.ts';
import { INGRESS_HANDLE, addHtbClass, addSubnetFilter, ensureIngress, listFilters, listHtbClasses, replaceHtb, replaceIngressRedirect, replaceTbf, rootQdisc, tbfFor } from '../kernel/tc.ts';
import type { NetlinkSocket } from '../kernel/netlink/socket.ts';
import { ownerAlias } from './driver.ts';

const U32_MAX = 0xffffffff;

/** The ifb of an endpoint's egress shaping: `kb` + 11 hex of its id, beside the veth's `kn`. */
export function ifbNameFor(endpointId: string): string {
  return `kb${endpointId.slice(0, 11)}`;
}

export function shapesIngress(bw: Bandwidth | undefined): boolean {
  return bw !== undefined && bw.ingressRate > 0;
}

export function shapesEgress(bw: Bandwidth | undefined): boolean {
  return bw !== undefined && bw.egressRate > 0;
}

/**
 * The first bad value, named by its key (ingressBurst...), or undefined.
 * As the reference plugin: rate and burst both set or both 0, the burst
 * under 4 GiB in bytes; and both at least one byte, which the kernel needs.
 */
export function bandwidthProblem(bw: Bandwidth): { key: keyof Bandwidth; msg: string } | undefined {
  for (const dir of ['ingress', 'egress'] as const) {
    const rate = bw[`${dir}Rate`];
    const burst = bw[`${dir}Burst`];
    if (rate > 0 && burst === 0) return { key: `${dir}Burst`, msg: `${dir}Rate is set (${rate}), so ${dir}Burst must be set too (bits)` };
    if (burst > 0 && rate === 0) return { key: `${dir}Rate`, msg: `${dir}Burst is set (${burst}), so ${dir}Rate must be set too (bits/s)` };
    if (rate > 0 && rate < 8) return { key: `${dir}Rate`, msg: `must be at least 8 bits/s (one byte), got ${rate}` };
    if (burst > 0 && burst < 8) return { key: `${dir}Burst`, msg: `must be at least 8 bits (one byte), got ${burst}` };
    if (burst / 8 >= U32_MAX) return { key: `${dir}Burst`, msg: `cannot be more than 4 GiB (${U32_MAX * 8} bits), got ${burst}` };
  }
  return undefined;
}

/** Throws `invalid` naming bandwidth.<key> when the limits are not applicable. */
export function checkBandwidth(bw: Bandwidth): void {
  const p = bandwidthProblem(bw);
  if (p) throw invalid(`bandwidth.${p.key}`, p.msg);
}

const tbfOf = (rateBits: number, burstBits: number) => tbfFor(Math.floor(rateBits / 8), Math.floor(burstBits / 8));

/** The htb classes of subnet-aware shaping (the reference plugin's minors). */
const UNSHAPED_CLASS = 0x1;
const SHAPED_CLASS = 0x30;
/** "Uncapped": 100 Gbit/s in bytes/s. */
const UNCAPPED = 12_500_000_000;

/** True when shaping depends on the remote subnet (an htb, not a plain tbf). */
export function bySubnet(bw: Bandwidth): boolean {
  return (bw.unshapedSubnets?.length ?? 0) > 0 || (bw.shapedSubnets?.length ?? 0) > 0;
}

/** Where unclassified traffic goes, and which class the listed subnets go to. */
function classes(bw: Bandwidth): { fallback: number; listed: number; subnets: string[] } {
  if (bw.shapedSubnets?.length) return { fallback: UNSHAPED_CLASS, listed: SHAPED_CLASS, subnets: bw.shapedSubnets };
  return { fallback: SHAPED_CLASS, listed: UNSHAPED_CLASS, subnets: bw.unshapedSubnets ?? [] };
}

/** One direction's shaper on a device: a tbf, or the htb with its classes and subnet filters. */
function shape(nl: NetlinkSocket, index: number, bw: Bandwidth, rateBits: number, burstBits: number, remote: 'src' | 'dst'): void {
  if (!bySubnet(bw)) {
    try {
      replaceTbf(nl, index, tbfOf(rateBits, burstBits));
    } catch (err) {
      throw explain(err, 'the tbf qdisc (CONFIG_NET_SCH_TBF)');
    }
    return;
  }
  const c = classes(bw);
  const rate = Math.floor(rateBits / 8);
  const burst = Math.floor(burstBits / 8);
  try {
    replaceHtb(nl, index, c.fallback);
    addHtbClass(nl, index, SHAPED_CLASS, rate, rate, burst);
    addHtbClass(nl, index, UNSHAPED_CLASS, UNCAPPED, UNCAPPED, 64 * 1024);
    for (const subnet of c.subnets) addSubnetFilter(nl, index, subnet, remote, c.listed);
  } catch (err) {
    throw explain(err, 'the htb qdisc and u32 filters (CONFIG_NET_SCH_HTB, CONFIG_NET_CLS_U32)');
  }
}

/** What differs from one direction's shaper on a device. */
function shaperProblems(nl: NetlinkSocket, index: number, dev: string, bw: Bandwidth, rateBits: number): string[] {
  const q = rootQdisc(nl, index);
  const rate = Math.floor(rateBits / 8);
  if (!bySubnet(bw)) {
    if (q?.kind !== 'tbf') return [`${dev} has no tbf root qdisc${q ? ` (it has ${q.kind})` : ''}`];
    if (q.tbf?.rate !== rate) return [`${dev} shapes at ${q.tbf?.rate ?? '?'} bytes/s, not ${rate}`];
    return [];
  }
  const c = classes(bw);
  if (q?.kind !== 'htb') return [`${dev} has no htb root qdisc${q ? ` (it has ${q.kind})` : ''}`];
  const out: string[] = [];
  if (q.htbDefault !== c.fallback) out.push(`${dev}'s htb sends unclassified traffic to 1:${(q.htbDefault ?? 0).toString(16)}, not 1:${c.fallback.toString(16)}`);
  const shaped = listHtbClasses(nl, index).find((k) => k.handle === (0x10000 | SHAPED_CLASS));
  if (!shaped) out.push(`${dev} has no shaped class 1:${SHAPED_CLASS.toString(16)}`);
  else if (shaped.rate !== rate) out.push(`${dev} shapes class 1:${SHAPED_CLASS.toString(16)} at ${shaped.rate} bytes/s, not ${rate}`);
  const filters = listFilters(nl, index, 0x10000).filter((f) => f.classid === (0x10000 | c.listed));
  if (filters.length < c.subnets.length) out.push(`${dev} has ${filters.length} subnet filters to 1:${c.listed.toString(16)}, not ${c.subnets.length}`);
  return out;
}

/** A refusal because this kernel lacks a tc piece becomes a clear `unsupported`. */
function explain(err: unknown, what: string): Error {
  if (err instanceof NetlinkError && (err.code === 'ENOENT' || err.code === 'EOPNOTSUPP' || /unknown|module|not found/i.test(err.message))) {
    return new KnitError(
      'unsupported',
      `bandwidth shaping needs ${what}, which this kernel lacks: ${err.message}`,
      { field: 'bandwidth', cause: err },
    );
  }
  return new KnitError('internal', `bandwidth shaping (${what}): ${messageOf(err)}`, { cause: err });
}

/** Makes the endpoint's shaping exist on its host-side veth; keeps what is already there. */
export function applyBandwidth(host: Host, ep: Endpoint, veth: Link): void {
  const bw = ep.bandwidth;
  if (bw === undefined) return;
  // Into the sandbox, the remote end is the source.
  if (shapesIngress(bw)) shape(host.nl, veth.index, bw, bw.ingressRate, bw.ingressBurst, 'src');
  if (shapesEgress(bw)) {
    const name = ifbNameFor(ep.id);
    let ifb = getLink(host.nl, name);
    if (ifb && ifb.alias !== ownerAlias('ep', ep.id)) {
      deleteLink(host.nl, ifb.index);
      ifb = undefined;
    }
    if (!ifb) {
      try {
        createIfb(host.nl, { name, mtu: veth.mtu, up: true, alias: ownerAlias('ep', ep.id) });
      } catch (err) {
        throw explain(err, 'ifb devices (CONFIG_IFB)');
      }
      ifb = getLink(host.nl, name);
      if (!ifb) throw new KnitError('internal', `ifb ${name} vanished right after it was created`);
    }
    // Out of the sandbox, the remote end is the destination.
    shape(host.nl, ifb.index, bw, bw.egressRate, bw.egressBurst, 'dst');
    try {
      ensureIngress(host.nl, veth.index);
      replaceIngressRedirect(host.nl, veth.index, ifb.index);
    } catch (err) {
      throw explain(err, 'the ingress qdisc, u32 filter and mirred action (CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_U32, CONFIG_NET_ACT_MIRRED)');
    }
  }
}

/** Retires the endpoint's ifb; the veth's own qdiscs go with the veth. */
export function removeBandwidth(host: Host, ep: Endpoint): void {
  if (shapesEgress(ep.bandwidth)) host.reaper.retire(ifbNameFor(ep.id));
}

/** What differs from the endpoint's shaping (empty when all is right). */
export function bandwidthProblems(host: Host, ep: Endpoint, veth: Link): string[] {
  return shapingProblems(host.nl, ep, veth);
}

/** bandwidthProblems on a given rtnetlink socket (CNI CHECK has the host's, not a Host). */
export function shapingProblems(nl: NetlinkSocket, ep: Endpoint, veth: Link): string[] {
  const bw = ep.bandwidth;
  const out: string[] = [];
  if (bw === undefined) return out;
  if (shapesIngress(bw)) out.push(...shaperProblems(nl, veth.index, veth.name, bw, bw.ingressRate));
  if (shapesEgress(bw)) {
    const ifb = getLink(nl, ifbNameFor(ep.id));
    if (!ifb) out.push(`ifb ${ifbNameFor(ep.id)} is missing`);
    else {
      out.push(...shaperProblems(nl, ifb.index, ifb.name, bw, bw.egressRate));
      if (!listFilters(nl, veth.index, INGRESS_HANDLE).some((f) => f.redirectTo === ifb.index)) {
        out.push(`${veth.name} does not redirect its ingress to ${ifb.name}`);
      }
    }
  }
  return out;
}
