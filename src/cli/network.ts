// knit network create|ls|inspect|rm|connect|disconnect
import type { ConnectRequest, EndpointView, NetworkView } from '../model/api.ts';
import type { input } from 'zod';
import type { NetworkCreate as NetworkCreateSchema } from '../model/index.ts';
import { expectPositionals, expectSome, flag, keyValues, list, str, UsageError, type Parsed } from './args.ts';
import { seg } from './client.ts';
import { eachName, removeEach, type Command } from './command.ts';
import { emit, shortId, table } from './output.ts';

/** What goes on the wire: the schema's input, defaults not yet applied. */
export type NetworkCreateBody = input<typeof NetworkCreateSchema>;
type SubnetBody = NonNullable<NetworkCreateBody['subnets']>[number];

const CREATE_USAGE =
  'knit network create NAME [--driver D] [--subnet CIDR]... [--gateway IP]... [--ip-range CIDR]... [--ipv6] [--internal] [--opt k=v]... [--label k=v]...';

/** Subnets with their gateways and ranges, paired by position (the first --gateway goes with the first --subnet). */
export function subnetsOf(p: Parsed, usage: string): SubnetBody[] | undefined {
  const subnets = list(p, 'subnet');
  const gateways = list(p, 'gateway');
  const ranges = list(p, 'ip-range');
  if (gateways.length > subnets.length) {
    throw new UsageError(`${gateways.length} --gateway for ${subnets.length} --subnet: each gateway pairs with the --subnet in the same position; usage: ${usage}`);
  }
  if (ranges.length > subnets.length) {
    throw new UsageError(`${ranges.length} --ip-range for ${subnets.length} --subnet: each range pairs with the --subnet in the same position; usage: ${usage}`);
  }
  if (subnets.length === 0) return undefined;
  return subnets.map((subnet, i) => {
    const s: SubnetBody = { subnet };
    const gw = gateways[i];
    const range = ranges[i];
    if (gw !== undefined) s.gateway = gw;
    if (range !== undefined) s.ipRange = range;
    return s;
  });
}

/** The request body `knit network create` sends. */
export function networkCreateBody(p: Parsed): NetworkCreateBody {
  const [name] = expectPositionals(p, ['NAME'], CREATE_USAGE) as [string];
  const body: NetworkCreateBody = { name };
  const driver = str(p, 'driver');
  if (driver !== undefined) body.driver = driver;
  const subnets = subnetsOf(p, CREATE_USAGE);
  if (subnets !== undefined) body.subnets = subnets;
  if (flag(p, 'ipv6')) body.ipv6 = true;
  if (flag(p, 'internal')) body.internal = true;
  const options = keyValues(p, 'opt', CREATE_USAGE);
  if (options !== undefined) body.options = options;
  const labels = keyValues(p, 'label', CREATE_USAGE);
  if (labels !== undefined) body.labels = labels;
  return body;
}

export function networkTable(nets: NetworkView[]): string {
  return table(
    ['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'],
    nets.map((n) => [shortId(n.id), n.name, n.driver, n.scope]),
  );
}

const LS_USAGE = 'knit network ls [--format table|json]';
const INSPECT_USAGE = 'knit network inspect NAME...';
const RM_USAGE = 'knit network rm NAME...';
const CONNECT_USAGE = 'knit network connect NET SANDBOX [--ip IP] [--ip6 IP] [--alias A]... [--publish SPEC]...';
const DISCONNECT_USAGE = 'knit network disconnect NET SANDBOX';

export function connectBody(p: Parsed): { net: string; body: ConnectRequest } {
  const [net, sandbox] = expectPositionals(p, ['NET', 'SANDBOX'], CONNECT_USAGE) as [string, string];
  const body: ConnectRequest = { sandbox };
  addAddress(body, str(p, 'ip'), str(p, 'ip6'));
  const aliases = list(p, 'alias');
  if (aliases.length > 0) body.aliases = aliases;
  const publish = list(p, 'publish');
  if (publish.length > 0) body.publish = publish;
  return { net, body };
}

/** --ip takes either family (an address with ':' is IPv6), --ip6 only IPv6. */
export function addAddress(target: { ip?: string; ipv6?: string }, ip: string | undefined, ip6: string | undefined): void {
  if (ip !== undefined) {
    if (ip.includes(':')) target.ipv6 = ip;
    else target.ip = ip;
  }
  if (ip6 !== undefined) target.ipv6 = ip6;
}

export const networkCommands: Record<string, Command> = {
  create: {
    usage: CREATE_USAGE,
    summary: 'create a network',
    options: {
      driver: { type: 'string', short: 'd' },
      subnet: { type: 'string', multiple: true },
      gateway: { type: 'string', multiple: true },
      'ip-range': { type: 'string', multiple: true },
      ipv6: { type: 'boolean' },
      internal: { type: 'boolean' },
      opt: { type: 'string', short: 'o', multiple: true },
      label: { type: 'string', multiple: true },
    },
    async run(ctx, p) {
      const net = await ctx.client().post<NetworkView>('/v1/networks', networkCreateBody(p));
      emit(ctx.io, ctx.format, net, (n) => `${n.id}\n`);
      return 0;
    },
  },
  ls: {
    usage: LS_USAGE,
    summary: 'list networks',
    options: {},
    async run(ctx, p) {
      expectPositionals(p, [], LS_USAGE);
      const nets = await ctx.client().get<NetworkView[]>('/v1/networks');
      emit(ctx.io, ctx.format, nets, networkTable);
      return 0;
    },
  },
  inspect: {
    usage: INSPECT_USAGE,
    summary: 'show networks in detail (JSON)',
    options: {},
    async run(ctx, p) {
      const found: NetworkView[] = [];
      const status = await eachName(ctx, expectSome(p, 'NAME', INSPECT_USAGE), async (name) => {
        found.push(await ctx.client().get<NetworkView>(`/v1/networks/${seg(name)}`));
      });
      // Like `docker network inspect`: JSON either way, the ones found even when some are not.
      emit(ctx.io, 'json', found, () => '');
      return status;
    },
  },
  rm: {
    usage: RM_USAGE,
    summary: 'remove networks',
    options: {},
    async run(ctx, p) {
      return removeEach(ctx, expectSome(p, 'NAME', RM_USAGE), (name) => `/v1/networks/${seg(name)}`);
    },
  },
  connect: {
    usage: CONNECT_USAGE,
    summary: 'attach a sandbox to a network',
    options: {
      ip: { type: 'string' },
      ip6: { type: 'string' },
      alias: { type: 'string', multiple: true },
      publish: { type: 'string', short: 'p', multiple: true },
    },
    async run(ctx, p) {
      const { net, body } = connectBody(p);
      const ep = await ctx.client().post<EndpointView>(`/v1/networks/${seg(net)}/connect`, body);
      if (ctx.format === 'json') emit(ctx.io, 'json', ep, () => '');
      return 0;
    },
  },
  disconnect: {
    usage: DISCONNECT_USAGE,
    summary: 'detach a sandbox from a network',
    options: {},
    async run(ctx, p) {
      const [net, sandbox] = expectPositionals(p, ['NET', 'SANDBOX'], DISCONNECT_USAGE) as [string, string];
      await ctx.client().post<void>(`/v1/networks/${seg(net)}/disconnect`, { sandbox });
      return 0;
    },
  },
};
