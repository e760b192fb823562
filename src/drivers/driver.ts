// One interface for every network driver. A driver realizes networks and
// endpoints in the kernel; it never touches the store (the engine owns the
// desired state) and every method is idempotent, so the engine can call it
// again after a crash or to repair drift.
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import type { Host } from '../engine/host.ts';

export interface NetworkDriver {
  readonly name: string;
  /** Make the network's shared kernel objects exist (bridge, gateway addresses, firewall sets). */
  createNetwork(host: Host, net: Network): void | Promise<void>;
  deleteNetwork(host: Host, net: Network): void | Promise<void>;
  /** Make the endpoint's interface exist in the sandbox, configured; keep what is already right. */
  attach(host: Host, net: Network, sb: Sandbox, ep: Endpoint): void | Promise<void>;
  /**
   * Undo kernel state keyed by the endpoint that must go with its record,
   * also when the interface itself goes with its namespace and detach is
   * never called (the bridge's fast-path entry); succeeds when it is gone.
   */
  forget?(host: Host, net: Network, ep: Endpoint): void;
  /** Remove the endpoint's interface; succeeds when it is already gone. */
  detach(host: Host, net: Network, sb: Sandbox, ep: Endpoint): void | Promise<void>;
  /** What differs between the kernel and the records (empty when all is right). */
  check(host: Host, net: Network, sb: Sandbox | undefined, ep: Endpoint | undefined): string[];
  /** Whether endpoints on this driver get addresses from Knit's IPAM. */
  readonly usesIpam: boolean;
}

/** Link alias that marks a kernel object as Knit's and names the record it belongs to. */
export function ownerAlias(kind: 'net' | 'ep', id: string): string {
  return `knit:${kind}:${id}`;
}

export function parseOwnerAlias(alias: string | undefined): { kind: 'net' | 'ep'; id: string } | undefined {
  const m = /^knit:(net|ep):([0-9a-f]+)$/.exec(alias ?? '');
  return m ? { kind: m[1] as 'net' | 'ep', id: m[2] as string } : undefined;
}
