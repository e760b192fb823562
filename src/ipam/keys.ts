// Store keys of the IPAM. Allocation keys carry the address in a fixed-width
// form (010.001.000.005, fd00:0000:…:0005) so that key order is address order:
// the allocator then finds the next free address with ordered range reads
// instead of one read per address.
import { KnitError } from '../lib/errors.ts';
import { formatIP, type Family } from '../lib/ip.ts';
import { KEY_ROOT } from '../store/records.ts';

export const ALLOC_ROOT = `${KEY_ROOT}ipam/`;
export const CURSOR_ROOT = `${KEY_ROOT}ipam-cursor/`;
export const OWNER_ROOT = `${KEY_ROOT}ipam-owner/`;
export const TENANT_ROOT = `${KEY_ROOT}ipam-tenant/`;

export function sortableIP(family: Family, addr: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((addr >> s) & 0xffn).padStart(3, '0')).join('.');
  return addr.toString(16).padStart(32, '0').replace(/(.{4})(?!$)/g, '$1:');
}

/** The address in a sortable key segment, or undefined if it is not one. */
export function parseSortableIP(text: string): { family: Family; addr: bigint } | undefined {
  if (/^\d{3}\.\d{3}\.\d{3}\.\d{3}$/.test(text)) {
    const addr = text.split('.').reduce((v, o) => (v << 8n) | BigInt(Number(o)), 0n);
    return { family: 4, addr };
  }
  if (/^([0-9a-f]{4}:){7}[0-9a-f]{4}$/.test(text)) return { family: 6, addr: BigInt(`0x${text.replaceAll(':', '')}`) };
  return undefined;
}

/** All allocations of a network live under this prefix. */
export function allocPrefix(network: string): string {
  return `${ALLOC_ROOT}${segment(network, 'network')}/`;
}

export function allocKey(network: string, family: Family, addr: bigint): string {
  return allocPrefix(network) + sortableIP(family, addr);
}

export function cursorPrefix(network: string): string {
  return `${CURSOR_ROOT}${segment(network, 'network')}/`;
}

export function cursorKey(network: string, subnet: string): string {
  return cursorPrefix(network) + subnet.replace('/', '_');
}

/** The reverse index, owner → addresses, so releaseOwner needs no scan. */
export function ownerPrefix(owner: string): string {
  return `${OWNER_ROOT}${encodeURIComponent(owner)}/`;
}

/** An owner's entries on one network: the allocator's "does it hold one already" is one short read. */
export function ownerNetworkPrefix(owner: string, network: string): string {
  return `${ownerPrefix(owner)}${segment(network, 'network')}/`;
}

export function ownerKey(owner: string, network: string, family: Family, addr: bigint): string {
  return ownerNetworkPrefix(owner, network) + sortableIP(family, addr);
}

export function parseOwnerKey(key: string, owner: string): { network: string; ip: string; family: Family; addr: bigint } | undefined {
  const rest = key.slice(ownerPrefix(owner).length).split('/');
  if (rest.length !== 2) return undefined;
  const a = parseSortableIP(rest[1] as string);
  if (a === undefined) return undefined;
  return { network: rest[0] as string, ip: formatIP(a.family, a.addr), ...a };
}

export function tenantKey(tenant: string): string {
  return TENANT_ROOT + encodeURIComponent(tenant);
}

function segment(id: string, what: string): string {
  if (id === '' || id.includes('/')) throw new KnitError('invalid', `${what}: '${id}' must be non-empty and contain no '/'`, { field: what });
  return id;
}
