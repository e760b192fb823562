// Traffic control over rtnetlink (RTM_*QDISC, RTM_*TFILTER): the pieces
// bandwidth shaping needs. A token bucket (tbf) as a device's root qdisc
// shapes what the device sends; what it receives can only be policed or
// redirected, so the ingress qdisc gets a match-all u32 filter whose mirred
// action redirects every packet to an ifb device, whose own tbf shapes it.
// (act_police and cls_matchall are often not built; u32, mirred and ifb are.)
// Shaping by remote subnet uses an htb root instead: two classes and u32
// filters on the IP source or destination address.
import { invalid } from '../lib/errors.ts';
import { parsePrefix } from '../lib/ip.ts';
import * as C from './netlink/constants.ts';
import { attrStr, message, nested, parseAttrs, str, u32, u64, attr, type Parsed } from './netlink/message.ts';
import { NetlinkError, type NetlinkSocket } from './netlink/socket.ts';

/** The ingress qdisc's fixed handle, ffff:. */
export const INGRESS_HANDLE = 0xffff0000;
/** PSCHED ticks are 64 ns (PSCHED_SHIFT 6): 15.625 per microsecond. */
const TICKS_PER_US = 1000 / 64;
const U32_MAX = 0xffffffff;
/** The redirect filter's fixed u32 handle (800::800), so a replace finds it again. */
const REDIRECT_HANDLE = 0x80000800;
const REDIRECT_PRIO = 1;

export interface Tbf {
  /** Bytes per second. */
  rate: number;
  /** Bucket size in bytes: the most sent at once above the rate. */
  burst: number;
  /** Bytes queued waiting for tokens before drops. */
  limit: number;
}

export interface Qdisc {
  index: number;
  kind: string;
  handle: number;
  parent: number;
  /** Decoded options of a tbf. */
  tbf?: Tbf;
  /** An htb's default class (its minor number). */
  htbDefault?: number;
}

/** An htb class: rates in bytes/s. */
export interface HtbClass {
  handle: number;
  parent: number;
  rate: number;
  ceil: number;
}

export interface Filter {
  index: number;
  kind: string;
  parent: number;
  prio: number;
  handle: number;
  /** Ifindex a mirred action redirects to. */
  redirectTo?: number;
  /** The class a u32 filter sends its matches to. */
  classid?: number;
}

// sch_htb's netlink attributes and the traffic-class messages (linux/pkt_sched.h, rtnetlink.h).
const TCA_HTB_PARMS = 1;
const TCA_HTB_INIT = 2;
const TCA_HTB_RATE64 = 6;
const TCA_HTB_CEIL64 = 7;
const RTM_NEWTCLASS = 40;
const RTM_GETTCLASS = 42;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
/** Filter priorities per family: u32 filters of two protocols cannot share one. */
const SUBNET_PRIO: Record<4 | 6, number> = { 4: 16, 6: 15 };

/** struct tcmsg: family, ifindex, handle, parent, info. */
function tcmsg(index: number, handle: number, parent: number, info = 0): Buffer {
  const b = Buffer.alloc(20);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(handle >>> 0, 8);
  b.writeUInt32LE(parent >>> 0, 12);
  b.writeUInt32LE(info >>> 0, 16);
  return b;
}

/**
 * The tbf a rate and burst call for. The queue holds what drains in
 * `latencyMs` plus the bucket (as the reference bandwidth plugin sizes it).
 */
export function tbfFor(rateBytes: number, burstBytes: number, latencyMs = 25): Tbf {
  if (!Number.isSafeInteger(rateBytes) || rateBytes < 1) throw invalid('rate', `must be at least 1 byte/s, got ${rateBytes}`);
  if (!Number.isInteger(burstBytes) || burstBytes < 1 || burstBytes > U32_MAX) {
    throw invalid('burst', `must be 1 to ${U32_MAX} bytes, got ${burstBytes}`);
  }
  const limit = Math.min(U32_MAX, Math.floor((rateBytes * latencyMs) / 1000) + burstBytes);
  return { rate: rateBytes, burst: burstBytes, limit };
}

/**
 * TCA_TBF_PARMS carries the rate (capped at u32; TCA_TBF_RATE64 has the
 * rest) and the bucket as a time in ticks; TCA_TBF_BURST gives the kernel
 * the bucket in bytes directly, so no rounding through ticks.
 */
function tbfOptions(t: Tbf): Buffer {
  const qopt = Buffer.alloc(36); // struct tc_tbf_qopt: rate, peakrate (tc_ratespec), limit, buffer, mtu
  // A link-layer-aware ratespec needs no rate table: the kernel computes.
  qopt.writeUInt8(C.TC_LINKLAYER_ETHERNET, 1);
  qopt.writeUInt32LE(Math.min(t.rate, U32_MAX), 8);
  qopt.writeUInt32LE(t.limit, 24);
  qopt.writeUInt32LE(Math.min(U32_MAX, Math.round(((t.burst * 1e6) / t.rate) * TICKS_PER_US)), 28);
  const attrs = [attr(C.TCA_TBF_PARMS, qopt), u32(C.TCA_TBF_BURST, t.burst)];
  if (t.rate > U32_MAX) attrs.push(u64(C.TCA_TBF_RATE64, t.rate));
  return nested(C.TCA_OPTIONS, attrs);
}

/** Makes (or changes) the device's root qdisc a tbf, handle 1:. */
export function replaceTbf(s: NetlinkSocket, index: number, t: Tbf): void {
  s.request(
    message(C.RTM_NEWQDISC, C.NLM_F_CREATE | C.NLM_F_REPLACE, tcmsg(index, 0x10000, C.TC_H_ROOT), [str(C.TCA_KIND, 'tbf'), tbfOptions(t)]),
    `set tbf root qdisc on ifindex ${index}`,
  );
}

/**
 * Makes the device's root qdisc an htb (handle 1:) whose unclassified
 * traffic goes to class 1:`defaultMinor`. Replaces any root there.
 */
export function replaceHtb(s: NetlinkSocket, index: number, defaultMinor: number): void {
  deleteRoot(s, index);
  const glob = Buffer.alloc(20); // struct tc_htb_glob: version, rate2quantum, defcls, debug, direct_pkts
  glob.writeUInt32LE(3, 0);
  glob.writeUInt32LE(10, 4);
  glob.writeUInt32LE(defaultMinor, 8);
  s.request(
    message(C.RTM_NEWQDISC, C.NLM_F_CREATE | C.NLM_F_EXCL, tcmsg(index, 0x10000, C.TC_H_ROOT), [str(C.TCA_KIND, 'htb'), nested(C.TCA_OPTIONS, [attr(TCA_HTB_INIT, glob)])]),
    `set htb root qdisc on ifindex ${index}`,
  );
}

/** struct tc_ratespec for a rate in bytes/s: link-layer aware, so no rate table is needed. */
function ratespec(b: Buffer, at: number, rateBytes: number): void {
  b.writeUInt8(C.TC_LINKLAYER_ETHERNET, at + 1);
  b.writeUInt32LE(Math.min(rateBytes, U32_MAX), at + 8);
}

/**
 * Adds class 1:`minor` under the htb root: `rate` guaranteed, up to `ceil`
 * (bytes/s), with a bucket of `burst` bytes at the rate.
 */
export function addHtbClass(s: NetlinkSocket, index: number, minor: number, rate: number, ceil: number, burst: number): void {
  const opt = Buffer.alloc(44); // struct tc_htb_opt: rate, ceil (tc_ratespec), buffer, cbuffer, quantum, level, prio
  ratespec(opt, 0, rate);
  ratespec(opt, 12, ceil);
  const ticks = (bytes: number, r: number) => Math.min(U32_MAX, Math.max(1, Math.round(((bytes * 1e6) / r) * TICKS_PER_US)));
  opt.writeUInt32LE(ticks(burst, rate), 24);
  opt.writeUInt32LE(ticks(burst, ceil), 28);
  // The kernel would derive rate/r2q and complain in the log when that is off its 1000..200000 range.
  opt.writeUInt32LE(Math.min(200_000, Math.max(1_000, Math.floor(rate / 10))), 32);
  const attrs = [attr(TCA_HTB_PARMS, opt)];
  if (rate > U32_MAX) attrs.push(u64(TCA_HTB_RATE64, rate));
  if (ceil > U32_MAX) attrs.push(u64(TCA_HTB_CEIL64, ceil));
  s.request(
    message(RTM_NEWTCLASS, C.NLM_F_CREATE | C.NLM_F_EXCL, tcmsg(index, 0x10000 | minor, 0x10000), [str(C.TCA_KIND, 'htb'), nested(C.TCA_OPTIONS, attrs)]),
    `add htb class 1:${minor.toString(16)} on ifindex ${index}`,
  );
}

/**
 * A u32 filter on the htb root sending packets whose source (`field` src)
 * or destination address is in `subnet` to class 1:`minor`.
 */
export function addSubnetFilter(s: NetlinkSocket, index: number, subnet: string, field: 'src' | 'dst', minor: number): void {
  const p = parsePrefix(subnet, 'subnet', false);
  const bytes = p.family === 4 ? 4 : 16;
  // Offsets in the IP header: v4 saddr 12, daddr 16; v6 saddr 8, daddr 24.
  const base = p.family === 4 ? (field === 'src' ? 12 : 16) : field === 'src' ? 8 : 24;
  const keys: { mask: number; val: number; off: number }[] = [];
  for (let w = 0; w < bytes / 4; w++) {
    const bitsBefore = w * 32;
    const n = Math.max(0, Math.min(32, p.len - bitsBefore));
    if (n === 0) break;
    const mask = n === 32 ? U32_MAX : (U32_MAX << (32 - n)) >>> 0;
    const word = Number((p.addr >> BigInt(bytes * 8 - bitsBefore - 32)) & 0xffffffffn);
    keys.push({ mask, val: (word & mask) >>> 0, off: base + w * 4 });
  }
  if (keys.length === 0) keys.push({ mask: 0, val: 0, off: base }); // a /0 matches everything
  const sel = Buffer.alloc(16 + 16 * keys.length); // struct tc_u32_sel + tc_u32_key each (mask, val big-endian)
  sel.writeUInt8(C.TC_U32_TERMINAL, 0);
  sel.writeUInt8(keys.length, 2);
  keys.forEach((k, i) => {
    sel.writeUInt32BE(k.mask, 16 + i * 16);
    sel.writeUInt32BE(k.val, 20 + i * 16);
    sel.writeInt32LE(k.off, 24 + i * 16);
  });
  const proto = p.family === 4 ? ETH_P_IP : ETH_P_IPV6;
  const info = (SUBNET_PRIO[p.family] << 16) | ((proto & 0xff) << 8) | (proto >> 8);
  const options = nested(C.TCA_OPTIONS, [u32(C.TCA_U32_CLASSID, 0x10000 | minor), attr(C.TCA_U32_SEL, sel)]);
  s.request(
    message(C.RTM_NEWTFILTER, C.NLM_F_CREATE | C.NLM_F_EXCL, tcmsg(index, 0, 0x10000, info), [str(C.TCA_KIND, 'u32'), options]),
    `add filter for ${subnet} (${field}) to class 1:${minor.toString(16)} on ifindex ${index}`,
  );
}

/** The htb classes of a device. */
export function listHtbClasses(s: NetlinkSocket, index: number): HtbClass[] {
  const out: HtbClass[] = [];
  for (const m of s.dump(message(RTM_GETTCLASS, 0, tcmsg(index, 0, 0)), `list classes on ifindex ${index}`)) {
    if (m.type !== RTM_NEWTCLASS) continue;
    const b = m.body;
    const a = parseAttrs(b, 20);
    if (attrStr(a.get(C.TCA_KIND)) !== 'htb') continue;
    const o = parseAttrs(a.get(C.TCA_OPTIONS) ?? Buffer.alloc(0));
    const parms = o.get(TCA_HTB_PARMS);
    if (parms === undefined || parms.length < 44) continue;
    const r64 = o.get(TCA_HTB_RATE64);
    const c64 = o.get(TCA_HTB_CEIL64);
    out.push({
      handle: b.readUInt32LE(8),
      parent: b.readUInt32LE(12),
      rate: r64 !== undefined && r64.length >= 8 ? Number(r64.readBigUInt64LE(0)) : parms.readUInt32LE(8),
      ceil: c64 !== undefined && c64.length >= 8 ? Number(c64.readBigUInt64LE(0)) : parms.readUInt32LE(20),
    });
  }
  return out;
}

/** Adds the ingress qdisc (ffff:); one already there is fine. */
export function ensureIngress(s: NetlinkSocket, index: number): void {
  try {
    s.request(
      message(C.RTM_NEWQDISC, C.NLM_F_CREATE | C.NLM_F_EXCL, tcmsg(index, INGRESS_HANDLE, C.TC_H_INGRESS), [str(C.TCA_KIND, 'ingress')]),
      `add ingress qdisc on ifindex ${index}`,
    );
  } catch (e) {
    if (!(e instanceof NetlinkError && e.code === 'EEXIST')) throw e;
  }
}

/** Removes the root qdisc (the device falls back to its default); none is fine. */
export function deleteRoot(s: NetlinkSocket, index: number): void {
  deleteQdisc(s, index, C.TC_H_ROOT, `delete root qdisc on ifindex ${index}`);
}

/** Removes the ingress qdisc and its filters; none is fine. */
export function deleteIngress(s: NetlinkSocket, index: number): void {
  deleteQdisc(s, index, C.TC_H_INGRESS, `delete ingress qdisc on ifindex ${index}`);
}

function deleteQdisc(s: NetlinkSocket, index: number, parent: number, op: string): void {
  try {
    s.request(message(C.RTM_DELQDISC, 0, tcmsg(index, 0, parent)), op);
  } catch (e) {
    // ENOENT: no such qdisc; EINVAL: only the default root is there (handle 0).
    if (!(e instanceof NetlinkError && (e.code === 'ENOENT' || e.code === 'EINVAL' || e.code === 'ENODEV'))) throw e;
  }
}

/**
 * On the ingress qdisc (which must exist), a u32 filter matching every
 * packet whose mirred action redirects it to `toIndex`'s egress. Replaces
 * the filter this function made before.
 */
export function replaceIngressRedirect(s: NetlinkSocket, index: number, toIndex: number): void {
  const sel = Buffer.alloc(16 + 16); // struct tc_u32_sel + one tc_u32_key (mask 0, value 0: matches all)
  sel.writeUInt8(C.TC_U32_TERMINAL, 0);
  sel.writeUInt8(1, 2); // nkeys
  const mirred = Buffer.alloc(28); // struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), eaction, ifindex
  mirred.writeInt32LE(C.TC_ACT_STOLEN, 8);
  mirred.writeInt32LE(C.TCA_EGRESS_REDIR, 20);
  mirred.writeUInt32LE(toIndex, 24);
  const action = nested(1, [str(C.TCA_ACT_KIND, 'mirred'), nested(C.TCA_ACT_OPTIONS, [attr(C.TCA_MIRRED_PARMS, mirred)])]);
  const options = nested(C.TCA_OPTIONS, [u32(C.TCA_U32_CLASSID, 0x10001), attr(C.TCA_U32_SEL, sel), nested(C.TCA_U32_ACT, [action])]);
  // info: priority in the high half, protocol (network order) in the low.
  const info = (REDIRECT_PRIO << 16) | ((C.ETH_P_ALL & 0xff) << 8) | (C.ETH_P_ALL >> 8);
  s.request(
    message(C.RTM_NEWTFILTER, C.NLM_F_CREATE | C.NLM_F_REPLACE, tcmsg(index, REDIRECT_HANDLE, INGRESS_HANDLE, info), [str(C.TCA_KIND, 'u32'), options]),
    `add redirect filter on ifindex ${index} to ifindex ${toIndex}`,
  );
}

function decodeTbf(opts: Buffer): Tbf | undefined {
  const a = parseAttrs(opts);
  const q = a.get(C.TCA_TBF_PARMS);
  if (q === undefined || q.length < 36) return undefined;
  const r64 = a.get(C.TCA_TBF_RATE64);
  const rate = r64 !== undefined && r64.length >= 8 ? Number(r64.readBigUInt64LE(0)) : q.readUInt32LE(8);
  // The kernel reports the bucket as a time; at the rate that is a size.
  const burst = Math.round(((q.readUInt32LE(28) / TICKS_PER_US) * rate) / 1e6);
  return { rate, burst, limit: q.readUInt32LE(24) };
}

function decodeQdisc(m: Parsed): Qdisc {
  const b = m.body;
  const a = parseAttrs(b, 20);
  const q: Qdisc = { index: b.readInt32LE(4), handle: b.readUInt32LE(8), parent: b.readUInt32LE(12), kind: attrStr(a.get(C.TCA_KIND)) ?? '' };
  const opts = a.get(C.TCA_OPTIONS);
  if (q.kind === 'tbf' && opts !== undefined) {
    const t = decodeTbf(opts);
    if (t !== undefined) q.tbf = t;
  }
  if (q.kind === 'htb' && opts !== undefined) {
    const g = parseAttrs(opts).get(TCA_HTB_INIT);
    if (g !== undefined && g.length >= 12) q.htbDefault = g.readUInt32LE(8);
  }
  return q;
}

/** Qdiscs of one device, or of all. */
export function listQdiscs(s: NetlinkSocket, index?: number): Qdisc[] {
  const out: Qdisc[] = [];
  for (const m of s.dump(message(C.RTM_GETQDISC, 0, tcmsg(index ?? 0, 0, 0)), 'list qdiscs')) {
    if (m.type !== C.RTM_NEWQDISC) continue;
    const q = decodeQdisc(m);
    if (index === undefined || q.index === index) out.push(q);
  }
  return out;
}

/** The device's root qdisc if it is not the kernel's default, else undefined. */
export function rootQdisc(s: NetlinkSocket, index: number): Qdisc | undefined {
  return listQdiscs(s, index).find((q) => q.parent === C.TC_H_ROOT && q.handle !== 0);
}

function classidOf(opts: Buffer): number | undefined {
  const c = parseAttrs(opts).get(C.TCA_U32_CLASSID);
  return c !== undefined && c.length >= 4 ? c.readUInt32LE(0) : undefined;
}

function redirectOf(opts: Buffer): number | undefined {
  const acts = parseAttrs(opts).get(C.TCA_U32_ACT);
  if (acts === undefined) return undefined;
  for (const act of parseAttrs(acts).values()) {
    const a = parseAttrs(act);
    if (attrStr(a.get(C.TCA_ACT_KIND)) !== 'mirred') continue;
    const p = parseAttrs(a.get(C.TCA_ACT_OPTIONS) ?? Buffer.alloc(0)).get(C.TCA_MIRRED_PARMS);
    if (p !== undefined && p.length >= 28) return p.readUInt32LE(24);
  }
  return undefined;
}

/** Filters under one parent of a device (INGRESS_HANDLE for the ingress qdisc's). */
export function listFilters(s: NetlinkSocket, index: number, parent: number): Filter[] {
  const out: Filter[] = [];
  for (const m of s.dump(message(C.RTM_GETTFILTER, 0, tcmsg(index, 0, parent)), `list filters on ifindex ${index}`)) {
    if (m.type !== C.RTM_NEWTFILTER) continue;
    const b = m.body;
    const a = parseAttrs(b, 20);
    const f: Filter = { index: b.readInt32LE(4), handle: b.readUInt32LE(8), parent: b.readUInt32LE(12), prio: b.readUInt32LE(16) >>> 16, kind: attrStr(a.get(C.TCA_KIND)) ?? '' };
    const opts = a.get(C.TCA_OPTIONS);
    const to = opts === undefined ? undefined : redirectOf(opts);
    if (to !== undefined) f.redirectTo = to;
    const cls = opts === undefined ? undefined : classidOf(opts);
    if (cls !== undefined) f.classid = cls;
    out.push(f);
  }
  return out;
}
