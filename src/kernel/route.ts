// Routes (RTM_*ROUTE), IPv4 and IPv6.
import { invalid } from '../lib/errors.ts';
import { parsePrefix, type Family } from '../lib/ip.ts';
import * as C from './netlink/constants.ts';
import { attr, attrU32, ipAttr, ipBytes, ipFromBytes, message, parseAttrs, u32, type Parsed } from './netlink/message.ts';
import { NetlinkError, type NetlinkSocket, type Request } from './netlink/socket.ts';

export type Scope = keyof typeof C.RT_SCOPE;

export interface Route {
  family: Family;
  /** A CIDR or 'default'. */
  dst: string;
  gateway?: string;
  oif?: number;
  /** Default: main (254). */
  table?: number;
  metric?: number;
  /** Default: link for a route without gateway, universe with one. */
  scope?: Scope;
  /** Routing protocol (who installed it); default static (4). */
  proto?: number;
}

function rtmsg(r: Route, dstLen: number, forDelete: boolean): Buffer {
  const b = Buffer.alloc(12);
  const table = r.table ?? C.RT_TABLE_MAIN;
  b.writeUInt8(r.family === 4 ? C.AF_INET : C.AF_INET6, 0);
  b.writeUInt8(dstLen, 1);
  b.writeUInt8(table < 256 ? table : C.RT_TABLE_COMPAT, 4);
  b.writeUInt8(forDelete ? 0 : (r.proto ?? C.RTPROT_STATIC), 5);
  // A delete with scope "nowhere" matches the route whatever its scope.
  const scope = r.scope ?? (r.gateway === undefined ? 'link' : 'universe');
  b.writeUInt8(forDelete && r.scope === undefined ? C.RT_SCOPE_NOWHERE : C.RT_SCOPE[scope], 6);
  b.writeUInt8(C.RTN_UNICAST, 7);
  return b;
}

function routeMessage(type: number, flags: number, r: Route, forDelete: boolean): Buffer {
  const attrs: Buffer[] = [];
  let dstLen = 0;
  if (r.dst !== 'default') {
    const p = parsePrefix(r.dst, 'dst');
    if (p.family !== r.family) throw invalid('dst', `'${r.dst}' is not an IPv${r.family} prefix`);
    dstLen = p.len;
    const [ip] = r.dst.split('/') as [string];
    if (dstLen > 0) attrs.push(ipAttr(C.RTA_DST, ip, 'dst'));
  }
  if (r.gateway !== undefined) {
    const g = ipBytes(r.gateway, 'gateway');
    if (g.family !== r.family) throw invalid('gateway', `'${r.gateway}' is not an IPv${r.family} address`);
    attrs.push(attr(C.RTA_GATEWAY, g.bytes));
  }
  if (r.oif !== undefined) attrs.push(u32(C.RTA_OIF, r.oif));
  if (r.metric !== undefined) attrs.push(u32(C.RTA_PRIORITY, r.metric));
  attrs.push(u32(C.RTA_TABLE, r.table ?? C.RT_TABLE_MAIN));
  return message(type, flags, rtmsg(r, dstLen, forDelete), attrs);
}

function describe(r: Route): string {
  return `${r.dst}${r.gateway === undefined ? '' : ` via ${r.gateway}`}${r.oif === undefined ? '' : ` dev ${r.oif}`}`;
}

/** The request addRoute sends, for callers batching an attachment. */
export function addRouteRequest(r: Route): Request {
  return {
    msg: routeMessage(C.RTM_NEWROUTE, C.NLM_F_CREATE | C.NLM_F_REPLACE, r, false),
    op: `add route ${describe(r)}`,
  };
}

/** Creates the route or replaces the one with the same destination (and, for IPv6, metric). */
export function addRoute(s: NetlinkSocket, r: Route): void {
  s.batch([addRouteRequest(r)]);
}

/** Removes a route; one already gone is fine. */
export function deleteRoute(s: NetlinkSocket, r: Route): void {
  try {
    s.request(routeMessage(C.RTM_DELROUTE, 0, r, true), `delete route ${describe(r)}`);
  } catch (e) {
    if (!(e instanceof NetlinkError && (e.code === 'ESRCH' || e.code === 'ENODEV'))) throw e;
  }
}

const SCOPES = new Map<number, Scope>(Object.entries(C.RT_SCOPE).map(([k, v]) => [v, k as Scope]));

function decodeRoute(m: Parsed): (Route & { type: number }) | undefined {
  const b = m.body;
  const fam = b.readUInt8(0);
  if (fam !== C.AF_INET && fam !== C.AF_INET6) return undefined;
  const family: Family = fam === C.AF_INET ? 4 : 6;
  const a = parseAttrs(b, 12);
  const dstLen = b.readUInt8(1);
  const dst = a.get(C.RTA_DST);
  const r: Route & { type: number } = {
    family,
    dst: dstLen === 0 || dst === undefined ? 'default' : `${ipFromBytes(dst)}/${dstLen}`,
    table: attrU32(a.get(C.RTA_TABLE)) ?? b.readUInt8(4),
    proto: b.readUInt8(5),
    type: b.readUInt8(7),
  };
  const scope = SCOPES.get(b.readUInt8(6));
  if (scope !== undefined) r.scope = scope;
  const gw = a.get(C.RTA_GATEWAY);
  if (gw !== undefined) r.gateway = ipFromBytes(gw);
  const oif = attrU32(a.get(C.RTA_OIF));
  if (oif !== undefined) r.oif = oif;
  const metric = attrU32(a.get(C.RTA_PRIORITY));
  if (metric !== undefined) r.metric = metric;
  return r;
}

/** Unicast routes of one table (default main; 0 = every table), of one family or both. */
export function listRoutes(s: NetlinkSocket, family?: Family, table: number = C.RT_TABLE_MAIN): Route[] {
  const hdr = Buffer.alloc(12);
  hdr.writeUInt8(family === undefined ? C.AF_UNSPEC : family === 4 ? C.AF_INET : C.AF_INET6, 0);
  const out: Route[] = [];
  for (const m of s.dump(message(C.RTM_GETROUTE, 0, hdr), 'list routes')) {
    if (m.type !== C.RTM_NEWROUTE) continue;
    const r = decodeRoute(m);
    if (r === undefined || r.type !== C.RTN_UNICAST) continue;
    if (table !== 0 && r.table !== table) continue;
    const { type: _type, ...route } = r;
    out.push(route);
  }
  return out;
}
