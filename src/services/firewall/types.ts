// What Knit's firewall is asked to implement, per managed namespace.

/** A Linux-bridge network as the firewall sees it. */
export interface FirewallNetwork {
  /** The network's bridge in this namespace (also the sandboxes' gateway). */
  bridge: string;
  /** CIDRs, IPv4 and IPv6 mixed. */
  subnets: string[];
  /** No traffic is forwarded out of (or into) the bridge. */
  internal: boolean;
  /**
   * Masquerade traffic leaving through anything but the bridge ("NAT mode").
   * NAT-mode sandboxes are reachable from outside only through published
   * ports; without masquerade the subnets are routed and reachable directly.
   */
  masquerade: boolean;
}

export type Proto = 'tcp' | 'udp';

/** One host port mapped to one endpoint port (ranges are several mappings). */
export interface PortMapping {
  proto: Proto;
  /**
   * A host address of the same family as containerIP; undefined (or 0.0.0.0,
   * ::) means every local address of that family, 127.0.0.1 included.
   */
  hostIP?: string | undefined;
  hostPort: number;
  containerIP: string;
  containerPort: number;
}

/** A sandbox's port on its network's bridge, as the fast path knows it. */
export interface FastpathPort {
  /** The host end of the sandbox's veth. */
  ifname: string;
  /** Its interface group: the bridge's ifindex, shared by every port of the network. */
  group: number;
  /** The sandbox end's MAC: frames to it leave through this port. */
  mac: string;
  ifindex: number;
}

export interface FirewallState {
  networks: FirewallNetwork[];
  ports: PortMapping[];
  /** Ports of networks whose sandboxes may talk to each other (icc), present in the kernel. */
  fastpath?: FastpathPort[];
}
