// Sandbox: a network namespace (a container, a pod, a VM's host side) and
// Endpoint: one attachment of a sandbox to a network (Neutron's port).
import * as z from 'zod';

export const PortMapping = z.object({
  proto: z.enum(['tcp', 'udp']),
  hostIP: z.string().optional(),
  hostPort: z.number().int(),
  containerPort: z.number().int(),
});
export type PortMapping = z.infer<typeof PortMapping>;

export const DnsConfig = z.object({
  servers: z.array(z.string()).default([]),
  search: z.array(z.string()).default([]),
  options: z.array(z.string()).default([]),
});
export type DnsConfig = z.infer<typeof DnsConfig>;

/**
 * Shaping of an endpoint, as the CNI bandwidth capability names it: rates in
 * bits/s, bursts in bits; 0 = no limit. "ingress" is traffic into the
 * sandbox, "egress" traffic out of it.
 */
export const Bandwidth = z.object({
  ingressRate: z.number().int().nonnegative().default(0),
  ingressBurst: z.number().int().nonnegative().default(0),
  egressRate: z.number().int().nonnegative().default(0),
  egressBurst: z.number().int().nonnegative().default(0),
  /** Traffic to or from these subnets is not shaped (CNI bandwidth's unshapedSubnets). */
  unshapedSubnets: z.array(z.string()).optional(),
  /** Only traffic to or from these subnets is shaped (CNI bandwidth's shapedSubnets). */
  shapedSubnets: z.array(z.string()).optional(),
});
export type Bandwidth = z.infer<typeof Bandwidth>;

export const Sandbox = z.object({
  id: z.string(),
  name: z.string(),
  /** Path of the network namespace (a bind mount, or /proc/PID/ns/net). */
  netnsPath: z.string(),
  /** Knit made the namespace and removes it with the sandbox. */
  ownsNetns: z.boolean(),
  /** Shares the namespace of this sandbox (a pod member). */
  joined: z.string().optional(),
  hostname: z.string().optional(),
  dns: DnsConfig.default({ servers: [], search: [], options: [] }),
  labels: z.record(z.string(), z.string()).default({}),
  origin: z.enum(['api', 'cni', 'docker']).default('api'),
  /** pending until every endpoint asked for at create is ready; a pending sandbox found at start is undone. */
  state: z.enum(['pending', 'ready']),
  created: z.string(),
});
export type Sandbox = z.infer<typeof Sandbox>;

export const Endpoint = z.object({
  id: z.string(),
  networkId: z.string(),
  sandboxId: z.string(),
  /** Interface name inside the sandbox. */
  ifname: z.string(),
  /** Host-side interface (veth peer), when the driver has one. */
  hostIfname: z.string().optional(),
  /** Its MAC, chosen with the record so that answers (CNI results) need no lookup; absent in records from before. */
  hostMac: z.string().optional(),
  mac: z.string(),
  ipv4: z.string().optional(),
  ipv6: z.string().optional(),
  aliases: z.array(z.string()).default([]),
  ports: z.array(PortMapping).default([]),
  /**
   * The sandbox end was created in the host namespace under this name for a
   * runtime to move (Docker's Join); the runtime names and configures it.
   */
  hostPeer: z.string().optional(),
  /** Traffic shaping on the host side (bridge driver). */
  bandwidth: Bandwidth.optional(),
  /** Installs the default route through this network's gateway. */
  defaultRoute: z.boolean().default(true),
  state: z.enum(['pending', 'ready']),
  created: z.string(),
});
export type Endpoint = z.infer<typeof Endpoint>;

/** A request to attach a sandbox to a network. Strict, as SandboxCreate. */
export const AttachRequest = z.strictObject({
  network: z.string(),
  ip: z.string().optional(),
  ipv6: z.string().optional(),
  mac: z.string().optional(),
  ifname: z.string().optional(),
  aliases: z.array(z.string()).optional(),
  publish: z.array(z.string()).optional(),
  bandwidth: Bandwidth.optional(),
  /** false: no default route through this network (CNI isDefaultGateway). Default: the first network gives it. */
  defaultRoute: z.boolean().optional(),
});
export type AttachRequest = z.infer<typeof AttachRequest>;

/** What a client sends to create a sandbox. Strict: a misplaced field (`publish` beside `networks`) is an error, not silently dropped. */
export const SandboxCreate = z.strictObject({
  name: z.string(),
  networks: z.array(AttachRequest).optional(),
  hostname: z.string().optional(),
  labels: z.record(z.string(), z.string()).optional(),
  join: z.string().optional(),
  /** An existing namespace to adopt (CNI, Docker) instead of making one. */
  netnsPath: z.string().optional(),
  dns: DnsConfig.partial().optional(),
  origin: z.enum(['api', 'cni', 'docker']).optional(),
});
export type SandboxCreate = z.infer<typeof SandboxCreate>;
