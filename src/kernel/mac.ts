// Ethernet addresses: parsing, formatting, and the two ways Knit chooses one.
import { randomBytes } from 'node:crypto';
import { invalid } from '../lib/errors.ts';
import { parseIP } from '../lib/ip.ts';

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function isMac(mac: string): boolean {
  return MAC_RE.test(mac);
}

export function parseMac(mac: string, field = 'mac'): Buffer {
  if (!isMac(mac)) throw invalid(field, `'${mac}' is not a MAC address (e.g. 02:42:0a:01:00:02)`);
  return Buffer.from(mac.replace(/:/g, ''), 'hex');
}

export function formatMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** 02:42 followed by the four address bytes, as Docker derives container MACs. */
export function macFromIPv4(ip: string): string {
  const { family, addr } = parseIP(ip, 'ip');
  if (family !== 4) throw invalid('ip', `'${ip}' is not an IPv4 address`);
  const b = Buffer.alloc(6);
  b[0] = 0x02;
  b[1] = 0x42;
  b.writeUInt32BE(Number(addr), 2);
  return formatMac(b);
}

/** A random unicast, locally administered MAC (first octet x2, x6, xa or xe). */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfc) | 0x02;
  return formatMac(b);
}

/**
 * A locally administered MAC derived from an id (a network's), so the same
 * object gets the same address every time it is (re)created.
 */
export function macFromId(id: string): string {
  const b = Buffer.from(id.replace(/[^0-9a-f]/gi, '').padEnd(12, '0').slice(0, 12), 'hex');
  b[0] = (b[0]! & 0xfc) | 0x02;
  return formatMac(b);
}
