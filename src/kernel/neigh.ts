// Neighbours (ARP/NDP entries, family AF_INET/AF_INET6) and bridge forwarding
// database entries (family AF_BRIDGE), both RTM_*NEIGH.
import { formatMac, parseMac } from './mac.ts';
import * as C from './netlink/constants.ts';
import { attr, attrU32, ipBytes, ipFromBytes, message, parseAttrs, u32, type Parsed } from './netlink/message.ts';
import { NetlinkError, type NetlinkSocket, type Request } from './netlink/socket.ts';

export interface Neighbor {
  index: number;
  ip: string;
  mac?: string;
  /** NUD_* bits: 0x80 permanent, 0x02 reachable, 0x04 stale... */
  state: number;
}

export interface FdbEntry {
  index: number;
  mac: string;
  /** Remote VTEP (vxlan). */
  dst?: string;
  vlan?: number;
  vni?: number;
  master?: number;
  self: boolean;
  state: number;
}

function ndmsg(family: number, index: number, state: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt16LE(state, 8);
  b.writeUInt8(flags, 10);
  return b;
}

function ignoring(codes: string[], f: () => void): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof NetlinkError && codes.includes(e.code))) throw e;
  }
}

/** The request addNeighbor sends, for callers batching an attachment. */
export function addNeighborRequest(n: { index: number; ip: string; mac: string }): Request {
  const { family, bytes } = ipBytes(n.ip, 'ip');
  const hdr = ndmsg(family === 4 ? C.AF_INET : C.AF_INET6, n.index, C.NUD_PERMANENT, 0);
  return {
    msg: message(C.RTM_NEWNEIGH, C.NLM_F_CREATE | C.NLM_F_REPLACE, hdr, [attr(C.NDA_DST, bytes), attr(C.NDA_LLADDR, parseMac(n.mac))]),
    op: `add neighbour ${n.ip} ${n.mac} on ifindex ${n.index}`,
  };
}

/** A permanent neighbour entry, replacing whatever is there. */
export function addNeighbor(s: NetlinkSocket, n: { index: number; ip: string; mac: string }): void {
  s.batch([addNeighborRequest(n)]);
}

export function deleteNeighbor(s: NetlinkSocket, n: { index: number; ip: string }): void {
  const { family, bytes } = ipBytes(n.ip, 'ip');
  const hdr = ndmsg(family === 4 ? C.AF_INET : C.AF_INET6, n.index, 0, 0);
  ignoring(['ENOENT', 'ENODEV'], () =>
    s.request(message(C.RTM_DELNEIGH, 0, hdr, [attr(C.NDA_DST, bytes)]), `delete neighbour ${n.ip} on ifindex ${n.index}`),
  );
}

function decodeNeighbor(m: Parsed): Neighbor | undefined {
  const b = m.body;
  const fam = b.readUInt8(0);
  if (fam !== C.AF_INET && fam !== C.AF_INET6) return undefined;
  const a = parseAttrs(b, 12);
  const dst = a.get(C.NDA_DST);
  if (dst === undefined) return undefined;
  const n: Neighbor = { index: b.readInt32LE(4), ip: ipFromBytes(dst), state: b.readUInt16LE(8) };
  const ll = a.get(C.NDA_LLADDR);
  if (ll !== undefined && ll.length === 6) n.mac = formatMac(ll);
  return n;
}

/** ARP and NDP entries, of one interface or all. */
export function listNeighbors(s: NetlinkSocket, index?: number): Neighbor[] {
  const out: Neighbor[] = [];
  for (const m of s.dump(message(C.RTM_GETNEIGH, 0, ndmsg(C.AF_UNSPEC, 0, 0, 0)), 'list neighbours')) {
    if (m.type !== C.RTM_NEWNEIGH) continue;
    const n = decodeNeighbor(m);
    if (n !== undefined && (index === undefined || n.index === index)) out.push(n);
  }
  return out;
}

export interface FdbSpec {
  /** The port (bridge port, or the vxlan device itself with self). */
  index: number;
  mac: string;
  /** Remote VTEP for a vxlan entry. */
  dst?: string;
  vni?: number;
  vlan?: number;
  /** On the device's own table (vxlan); default when master is not set. */
  self?: boolean;
  /** On the master bridge's table. */
  master?: boolean;
}

function fdbMessage(type: number, flags: number, f: FdbSpec): Buffer {
  let ntf = 0;
  if (f.self === true || f.master !== true) ntf |= C.NTF_SELF;
  if (f.master === true) ntf |= C.NTF_MASTER;
  const attrs = [attr(C.NDA_LLADDR, parseMac(f.mac))];
  if (f.dst !== undefined) attrs.push(attr(C.NDA_DST, ipBytes(f.dst, 'dst').bytes));
  if (f.vni !== undefined) attrs.push(u32(C.NDA_VNI, f.vni));
  if (f.vlan !== undefined) {
    const v = Buffer.alloc(2);
    v.writeUInt16LE(f.vlan);
    attrs.push(attr(C.NDA_VLAN, v));
  }
  return message(type, flags, ndmsg(C.AF_BRIDGE, f.index, C.NUD_PERMANENT, ntf), attrs);
}

function describeFdb(f: FdbSpec): string {
  return `${f.mac}${f.dst === undefined ? '' : ` dst ${f.dst}`} on ifindex ${f.index}`;
}

/**
 * Appends a permanent FDB entry (`bridge fdb append`): a vxlan device keeps
 * several remotes for one MAC, e.g. 00:00:00:00:00:00 for flooding. Present already is fine.
 */
export function addFdb(s: NetlinkSocket, f: FdbSpec): void {
  ignoring(['EEXIST'], () =>
    s.request(fdbMessage(C.RTM_NEWNEIGH, C.NLM_F_CREATE | C.NLM_F_APPEND, f), `add fdb ${describeFdb(f)}`),
  );
}

/** Removes an FDB entry (with dst: that remote only); absent is fine. */
export function deleteFdb(s: NetlinkSocket, f: FdbSpec): void {
  ignoring(['ENOENT', 'ENODEV'], () => s.request(fdbMessage(C.RTM_DELNEIGH, 0, f), `delete fdb ${describeFdb(f)}`));
}

function decodeFdb(m: Parsed): FdbEntry | undefined {
  const b = m.body;
  if (b.readUInt8(0) !== C.AF_BRIDGE) return undefined;
  const a = parseAttrs(b, 12);
  const ll = a.get(C.NDA_LLADDR);
  if (ll === undefined || ll.length !== 6) return undefined;
  const e: FdbEntry = {
    index: b.readInt32LE(4),
    mac: formatMac(ll),
    self: (b.readUInt8(10) & C.NTF_SELF) !== 0,
    state: b.readUInt16LE(8),
  };
  const dst = a.get(C.NDA_DST);
  if (dst !== undefined) e.dst = ipFromBytes(dst);
  const vlan = a.get(C.NDA_VLAN);
  if (vlan !== undefined && vlan.length >= 2) e.vlan = vlan.readUInt16LE(0);
  const vni = attrU32(a.get(C.NDA_VNI));
  if (vni !== undefined) e.vni = vni;
  const master = attrU32(a.get(C.NDA_MASTER));
  if (master !== undefined) e.master = master;
  return e;
}

/** Forwarding database entries (bridge ports and vxlan devices), of one port or all. */
export function listFdb(s: NetlinkSocket, index?: number): FdbEntry[] {
  const out: FdbEntry[] = [];
  for (const m of s.dump(message(C.RTM_GETNEIGH, 0, ndmsg(C.AF_BRIDGE, 0, 0, 0)), 'list fdb')) {
    if (m.type !== C.RTM_NEWNEIGH) continue;
    const e = decodeFdb(m);
    if (e !== undefined && (index === undefined || e.index === index)) out.push(e);
  }
  return out;
}
