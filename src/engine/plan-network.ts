// Turns a create request into a Network record (without its subnets, which
// the IPAM fills in): driver and options checked. Pure: no store, no kernel.
import type { Network, NetworkCreate } from '../model/index.ts';
import type { PoolSpec } from '../ipam/pool.ts';
import { DRIVERS } from '../model/index.ts';
import { invalid } from '../lib/errors.ts';
import { parseBridgeOptions } from './options.ts';

export function planNetwork(req: NetworkCreate, newId: () => string): Network {
  const driver = req.driver ?? 'bridge';
  if (!(DRIVERS as readonly string[]).includes(driver)) {
    throw invalid('driver', `unknown driver '${driver}'; known drivers: ${DRIVERS.join(', ')}`);
  }
  const id = req.id ?? newId();
  const opts = parseBridgeOptions(req.options ?? {});
  const net: Network = {
    id,
    name: req.name,
    tenant: req.tenant ?? 'default',
    driver: driver as Network['driver'],
    scope: 'local',
    subnets: [],
    ipv6: req.ipv6 ?? false,
    internal: req.internal ?? false,
    mtu: opts.mtu,
    icc: opts.icc,
    masquerade: opts.masquerade,
    dns: opts.dns,
    fastpath: opts.fastpath,
    options: req.options ?? {},
    labels: req.labels ?? {},
    origin: req.origin ?? 'api',
    created: new Date().toISOString(),
  };
  if (opts.hostBindingIPv4) net.hostBindingIPv4 = opts.hostBindingIPv4;
  if (driver === 'bridge') net.bridge = opts.bridge ?? `kn-${id.slice(0, 12)}`;
  return net;
}

/** The pools asked for, checked for shape; the IPAM validates the addresses. */
export function requestedPools(req: NetworkCreate): PoolSpec[] {
  const specs = (req.subnets ?? []).filter((s) => s.subnet || s.gateway || s.ipRange);
  return specs.map((s, i) => {
    if (!s.subnet) throw invalid(`subnets[${i}].subnet`, 'a gateway or ip-range needs its subnet (e.g. --subnet 10.1.0.0/24)');
    if (s.subnet.includes(':') && !req.ipv6) throw invalid('ipv6', `subnet ${s.subnet} is IPv6; add --ipv6 to enable IPv6 on the network`);
    return {
      subnet: s.subnet,
      ...(s.gateway ? { gateway: s.gateway } : {}),
      ...(s.ipRange ? { ipRange: s.ipRange } : {}),
      ...(s.auxAddresses ? { auxAddresses: s.auxAddresses } : {}),
    };
  });
}
