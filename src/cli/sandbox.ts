// knit sandbox create|ls|inspect|rm
import type { SandboxView } from '../model/api.ts';
import type { input } from 'zod';
import type { AttachRequest, SandboxCreate as SandboxCreateSchema } from '../model/index.ts';

/** What goes on the wire: the schema's input, defaults not yet applied. */
export type SandboxCreateBody = input<typeof SandboxCreateSchema>;
import { expectPositionals, expectSome, keyValues, list, str, UsageError, type Parsed } from './args.ts';
import { seg } from './client.ts';
import { eachName, removeEach, type Command } from './command.ts';
import { addAddress } from './network.ts';
import { emit, endpointAddresses, formatPort, shortId, table } from './output.ts';

const CREATE_USAGE =
  'knit sandbox create NAME [--network NET]... [--ip IP] [--ip6 IP] [--alias A]... [--publish SPEC]... [--hostname H] [--label k=v]... [--join SANDBOX] [--dns IP]... [--dns-search DOMAIN]... [--dns-option OPT]...';
const LS_USAGE = 'knit sandbox ls [--format table|json]';
const INSPECT_USAGE = 'knit sandbox inspect NAME...';
const RM_USAGE = 'knit sandbox rm NAME...';

/**
 * The request body `knit sandbox create` sends. As with `docker run`, --ip,
 * --alias and --publish apply to the first --network; the others attach with
 * what the daemon picks.
 */
export function sandboxCreateBody(p: Parsed): SandboxCreateBody {
  const [name] = expectPositionals(p, ['NAME'], CREATE_USAGE) as [string];
  const body: SandboxCreateBody = { name };
  const networks = list(p, 'network');
  const first: Omit<AttachRequest, 'network'> = {};
  addAddress(first, str(p, 'ip'), str(p, 'ip6'));
  const aliases = list(p, 'alias');
  if (aliases.length > 0) first.aliases = aliases;
  const publish = list(p, 'publish');
  if (publish.length > 0) first.publish = publish;
  if (networks.length === 0 && Object.keys(first).length > 0) {
    const given = ['ip', 'ip6', 'alias', 'publish'].filter((o) => p.values[o] !== undefined).map((o) => `--${o}`);
    throw new UsageError(`${given.join(', ')} apply to a network: add --network NET (the first --network gets them); usage: ${CREATE_USAGE}`);
  }
  if (networks.length > 0) body.networks = networks.map((network, i) => (i === 0 ? { network, ...first } : { network }));
  const hostname = str(p, 'hostname');
  if (hostname !== undefined) body.hostname = hostname;
  const labels = keyValues(p, 'label', CREATE_USAGE);
  if (labels !== undefined) body.labels = labels;
  const join = str(p, 'join');
  if (join !== undefined) body.join = join;
  // Written to the sandbox's /etc/netns resolv.conf; --dns replaces Knit's own DNS server there.
  const dns = { servers: list(p, 'dns'), search: list(p, 'dns-search'), options: list(p, 'dns-option') };
  if (dns.servers.length + dns.search.length + dns.options.length > 0) body.dns = dns;
  return body;
}

export function sandboxTable(boxes: SandboxView[]): string {
  return table(
    ['SANDBOX ID', 'NAME', 'NETWORKS', 'ADDRESSES', 'PORTS'],
    boxes.map((b) => [
      shortId(b.id),
      b.name,
      b.joined !== undefined ? `(joins ${b.joined})` : b.endpoints.map((e) => e.network).join(','),
      b.endpoints.flatMap(endpointAddresses).join(','),
      b.endpoints.flatMap((e) => e.ports.map(formatPort)).join(','),
    ]),
  );
}

export const sandboxCommands: Record<string, Command> = {
  create: {
    usage: CREATE_USAGE,
    summary: 'create a sandbox (a network namespace) and attach it',
    options: {
      network: { type: 'string', multiple: true },
      ip: { type: 'string' },
      ip6: { type: 'string' },
      alias: { type: 'string', multiple: true },
      publish: { type: 'string', short: 'p', multiple: true },
      hostname: { type: 'string' },
      label: { type: 'string', multiple: true },
      join: { type: 'string' },
      dns: { type: 'string', multiple: true },
      'dns-search': { type: 'string', multiple: true },
      'dns-option': { type: 'string', multiple: true },
    },
    async run(ctx, p) {
      const box = await ctx.client().post<SandboxView>('/v1/sandboxes', sandboxCreateBody(p));
      emit(ctx.io, ctx.format, box, (b) => `${b.id}\n`);
      return 0;
    },
  },
  ls: {
    usage: LS_USAGE,
    summary: 'list sandboxes',
    options: {},
    async run(ctx, p) {
      expectPositionals(p, [], LS_USAGE);
      const boxes = await ctx.client().get<SandboxView[]>('/v1/sandboxes');
      emit(ctx.io, ctx.format, boxes, sandboxTable);
      return 0;
    },
  },
  inspect: {
    usage: INSPECT_USAGE,
    summary: 'show sandboxes in detail (JSON)',
    options: {},
    async run(ctx, p) {
      const found: SandboxView[] = [];
      const status = await eachName(ctx, expectSome(p, 'NAME', INSPECT_USAGE), async (name) => {
        found.push(await ctx.client().get<SandboxView>(`/v1/sandboxes/${seg(name)}`));
      });
      emit(ctx.io, 'json', found, () => '');
      return status;
    },
  },
  rm: {
    usage: RM_USAGE,
    summary: 'remove sandboxes',
    options: {},
    async run(ctx, p) {
      return removeEach(ctx, expectSome(p, 'NAME', RM_USAGE), (name) => `/v1/sandboxes/${seg(name)}`);
    },
  },
};
