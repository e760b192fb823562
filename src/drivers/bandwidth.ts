// An endpoint's bandwidth limits, as the CNI bandwidth plugin applies them:
// traffic into the sandbox is what the host-side veth sends, shaped by a tbf
// root qdisc there; traffic out of the sandbox is what the veth receives,
// redirected (u32 match-all + mirred) to an ifb device whose tbf shapes it.
// The ifb carries the endpoint's owner alias, so reconcile removes a leftover.
import type { Host } from '../engine/host.ts';
import type { Bandwidth, Endpoint } from '../model/index.ts';
import { KnitError, invalid, messageOf } from '../lib/errors.ts';
import { createIfb, deleteLink, getLink, type Link } from '../kernel/link.ts';
import { NetlinkError } from '../kernel/netlink/socket.ts';
import { INGRESS_HANDLE, ensureIngress, listFilters, replaceIngressRedirect, replaceTbf, rootQdisc, tbfFor } from '../kernel/tc.ts';
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
  if (shapesIngress(bw)) {
    try {
      replaceTbf(host.nl, veth.index, tbfOf(bw.ingressRate, bw.ingressBurst));
    } catch (err) {
      throw explain(err, 'the tbf qdisc (CONFIG_NET_SCH_TBF)');
    }
  }
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
    try {
      replaceTbf(host.nl, ifb.index, tbfOf(bw.egressRate, bw.egressBurst));
    } catch (err) {
      throw explain(err, 'the tbf qdisc (CONFIG_NET_SCH_TBF)');
    }
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
  const bw = ep.bandwidth;
  const out: string[] = [];
  if (bw === undefined) return out;
  const tbfIs = (index: number, dev: string, rateBits: number) => {
    const q = rootQdisc(host.nl, index);
    if (q?.kind !== 'tbf') out.push(`${dev} has no tbf root qdisc`);
    else if (q.tbf?.rate !== Math.floor(rateBits / 8)) out.push(`${dev} shapes at ${q.tbf?.rate ?? '?'} bytes/s, not ${Math.floor(rateBits / 8)}`);
  };
  if (shapesIngress(bw)) tbfIs(veth.index, veth.name, bw.ingressRate);
  if (shapesEgress(bw)) {
    const ifb = getLink(host.nl, ifbNameFor(ep.id));
    if (!ifb) out.push(`ifb ${ifbNameFor(ep.id)} is missing`);
    else {
      tbfIs(ifb.index, ifb.name, bw.egressRate);
      if (!listFilters(host.nl, veth.index, INGRESS_HANDLE).some((f) => f.redirectTo === ifb.index)) {
        out.push(`${veth.name} does not redirect its ingress to ${ifb.name}`);
      }
    }
  }
  return out;
}
