import { randomBytes } from 'node:crypto';

/** A 64-hex id, the shape Docker uses for networks and endpoints. */
export function newId(): string {
  return randomBytes(32).toString('hex');
}

/** Host side of an endpoint's veth: `kn` + 11 hex of the endpoint id (13 of 15 bytes). */
export function hostIfnameFor(endpointId: string): string {
  return `kn${endpointId.slice(0, 11)}`;
}
