// Network: a logical L2/L3 domain (Docker's network, Neutron's network).
import * as z from 'zod';

export const DRIVERS = ['bridge', 'null', 'host', 'macvlan', 'ipvlan', 'overlay', 'remote'] as const;
export const DriverName = z.enum(DRIVERS);
export type DriverName = z.infer<typeof DriverName>;

export const SubnetConfig = z.object({
  subnet: z.string(),
  gateway: z.string().optional(),
  ipRange: z.string().optional(),
  auxAddresses: z.record(z.string(), z.string()).default({}),
});
export type SubnetConfig = z.infer<typeof SubnetConfig>;

export const Network = z.object({
  id: z.string(),
  name: z.string(),
  tenant: z.string().default('default'),
  driver: DriverName,
  scope: z.enum(['local', 'global']).default('local'),
  subnets: z.array(SubnetConfig).default([]),
  ipv6: z.boolean().default(false),
  internal: z.boolean().default(false),
  /** Bridge (or parent) interface name, derived at create time. */
  bridge: z.string().optional(),
  mtu: z.number().int().default(1500),
  /** Forward-plane choices, derived from options at create time. */
  icc: z.boolean().default(true),
  masquerade: z.boolean().default(true),
  dns: z.boolean().default(true),
  /** Unicast between sandboxes goes port to port, not through the bridge (`--opt fastpath=false` turns it off). */
  fastpath: z.boolean().default(true),
  hostBindingIPv4: z.string().optional(),
  options: z.record(z.string(), z.string()).default({}),
  labels: z.record(z.string(), z.string()).default({}),
  /** Who asked for it: the CLI/API, a CNI config, or dockerd. */
  origin: z.enum(['api', 'cni', 'docker', 'builtin']).default('api'),
  created: z.string(),
});
export type Network = z.infer<typeof Network>;

/** What a client sends to create a network. Strict: a field it does not know is an error, not silently dropped. */
export const NetworkCreate = z.strictObject({
  name: z.string(),
  tenant: z.string().optional(),
  driver: z.string().optional(),
  subnets: z.array(SubnetConfig.partial({ subnet: true })).optional(),
  ipv6: z.boolean().optional(),
  internal: z.boolean().optional(),
  options: z.record(z.string(), z.string()).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  origin: z.enum(['api', 'cni', 'docker']).optional(),
  /** Docker supplies its own id; others get one. */
  id: z.string().optional(),
});
export type NetworkCreate = z.infer<typeof NetworkCreate>;
