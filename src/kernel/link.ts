// Network devices (RTM_*LINK): list, create (bridge, veth, vxlan, macvlan,
// tap), change and delete. Devices that belong in another netns are created
// there directly (IFLA_NET_NS_FD), never moved: a move costs an RCU grace
// period under rtnl_lock (~18 ms against ~0.6 ms).
import { invalid } from '../lib/errors.ts';
import * as libc from './libc.ts';
import { formatMac, parseMac } from './mac.ts';
import * as C from './netlink/constants.ts';
import {
  attr,
  attrStr,
  attrU32,
  attrU8,
  ipBytes,
  message,
  nested,
  parseAttrs,
  str,
  u16be,
  u32,
  u8,
  type Parsed,
} from './netlink/message.ts';
import { NetlinkError, type NetlinkSocket, type Request } from './netlink/socket.ts';
import { withNetns } from './netns.ts';

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: 'bridge', 'veth', 'vxlan', 'macvlan', 'tun'...; undefined for physical and lo. */
  kind?: string;
  /** Kind of the master when enslaved ('bridge'). */
  slaveKind?: string;
  mtu: number;
  mac: string;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier present (IFF_LOWER_UP). */
  lowerUp: boolean;
  /** RFC 2863 operstate: 0 unknown, 2 down, 6 up... */
  operstate: number;
  flags: number;
  master?: number;
  alias?: string;
  group: number;
  /** IFLA_LINK: the parent (macvlan, vxlan dev) or, for veth, the peer's ifindex in its own netns. */
  link?: number;
  /** For veth: the peer's ifindex (in the netns named by linkNetnsId when set). */
  peerIndex?: number;
  linkNetnsId?: number;
}

type NameOrIndex = string | number;

const IFNAMSIZ = 16;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;

export function checkName(name: string, field = 'name'): void {
  if (name.length === 0 || Buffer.byteLength(name) >= IFNAMSIZ || /[\s/:]/.test(name)) {
    throw invalid(field, `'${name}' is not a valid interface name (1 to 15 characters, no spaces, '/' or ':')`);
  }
}

/** struct ifinfomsg: family, type, index, flags, change. */
function ifinfomsg(index = 0, up?: boolean, family: number = C.AF_UNSPEC): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  if (up !== undefined) {
    b.writeUInt32LE(up ? C.IFF_UP : 0, 8);
    b.writeUInt32LE(C.IFF_UP, 12);
  }
  return b;
}

/** The header plus the lookup attribute for a link named or numbered. */
function target(nameOrIndex: NameOrIndex, up?: boolean): { header: Buffer; attrs: Buffer[] } {
  if (typeof nameOrIndex === 'number') return { header: ifinfomsg(nameOrIndex, up), attrs: [] };
  checkName(nameOrIndex);
  return { header: ifinfomsg(0, up), attrs: [str(C.IFLA_IFNAME, nameOrIndex)] };
}

interface Common {
  mtu?: number;
  mac?: string;
  master?: number;
  alias?: string;
  group?: number;
}

function commonAttrs(o: Common): Buffer[] {
  const a: Buffer[] = [];
  if (o.mtu !== undefined) a.push(u32(C.IFLA_MTU, o.mtu));
  if (o.mac !== undefined) a.push(attr(C.IFLA_ADDRESS, parseMac(o.mac)));
  if (o.master !== undefined) a.push(u32(C.IFLA_MASTER, o.master));
  if (o.group !== undefined) a.push(u32(C.IFLA_GROUP, o.group));
  return a;
}

function linkinfo(kind: string, data?: Buffer[]): Buffer {
  const inner = [str(C.IFLA_INFO_KIND, kind)];
  if (data !== undefined && data.length > 0) inner.push(nested(C.IFLA_INFO_DATA, data));
  return nested(C.IFLA_LINKINFO, inner);
}

const CREATE = C.NLM_F_CREATE | C.NLM_F_EXCL;

/** What the kernel takes only on a link that exists: set in one message right after the create. */
interface AfterCreate {
  alias?: string;
  /** Bridge port options, for a link created with a bridge as master. */
  port?: BridgePortChange;
  /** No IPv6 link-local address (see noLinkLocalRequest). */
  noLinkLocal?: boolean;
}

/** One RTM_NEWLINK for the link named `name` with whatever `o` asks; undefined when it asks nothing. */
function afterCreateRequest(name: string, o: AfterCreate): Request | undefined {
  const attrs: Buffer[] = [];
  if (o.alias !== undefined) attrs.push(str(C.IFLA_IFALIAS, o.alias));
  const port = o.port === undefined ? [] : bridgePortAttrs(o.port);
  // As `ip link set NAME type bridge_slave ...` sends it: the bridge finds the port by name.
  if (port.length > 0) attrs.push(nested(C.IFLA_LINKINFO, [str(C.IFLA_INFO_SLAVE_KIND, 'bridge'), nested(C.IFLA_INFO_SLAVE_DATA, port)]));
  if (o.noLinkLocal === true) attrs.push(noLinkLocalAttr());
  if (attrs.length === 0) return undefined;
  return { msg: message(C.RTM_NEWLINK, 0, ifinfomsg(0), [str(C.IFLA_IFNAME, name), ...attrs]), op: `set up new link ${name}` };
}

/**
 * Sends the create, then one set for what only an existing link takes
 * (`after`), then the caller's `then` requests, in one datagram. With
 * `report`, the new link is returned as the batch left it.
 */
function create(s: NetlinkSocket, name: string, up: boolean | undefined, attrs: Buffer[], after: AfterCreate, op: string, report = false, then: Request[] = [], master?: number): Link | undefined {
  // The report is the create's echo (NLM_F_ECHO, Linux 6.3+): a get in the
  // same datagram waits behind the work the new link set off (linkwatch
  // takes the rtnl lock), 0.2 to 0.3 ms here against 0.05 for the echo.
  const flags = report ? CREATE | C.NLM_F_ECHO : CREATE;
  const reqs: Request[] = [
    { msg: message(C.RTM_NEWLINK, flags, ifinfomsg(0, up), [str(C.IFLA_IFNAME, name), ...attrs]), op },
  ];
  const set = afterCreateRequest(name, after);
  if (set !== undefined) reqs.push(set);
  reqs.push(...then);
  if (!report) {
    s.batch(reqs);
    return undefined;
  }
  const m = s.batchQuery(reqs).find((x) => x.type === C.RTM_NEWLINK);
  // A kernel that does not echo a new link: look it up.
  if (m === undefined) return getLink(s, name);
  // The echo shows the link as created, before the kernel set its master and
  // before the requests that followed; the batch succeeded, so they hold.
  return { ...decodeLink(m), ...(master !== undefined ? { master } : {}), ...(after.alias !== undefined ? { alias: after.alias } : {}) };
}

export function createBridge(
  s: NetlinkSocket,
  o: Common & { name: string; up?: boolean; vlanFiltering?: boolean },
): void {
  checkName(o.name);
  const data = o.vlanFiltering === undefined ? [] : [u8(C.IFLA_BR_VLAN_FILTERING, o.vlanFiltering ? 1 : 0)];
  create(s, o.name, o.up, [...commonAttrs(o), linkinfo('bridge', data)], { alias: o.alias }, `create bridge ${o.name}`);
}

export interface VethOptions extends Common {
  name: string;
  peerName: string;
  /** fd of the netns the peer is born in (openNetnsFd); default: the socket's netns. */
  peerNetnsFd?: number;
  peerMac?: string;
  /** Default: mtu. */
  peerMtu?: number;
  /** Brings up this end. The peer is always born down: the kernel refuses to open it before the pair is linked (ENOTCONN), so set it up from its own netns. */
  up?: boolean;
  /** Return this end as made (index, MAC, peerIndex, group; master and alias as asked): the create's echo. */
  report?: boolean;
  /** This end's bridge port options (with `master` a bridge), set in the same datagram. */
  port?: BridgePortChange;
  /** No IPv6 link-local address on this end (see noLinkLocalRequest), set in the same datagram. */
  noLinkLocal?: boolean;
  /** Requests for the same datagram, after the create and its settings. */
  then?: Request[];
}

/** The veth pair; with `report`, this end as made (undefined only if it vanished at once). */
export function createVeth(s: NetlinkSocket, o: VethOptions): Link | undefined {
  checkName(o.name);
  checkName(o.peerName, 'peerName');
  const peerAttrs = [str(C.IFLA_IFNAME, o.peerName)];
  const peerMtu = o.peerMtu ?? o.mtu;
  if (peerMtu !== undefined) peerAttrs.push(u32(C.IFLA_MTU, peerMtu));
  if (o.peerMac !== undefined) peerAttrs.push(attr(C.IFLA_ADDRESS, parseMac(o.peerMac, 'peerMac')));
  if (o.peerNetnsFd !== undefined) peerAttrs.push(u32(C.IFLA_NET_NS_FD, o.peerNetnsFd));
  // VETH_INFO_PEER carries a whole ifinfomsg, then the peer's attributes.
  const peer = nested(C.VETH_INFO_PEER, [ifinfomsg(0), ...peerAttrs]);
  return create(s, o.name, o.up, [...commonAttrs(o), linkinfo('veth', [peer])], { alias: o.alias, port: o.port, noLinkLocal: o.noLinkLocal }, `create veth ${o.name}/${o.peerName}`, o.report === true, o.then, o.master);
}

export interface VxlanOptions extends Common {
  name: string;
  vni: number;
  local?: string;
  /** Default remote VTEP, or a multicast group. */
  remote?: string;
  /** UDP port; default 4789. */
  port?: number;
  learning?: boolean;
  /** Underlay device ifindex. */
  dev?: number;
  up?: boolean;
}

export function createVxlan(s: NetlinkSocket, o: VxlanOptions): void {
  checkName(o.name);
  if (!Number.isInteger(o.vni) || o.vni < 0 || o.vni > 0xffffff) throw invalid('vni', `${o.vni} is not a VNI (0 to 16777215)`);
  const data = [u32(C.IFLA_VXLAN_ID, o.vni), u16be(C.IFLA_VXLAN_PORT, o.port ?? 4789)];
  if (o.local !== undefined) {
    const { family, bytes } = ipBytes(o.local, 'local');
    data.push(attr(family === 4 ? C.IFLA_VXLAN_LOCAL : C.IFLA_VXLAN_LOCAL6, bytes));
  }
  if (o.remote !== undefined) {
    const { family, bytes } = ipBytes(o.remote, 'group');
    data.push(attr(family === 4 ? C.IFLA_VXLAN_GROUP : C.IFLA_VXLAN_GROUP6, bytes));
  }
  if (o.learning !== undefined) data.push(u8(C.IFLA_VXLAN_LEARNING, o.learning ? 1 : 0));
  if (o.dev !== undefined) data.push(u32(C.IFLA_VXLAN_LINK, o.dev));
  create(s, o.name, o.up, [...commonAttrs(o), linkinfo('vxlan', data)], { alias: o.alias }, `create vxlan ${o.name}`);
}

export interface MacvlanOptions extends Common {
  name: string;
  /** ifindex of the parent, in the socket's netns. */
  parent: number;
  mode: keyof typeof C.MACVLAN_MODE;
  /** Born directly in this netns (the parent stays where it is). */
  netnsFd?: number;
  up?: boolean;
}

export function createMacvlan(s: NetlinkSocket, o: MacvlanOptions): void {
  checkName(o.name);
  const mode = C.MACVLAN_MODE[o.mode];
  if (mode === undefined) throw invalid('mode', `'${String(o.mode)}' is not a macvlan mode (bridge, private, vepa, passthru)`);
  const attrs = [...commonAttrs(o), u32(C.IFLA_LINK, o.parent), linkinfo('macvlan', [u32(C.IFLA_MACVLAN_MODE, mode)])];
  if (o.netnsFd !== undefined) attrs.push(u32(C.IFLA_NET_NS_FD, o.netnsFd));
  // An alias set by name would look in the wrong netns when born elsewhere.
  if (o.alias !== undefined && o.netnsFd !== undefined) throw invalid('alias', 'cannot be combined with netnsFd');
  create(s, o.name, o.up, attrs, { alias: o.alias }, `create macvlan ${o.name}`);
}

/** An ifb device: a sink that tc redirects a device's ingress to, so it can be shaped as egress. */
export function createIfb(s: NetlinkSocket, o: Common & { name: string; up?: boolean }): void {
  checkName(o.name);
  create(s, o.name, o.up, [...commonAttrs(o), linkinfo('ifb')], { alias: o.alias }, `create ifb ${o.name}`);
}

/**
 * A persistent tap (TUNSETIFF + TUNSETPERSIST on /dev/net/tun; the kernel
 * cannot create tun devices over rtnetlink), then its settings in one batch.
 * The tap is born in the netns /dev/net/tun is opened in: the socket's.
 */
export function createTap(s: NetlinkSocket, o: Common & { name: string; up?: boolean }): void {
  checkName(o.name);
  const make = (): void => {
    const fd = libc.open('/dev/net/tun', libc.O_RDWR | libc.O_CLOEXEC, 0);
    if (fd < 0) throw libc.sysError('open /dev/net/tun');
    try {
      const ifr = Buffer.alloc(40);
      ifr.write(o.name, 0, 'utf8');
      ifr.writeUInt16LE(IFF_TAP | IFF_NO_PI, IFNAMSIZ);
      if (libc.ioctlPtr(fd, TUNSETIFF, ifr) !== 0) {
        const e = libc.errno();
        // TUNSETIFF attaches to an existing device instead of failing; refuse that like a create.
        throw new NetlinkError(e, `create tap ${o.name}`);
      }
      if (libc.ioctlInt(fd, TUNSETPERSIST, 1) !== 0) throw libc.sysError(`persist tap ${o.name}`);
    } finally {
      libc.close(fd);
    }
  };
  if (getLink(s, o.name) !== undefined) throw new NetlinkError(17, `create tap ${o.name}`, 'exists already');
  if (s.netnsPath === undefined) make();
  else withNetns(s.netnsPath, make);
  setLink(s, o.name, o);
}

export interface LinkChange {
  mtu?: number;
  mac?: string;
  /** ifindex of the new master; null detaches. */
  master?: number | null;
  up?: boolean;
  alias?: string;
  group?: number;
  /** Receive every frame (a bridge: also those not addressed to it), as `ip link set promisc on`. */
  promisc?: boolean;
  /** Rename (the link must be down). */
  name?: string;
}

export function setLink(s: NetlinkSocket, nameOrIndex: NameOrIndex, o: LinkChange): void {
  s.batch(setLinkRequests(s, nameOrIndex, o));
}

/** The requests setLink would send, for callers that batch them with others. */
export function setLinkRequests(s: NetlinkSocket, nameOrIndex: NameOrIndex, o: LinkChange): Request[] {
  let ref = nameOrIndex;
  if (o.name !== undefined) {
    checkName(o.name);
    if (typeof ref === 'string') {
      const l = getLink(s, ref);
      if (l === undefined) throw new NetlinkError(19, `rename ${ref}`);
      ref = l.index;
    }
  }
  const { header, attrs } = target(ref, o.up);
  if (o.promisc !== undefined) {
    // ifi_flags / ifi_change: the promiscuous bit beside the up bit target() may have set.
    header.writeUInt32LE(header.readUInt32LE(8) | (o.promisc ? C.IFF_PROMISC : 0), 8);
    header.writeUInt32LE(header.readUInt32LE(12) | C.IFF_PROMISC, 12);
  }
  const a = [...attrs, ...commonAttrs({ ...o, master: undefined })];
  if (o.master !== undefined) a.push(u32(C.IFLA_MASTER, o.master ?? 0));
  if (o.alias !== undefined) a.push(str(C.IFLA_IFALIAS, o.alias));
  if (o.name !== undefined) a.push(str(C.IFLA_IFNAME, o.name));
  return [{ msg: message(C.RTM_NEWLINK, 0, header, a), op: `set link ${nameOrIndex}` }];
}

export interface BridgePortChange {
  isolated?: boolean;
  hairpin?: boolean;
  learning?: boolean;
}

/** IFLA_BRPORT_* attributes for the options given. */
function bridgePortAttrs(o: BridgePortChange): Buffer[] {
  const info: Buffer[] = [];
  if (o.hairpin !== undefined) info.push(u8(C.IFLA_BRPORT_MODE, o.hairpin ? 1 : 0));
  if (o.learning !== undefined) info.push(u8(C.IFLA_BRPORT_LEARNING, o.learning ? 1 : 0));
  if (o.isolated !== undefined) info.push(u8(C.IFLA_BRPORT_ISOLATED, o.isolated ? 1 : 0));
  return info;
}

/** Bridge port options, IFLA_PROTINFO in an AF_BRIDGE RTM_SETLINK. */
export function setBridgePort(s: NetlinkSocket, index: number, o: BridgePortChange): void {
  const info = bridgePortAttrs(o);
  if (info.length === 0) return;
  const msg = message(C.RTM_SETLINK, 0, ifinfomsg(index, undefined, C.AF_BRIDGE), [nested(C.IFLA_PROTINFO, info)]);
  s.request(msg, `set bridge port ${index}`);
}

/**
 * No IPv6 link-local address on this link (address generation mode none;
 * the kernel takes it only on an existing link, not in the create). A
 * bridge port needs none, and the link-local address's DAD, router
 * solicitations and MLD reports would be flooded to every other port.
 */
export function noLinkLocalRequest(nameOrIndex: NameOrIndex): Request {
  const { header, attrs } = target(nameOrIndex);
  return { msg: message(C.RTM_NEWLINK, 0, header, [...attrs, noLinkLocalAttr()]), op: `set addrgenmode none on ${nameOrIndex}` };
}

function noLinkLocalAttr(): Buffer {
  return nested(C.IFLA_AF_SPEC, [nested(C.AF_INET6, [u8(C.IFLA_INET6_ADDR_GEN_MODE, C.IN6_ADDR_GEN_MODE_NONE)])]);
}

export interface BridgePort {
  hairpin: boolean;
  learning: boolean;
  isolated: boolean;
}

/** Bridge port options of one port, from an AF_BRIDGE link dump. */
export function getBridgePort(s: NetlinkSocket, index: number): BridgePort | undefined {
  for (const m of s.dump(message(C.RTM_GETLINK, 0, ifinfomsg(0, undefined, C.AF_BRIDGE)), 'dump bridge ports')) {
    if (m.body.readInt32LE(4) !== index) continue;
    const p = parseAttrs(parseAttrs(m.body, 16).get(C.IFLA_PROTINFO) ?? Buffer.alloc(0));
    return {
      hairpin: attrU8(p.get(C.IFLA_BRPORT_MODE)) === 1,
      learning: attrU8(p.get(C.IFLA_BRPORT_LEARNING)) === 1,
      isolated: attrU8(p.get(C.IFLA_BRPORT_ISOLATED)) === 1,
    };
  }
  return undefined;
}

function isGone(e: unknown): boolean {
  return e instanceof NetlinkError && e.code === 'ENODEV';
}

function deleteRequest(nameOrIndex: NameOrIndex): Buffer {
  const { header, attrs } = target(nameOrIndex);
  return message(C.RTM_DELLINK, 0, header, attrs);
}

/** Deletes a link; a missing one is fine. Slow (~16 ms): prefer the async form in the daemon. */
export function deleteLink(s: NetlinkSocket, nameOrIndex: NameOrIndex): void {
  try {
    s.request(deleteRequest(nameOrIndex), `delete link ${nameOrIndex}`);
  } catch (e) {
    if (!isGone(e)) throw e;
  }
}

export async function deleteLinkAsync(s: NetlinkSocket, nameOrIndex: NameOrIndex): Promise<void> {
  try {
    await s.requestAsync(deleteRequest(nameOrIndex), `delete link ${nameOrIndex}`);
  } catch (e) {
    if (!isGone(e)) throw e;
  }
}

function groupDelete(group: number): Buffer {
  if (!Number.isInteger(group) || group <= 0) {
    // Group 0 is every device's default: deleting it would take everything.
    throw invalid('group', `${group} is not a deletable interface group (1 to 4294967295)`);
  }
  return message(C.RTM_DELLINK, 0, ifinfomsg(0), [u32(C.IFLA_GROUP, group)]);
}

/** Deletes every link in an interface group with one request (~0.6 ms per link against 16 ms). */
export function deleteLinksInGroup(s: NetlinkSocket, group: number): void {
  try {
    s.request(groupDelete(group), `delete links in group ${group}`);
  } catch (e) {
    if (!isGone(e)) throw e;
  }
}

export async function deleteLinksInGroupAsync(s: NetlinkSocket, group: number): Promise<void> {
  try {
    await s.requestAsync(groupDelete(group), `delete links in group ${group}`);
  } catch (e) {
    if (!isGone(e)) throw e;
  }
}

export function decodeLink(m: Parsed): Link {
  const b = m.body;
  const flags = b.readUInt32LE(8);
  const a = parseAttrs(b, 16);
  const info = a.get(C.IFLA_LINKINFO);
  const li = info === undefined ? undefined : parseAttrs(info);
  const mac = a.get(C.IFLA_ADDRESS);
  const link: Link = {
    index: b.readInt32LE(4),
    name: attrStr(a.get(C.IFLA_IFNAME)) ?? '',
    mtu: attrU32(a.get(C.IFLA_MTU)) ?? 0,
    mac: mac === undefined ? '' : formatMac(mac),
    up: (flags & C.IFF_UP) !== 0,
    lowerUp: (flags & C.IFF_LOWER_UP) !== 0,
    operstate: attrU8(a.get(C.IFLA_OPERSTATE)) ?? 0,
    flags,
    group: attrU32(a.get(C.IFLA_GROUP)) ?? 0,
  };
  const kind = attrStr(li?.get(C.IFLA_INFO_KIND));
  if (kind !== undefined) link.kind = kind;
  const slaveKind = attrStr(li?.get(C.IFLA_INFO_SLAVE_KIND));
  if (slaveKind !== undefined) link.slaveKind = slaveKind;
  const master = attrU32(a.get(C.IFLA_MASTER));
  if (master !== undefined && master !== 0) link.master = master;
  const alias = attrStr(a.get(C.IFLA_IFALIAS));
  if (alias !== undefined) link.alias = alias;
  const parent = attrU32(a.get(C.IFLA_LINK));
  if (parent !== undefined && parent !== link.index) {
    link.link = parent;
    if (kind === 'veth') link.peerIndex = parent;
  }
  const nsid = a.get(C.IFLA_LINK_NETNSID);
  if (nsid !== undefined && nsid.length >= 4) link.linkNetnsId = nsid.readInt32LE(0);
  return link;
}

export function listLinks(s: NetlinkSocket): Link[] {
  return s.dump(message(C.RTM_GETLINK, 0, ifinfomsg()), 'list links').filter((m) => m.type === C.RTM_NEWLINK).map(decodeLink);
}

/** One link by name or index; undefined when there is none. */
export function getLink(s: NetlinkSocket, nameOrIndex: NameOrIndex): Link | undefined {
  const { header, attrs } = target(nameOrIndex);
  return queryLink(s, message(C.RTM_GETLINK, 0, header, attrs), `get link ${nameOrIndex}`);
}

/** One RTM_GETLINK; undefined when the kernel says there is no such link. */
function queryLink(s: NetlinkSocket, msg: Buffer, op: string): Link | undefined {
  try {
    const m = s.query(msg, op).find((x) => x.type === C.RTM_NEWLINK);
    return m === undefined ? undefined : decodeLink(m);
  } catch (e) {
    if (isGone(e)) return undefined;
    throw e;
  }
}

/**
 * A link in the namespace the socket's namespace knows as `netnsId` (a
 * veth's linkNetnsId): a veth's peer after it moved, looked at without
 * entering that namespace.
 */
export function getLinkInNetnsId(s: NetlinkSocket, netnsId: number, index: number): Link | undefined {
  return queryLink(s, message(C.RTM_GETLINK, 0, ifinfomsg(index), [u32(C.IFLA_TARGET_NETNSID, netnsId)]), `get link ${index} in netns id ${netnsId}`);
}

/** ifindex of a link, or a NetlinkError ENODEV naming it. */
export function linkIndex(s: NetlinkSocket, name: string): number {
  const l = getLink(s, name);
  if (l === undefined) throw new NetlinkError(19, `find link ${name}`);
  return l.index;
}
