// Docker's plugin protocol (libnetwork's remote NetworkDriver and IpamDriver)
// in Knit's terms: request shapes, the option maps dockerd sends, port maps,
// and the two error bodies. Pure: no store, no engine, no kernel.
import * as z from 'zod';
import { KnitError, invalid, messageOf } from '../lib/errors.ts';
import { canonicalIP, parsePrefix } from '../lib/ip.ts';
import type { NetworkCreate, PortMapping } from '../model/index.ts';

/** Media type of every plugin reply (dockerd does not check it). */
export const PLUGIN_CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

export const LOCAL_ADDRESS_SPACE = 'KnitLocal';
export const GLOBAL_ADDRESS_SPACE = 'KnitGlobal';

/** RequestAddress Options value that marks the gateway request. */
export const GATEWAY_REQUEST = 'com.docker.network.gateway';

// dockerd decodes with Go's encoding/json: missing fields are zero values and
// null stands for an empty map. Mirror that rather than refuse.
const str = z.string().nullish().transform((v) => v ?? '');
const dict = z.record(z.string(), z.unknown()).nullish().transform((v) => v ?? {});

export const IpamData = z.object({
  AddressSpace: str,
  Pool: str,
  Gateway: str,
  AuxAddresses: z.record(z.string(), z.string()).nullish().transform((v) => v ?? {}),
});
export type IpamData = z.infer<typeof IpamData>;

export const CreateNetworkRequest = z.object({
  NetworkID: z.string().min(1),
  Options: dict,
  IPv4Data: z.array(IpamData).nullish().transform((v) => v ?? []),
  IPv6Data: z.array(IpamData).nullish().transform((v) => v ?? []),
});
export type CreateNetworkRequest = z.infer<typeof CreateNetworkRequest>;

export const NetworkRef = z.object({ NetworkID: z.string().min(1) });
export const EndpointRef = z.object({ NetworkID: z.string().min(1), EndpointID: z.string().min(1) });

export const CreateEndpointRequest = z.object({
  NetworkID: z.string().min(1),
  EndpointID: z.string().min(1),
  Interface: z
    .object({ Address: str, AddressIPv6: str, MacAddress: str })
    .nullish()
    .transform((v) => v ?? { Address: '', AddressIPv6: '', MacAddress: '' }),
  Options: dict,
});
export type CreateEndpointRequest = z.infer<typeof CreateEndpointRequest>;

export const JoinRequest = z.object({
  NetworkID: z.string().min(1),
  EndpointID: z.string().min(1),
  SandboxKey: z.string().min(1),
  Options: dict,
});
export type JoinRequest = z.infer<typeof JoinRequest>;

export const ProgramRequest = z.object({
  NetworkID: z.string().min(1),
  EndpointID: z.string().min(1),
  Options: dict,
});

export const RequestPoolRequest = z.object({
  AddressSpace: str,
  Pool: str,
  SubPool: str,
  Options: z.record(z.string(), z.string()).nullish().transform((v) => v ?? {}),
  V6: z.boolean().nullish().transform((v) => v ?? false),
});
export type RequestPoolRequest = z.infer<typeof RequestPoolRequest>;

export const PoolRef = z.object({ PoolID: z.string().min(1) });

export const RequestAddressRequest = z.object({
  PoolID: z.string().min(1),
  Address: str,
  Options: z.record(z.string(), z.string()).nullish().transform((v) => v ?? {}),
});
export type RequestAddressRequest = z.infer<typeof RequestAddressRequest>;

export const ReleaseAddressRequest = z.object({ PoolID: z.string().min(1), Address: str });

/** Parses a request body against its schema; the error names the call and the field. */
export function parseRequest<T>(schema: z.ZodType<T>, body: unknown, call: string): T {
  const r = schema.safeParse(body ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue?.path.join('.') || 'body';
  throw invalid(field, `${call} request is malformed: ${issue?.message ?? 'unexpected shape'}`);
}

/** Network-driver failure body: dockerd prints `remote: <Err>`. */
export function networkError(err: unknown): { Err: string } {
  return { Err: messageOf(err) };
}

/** IPAM failure body: note the different field name. */
export function ipamError(err: unknown): { Error: string } {
  return { Error: messageOf(err) };
}

/** Knit's name for a Docker network: dockerd does not send the name to drivers. */
export function networkNameFor(networkId: string): string {
  return `docker-${networkId.slice(0, 12)}`;
}

/** Knit's sandbox for a Docker sandbox key (/var/run/docker/netns/<12hex>). */
export function sandboxNameFor(sandboxKey: string): string {
  const base = sandboxKey.split('/').pop() ?? '';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,55}$/.test(base)) throw invalid('SandboxKey', `'${sandboxKey}' does not end in a sandbox id`);
  return `docker-${base}`;
}

/** Host-side name of the sandbox end dockerd moves: 15 bytes at most. */
export function peerNameFor(endpointId: string): string {
  return `kp${endpointId.slice(0, 11)}`;
}

const TOP_LEVEL_IGNORED = new Set([
  'com.docker.network.generic',
  'com.docker.network.enable_ipv6',
  'com.docker.network.enable_ipv4',
  'com.docker.network.internal',
]);

/** Pool settings the IPAM side recorded for a subnet (Docker keeps --ip-range from the driver). */
export interface PoolInfo {
  subnet: string;
  ipRange?: string | undefined;
}

/**
 * CreateNetwork in Knit's terms. `-o` options arrive nested under
 * com.docker.network.generic as strings; Knit's option parser refuses the
 * ones it does not know. Docker networks get Docker's embedded DNS, so Knit's
 * own DNS is off unless asked for.
 */
export function networkCreateFromDocker(req: CreateNetworkRequest, poolFor: (subnet: string) => PoolInfo | undefined): NetworkCreate {
  const generic = req.Options['com.docker.network.generic'] ?? {};
  if (typeof generic !== 'object' || generic === null || Array.isArray(generic)) {
    throw invalid('com.docker.network.generic', 'driver options must be a map of strings');
  }
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(generic as Record<string, unknown>)) {
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw invalid(`opt ${k}`, 'must be a string');
    options[k] = String(v);
  }
  for (const k of Object.keys(req.Options)) {
    if (!TOP_LEVEL_IGNORED.has(k) && !k.startsWith('com.docker.network.')) {
      throw invalid(`option ${k}`, 'unknown network option from dockerd');
    }
  }
  if (!('dns' in options)) options.dns = 'false';
  const subnets = [...req.IPv4Data, ...req.IPv6Data].map((d, i) => {
    if (!d.Pool) throw invalid(`IPData[${i}].Pool`, 'a pool is required');
    const pool = poolFor(d.Pool);
    const prefix = parsePrefix(d.Pool, `IPData[${i}].Pool`);
    const aux: Record<string, string> = {};
    for (const [name, cidr] of Object.entries(d.AuxAddresses)) {
      const ip = stripLen(cidr);
      // Docker accepts aux addresses anywhere in the pool; Knit reserves them.
      aux[name] = ip;
    }
    return {
      subnet: d.Pool,
      ...(d.Gateway ? { gateway: stripLen(d.Gateway) } : {}),
      ...(pool?.ipRange ? { ipRange: pool.ipRange } : {}),
      auxAddresses: aux,
      family: prefix.family,
    };
  });
  const ipv6 = req.Options['com.docker.network.enable_ipv6'] === true || subnets.some((s) => s.family === 6);
  return {
    id: req.NetworkID,
    name: networkNameFor(req.NetworkID),
    driver: 'bridge',
    origin: 'docker',
    subnets: subnets.map(({ family: _f, ...s }) => s),
    ipv6,
    internal: req.Options['com.docker.network.internal'] === true,
    options,
    labels: { 'com.docker.network.id': req.NetworkID },
  };
}

/** "10.1.0.1/24" → "10.1.0.1" (also accepts a bare address). */
export function stripLen(cidr: string): string {
  const slash = cidr.indexOf('/');
  return canonicalIP(slash < 0 ? cidr : cidr.slice(0, slash), 'address');
}

const PortMapEntry = z.object({
  Proto: z.number().int(),
  IP: str,
  Port: z.number().int(),
  HostIP: str,
  HostPort: z.number().int().nullish().transform((v) => v ?? 0),
  HostPortEnd: z.number().int().nullish().transform((v) => v ?? 0),
});

const PROTOS: Record<number, PortMapping['proto'] | undefined> = { 6: 'tcp', 17: 'udp' };

/**
 * com.docker.network.portmap → Knit port mappings. A host port range
 * (-p 8080-8090:80) publishes on its first port; 0 means "pick one".
 */
export function portMappingsFromDocker(options: Record<string, unknown>): PortMapping[] {
  const raw = options['com.docker.network.portmap'];
  if (raw === undefined || raw === null) return [];
  const list = z.array(PortMapEntry).safeParse(raw);
  if (!list.success) throw invalid('com.docker.network.portmap', 'is not a list of port bindings');
  return list.data.map((p, i) => {
    const proto = PROTOS[p.Proto];
    if (!proto) throw new KnitError('unsupported', `port binding ${i}: protocol ${p.Proto} is not supported by Knit (tcp and udp are)`);
    if (p.Port < 1 || p.Port > 65535) throw invalid(`portmap[${i}].Port`, `${p.Port} is not a port`);
    const hostIP = p.HostIP ? canonicalIP(p.HostIP, `portmap[${i}].HostIP`) : undefined;
    return { proto, containerPort: p.Port, hostPort: p.HostPort, ...(hostIP ? { hostIP } : {}) };
  });
}

/** A Docker-supplied MAC: Interface.MacAddress, or the base64 bytes of the endpoint option. */
export function macFromDocker(iface: string, options: Record<string, unknown>): string | undefined {
  if (iface) return iface.toLowerCase();
  const b64 = options['com.docker.network.endpoint.macaddress'];
  if (typeof b64 === 'string' && b64) {
    const b = Buffer.from(b64, 'base64');
    if (b.length === 6) return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
    if (/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(b64)) return b64.toLowerCase();
  }
  return undefined;
}
