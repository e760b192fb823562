// Address announcements: tell the segment that `ip` now lives at `mac`, so
// peers and bridges update stale caches at once (after an IP moves to a new
// container). IPv4: gratuitous ARP from an AF_PACKET socket; IPv6: an
// unsolicited neighbour advertisement from a raw ICMPv6 socket. Both sockets
// are created inside the netns, so the frames leave from its interface.
import { invalid } from '../lib/errors.ts';
import * as libc from './libc.ts';
import { parseMac } from './mac.ts';
import { AF_PACKET } from './netlink/constants.ts';
import { ipBytes } from './netlink/message.ts';
import { withNetns } from './netns.ts';

const SOCK_DGRAM = 2;
const ETH_P_ARP = 0x0806;
const ARPHRD_ETHER = 1;
const ARPOP_REQUEST = 1;

/** An ARP announcement: a request with sender = target = ip, target MAC zero. */
function arpPacket(mac: Buffer, ip: Buffer): Buffer {
  const p = Buffer.alloc(28);
  p.writeUInt16BE(ARPHRD_ETHER, 0);
  p.writeUInt16BE(0x0800, 2);
  p.writeUInt8(6, 4);
  p.writeUInt8(4, 5);
  p.writeUInt16BE(ARPOP_REQUEST, 6);
  mac.copy(p, 8);
  ip.copy(p, 14); // sender = target: announcement, not a question
  ip.copy(p, 24);
  return p;
}

/** struct sockaddr_ll for the Ethernet broadcast address on ifindex. */
function broadcastTo(ifindex: number): Buffer {
  const a = Buffer.alloc(20);
  a.writeUInt16LE(AF_PACKET, 0);
  a.writeUInt16BE(ETH_P_ARP, 2);
  a.writeInt32LE(ifindex, 4);
  a.writeUInt16LE(ARPHRD_ETHER, 8);
  a.writeUInt8(6, 11);
  Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).copy(a, 12);
  return a;
}

/**
 * Sends one ARP announcement for ip on ifname: a request whose sender and
 * target are both ip (RFC 5227, `arping -U`, what the reference CNI bridge
 * plugin sends). Linux updates an existing entry from it, and with
 * arp_accept creates one. One frame, not a request and a reply: a broadcast
 * is copied to every port of the bridge, so each costs CPU per sandbox.
 */
export function sendGratuitousArp(netnsPath: string, ifname: string, ip: string, mac: string): void {
  const { family, bytes } = ipBytes(ip, 'ip');
  if (family !== 4) throw invalid('ip', `'${ip}' is not IPv4 (gratuitous ARP is IPv4 only)`);
  const hw = parseMac(mac);
  let fd = -1;
  try {
    withNetns(netnsPath, () => {
      const ifindex = libc.ifNameToIndex(ifname);
      if (ifindex === 0) throw libc.sysError(`find interface ${ifname}`);
      // Protocol 0: send only, so the socket never queues received frames.
      fd = libc.socket(AF_PACKET, SOCK_DGRAM | libc.SOCK_CLOEXEC, 0);
      if (fd < 0) throw libc.sysError('socket(AF_PACKET)');
      const to = broadcastTo(ifindex);
      const pkt = arpPacket(hw, bytes);
      if (libc.sendto(fd, pkt, pkt.length, 0, to, to.length) < 0) throw libc.sysError(`send gratuitous ARP on ${ifname}`);
    });
  } finally {
    // Releasing a packet socket waits for an RCU grace period (~13 ms here);
    // that wait goes to a libuv pool thread, not the attach. Only outside the
    // window: a pool thread spawned inside it would live in (and pin) this netns.
    if (fd >= 0) closeInBackground(fd);
  }
}

function closeInBackground(fd: number): void {
  libc.close.async(fd, () => {});
}

const AF_INET6 = 10;
const IPPROTO_IPV6 = 41;
const IPPROTO_ICMPV6 = 58;
const IPV6_MULTICAST_IF = 17;
const IPV6_MULTICAST_HOPS = 18;
const ND_NEIGHBOR_ADVERT = 136;
const ND_NA_FLAG_OVERRIDE = 0x20;
const ND_OPT_TARGET_LINKADDR = 2;

function intOpt(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}

/**
 * Sends an unsolicited neighbour advertisement (override set) for ip to
 * ff02::1 on ifname. The kernel fills in the ICMPv6 checksum; the hop limit
 * must be 255 or receivers drop it.
 */
export function sendUnsolicitedNeighborAdvert(netnsPath: string, ifname: string, ip: string, mac: string): void {
  const { family, bytes } = ipBytes(ip, 'ip');
  if (family !== 6) throw invalid('ip', `'${ip}' is not IPv6 (neighbour advertisements are IPv6 only)`);
  const hw = parseMac(mac);
  const na = Buffer.alloc(32);
  na.writeUInt8(ND_NEIGHBOR_ADVERT, 0);
  na.writeUInt8(ND_NA_FLAG_OVERRIDE, 4);
  bytes.copy(na, 8);
  na.writeUInt8(ND_OPT_TARGET_LINKADDR, 24);
  na.writeUInt8(1, 25); // option length in units of 8 bytes
  hw.copy(na, 26);
  withNetns(netnsPath, () => {
    const ifindex = libc.ifNameToIndex(ifname);
    if (ifindex === 0) throw libc.sysError(`find interface ${ifname}`);
    const fd = libc.socket(AF_INET6, 3 /* SOCK_RAW */ | libc.SOCK_CLOEXEC, IPPROTO_ICMPV6);
    if (fd < 0) throw libc.sysError('socket(AF_INET6, SOCK_RAW, ICMPv6)');
    try {
      libc.setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, intOpt(255), 4);
      libc.setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, intOpt(ifindex), 4);
      // struct sockaddr_in6 for ff02::1 scoped to the interface.
      const to = Buffer.alloc(28);
      to.writeUInt16LE(AF_INET6, 0);
      to.writeUInt16BE(0xff02, 8);
      to.writeUInt8(1, 23);
      to.writeUInt32LE(ifindex, 24);
      if (libc.sendto(fd, na, na.length, 0, to, to.length) < 0) throw libc.sysError(`send neighbour advertisement on ${ifname}`);
    } finally {
      libc.close(fd);
    }
  });
}

/** Announces ip at mac on ifname: gratuitous ARP for IPv4, unsolicited NA for IPv6. */
export function announceAddress(netnsPath: string, ifname: string, ip: string, mac: string): void {
  if (ip.includes(':')) sendUnsolicitedNeighborAdvert(netnsPath, ifname, ip, mac);
  else sendGratuitousArp(netnsPath, ifname, ip, mac);
}
