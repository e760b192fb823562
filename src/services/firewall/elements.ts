// The kernel's bytes for the elements of the table's sets and maps, laid out
// as the types in SETS and MAPS declare them (see src/kernel/nft-elements.ts).
import { KnitError } from '../../lib/errors.ts';
import { formatIP, lastAddr, parsePrefix } from '../../lib/ip.ts';
import type { Family } from '../../lib/ip.ts';
import { concat, etherAddr, hostU32, ifname, inetProto, inetService, ipv4Addr, ipv6Addr, split } from '../../kernel/nft-elements.ts';
import type { SetElement } from '../../kernel/nft-elements.ts';
import type { MapElement, SetName } from './ruleset.ts';
import type { FastpathPort, FirewallNetwork } from './types.ts';

function addr(ip: string): Buffer {
  return ip.includes(':') ? ipv6Addr(ip) : ipv4Addr(ip);
}

/**
 * pub4/pub6: host address . proto . host port; pub4any/pub6any: proto .
 * host port. The value: endpoint address . endpoint port.
 */
export function encodeMapElement(e: MapElement): SetElement {
  const m = e.mapping;
  const tail = [inetProto(m.proto), inetService(m.hostPort)];
  const key = concat(m.hostIP === undefined ? tail : [addr(m.hostIP), ...tail]);
  return { key, data: concat([addr(m.containerIP), inetService(m.containerPort)]) };
}

/** A map element's value as MapElement.value has it: "addr . port". */
export function decodeMapValue(family: Family, data: Buffer): string {
  const n = family === 4 ? 4 : 16;
  const [a, p] = split(data, [n, 2]);
  if (a === undefined || p === undefined) throw new KnitError('internal', `nft map value 0x${data.toString('hex')} is not address . port`);
  let v = 0n;
  for (const byte of a) v = (v << 8n) | BigInt(byte);
  return `${formatIP(family, v)} . ${p.readUInt16BE(0)}`;
}

function bytesOf(family: Family, v: bigint): Buffer {
  const n = family === 4 ? 4 : 16;
  const b = Buffer.alloc(n);
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

/** One network's set elements, as networkElements() names them in text. */
export function encodeNetworkElements(n: FirewallNetwork): { set: SetName; elem: SetElement; label: string }[] {
  const br = ifname(n.bridge);
  const out: { set: SetName; elem: SetElement; label: string }[] = [];
  const one = (set: SetName, elem: SetElement, label: string): void => {
    out.push({ set, elem, label });
  };
  one('bridges', { key: br }, n.bridge);
  if (n.internal) one('internal', { key: br }, n.bridge);
  if (n.masquerade && !n.internal) one('nat_bridges', { key: br }, n.bridge);
  one('same_bridge', { key: concat([br, br]) }, `${n.bridge} . ${n.bridge}`);
  for (const cidr of n.subnets) {
    const p = parsePrefix(cidr, 'subnets', false);
    // An interval of a concatenation: first and last key, both inclusive.
    const elem = { key: concat([bytesOf(p.family, p.addr), br]), keyEnd: concat([bytesOf(p.family, lastAddr(p)), br]) };
    const label = `${formatIP(p.family, p.addr)}/${p.len} . ${n.bridge}`;
    const fam = p.family === 4 ? '4' : '6';
    one(`local${fam}`, elem, label);
    if (n.masquerade && !n.internal) one(`nat${fam}`, elem, label);
  }
  return out;
}

/** The fast path's element for a port: its group . its sandbox's MAC : its ifindex. */
export function encodeFastpathElement(p: Pick<FastpathPort, 'group' | 'mac'> & { ifindex?: number }): SetElement {
  const key = concat([hostU32(p.group), etherAddr(p.mac)]);
  return p.ifindex === undefined ? { key } : { key, data: hostU32(p.ifindex) };
}
