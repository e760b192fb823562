// The inside of an attachment: an interface's addresses, its link state, the
// loopback's and the routes through it, sent as one netlink batch (one
// sendmsg, one ack each) instead of a round trip per step.
import { addAddressRequest } from './addr.ts';
import { noLinkLocalRequest, setLinkRequests } from './link.ts';
import { addRouteRequest, type Route } from './route.ts';
import type { NetlinkError, NetlinkSocket, Request } from './netlink/socket.ts';

/** The loopback's ifindex in every network namespace (the kernel's LOOPBACK_IFINDEX). */
export const LOOPBACK_INDEX = 1;

export interface InterfaceSetup {
  /** ifindex of the interface in the socket's netns. */
  index: number;
  addresses: { cidr: string; noDad?: boolean }[];
  /**
   * False: no IPv6 link-local address (an interface with no IPv6 address to
   * use it with), so its coming up sends no DAD, router solicitation or MLD
   * report, each of which a bridge copies to every other port.
   */
  ipv6LinkLocal?: boolean;
  /** Sets the interface up (and the loopback with it when loopbackUp). */
  up: boolean;
  loopbackUp?: boolean;
  /** Added after the addresses and the link state, so a gateway is reachable. */
  routes: Route[];
}

/**
 * Applies `o` in one batch. An address or route already present (EEXIST: a
 * repeated attach after a crash) is accepted; any other failure is thrown,
 * the first in batch order, naming its step. The kernel runs every message
 * of the batch even after one fails, so a caller undoing a failure removes
 * the interface rather than the steps.
 */
export function configureInterface(s: NetlinkSocket, o: InterfaceSetup): void {
  const reqs: Request[] = [];
  const mayExist: boolean[] = [];
  const push = (r: Request[], exists: boolean): void => {
    for (const x of r) {
      reqs.push(x);
      mayExist.push(exists);
    }
  };
  if (o.ipv6LinkLocal === false) push([noLinkLocalRequest(o.index)], false);
  for (const a of o.addresses) push([addAddressRequest(o.index, a.cidr, a.noDad === true ? { noDad: true } : {})], true);
  if (o.up) push(setLinkRequests(s, o.index, { up: true }), false);
  if (o.loopbackUp === true) push(setLinkRequests(s, LOOPBACK_INDEX, { up: true }), false);
  for (const r of o.routes) push([addRouteRequest({ ...r, oif: r.oif ?? o.index })], true);
  const errors = s.batchSettled(reqs);
  const failed = errors.find((e: NetlinkError | undefined, i) => e !== undefined && !(mayExist[i] === true && e.code === 'EEXIST'));
  if (failed !== undefined) throw failed;
}
