// What `knit` and `knit-ipam` do for each CNI command, run by the daemon on a
// forwarded call (plugin-call.ts). A delegated IPAM section (host-local,
// static, dhcp...) of `knit` is executed from CNI_PATH as libcni's ipam.Exec*
// would from inside a plugin, and its addresses become static requests.
import type { CmdArgs, PluginHandlers } from './skel.ts';
import type { Result100 } from './types.ts';
import type { CniRequest, CniService, CniVerb } from './service.ts';
import { ALL_VERSIONS, convertResult } from './version.ts';
import { execPluginWithResult, execPluginWithoutResult, findInPath } from './invoke.ts';
import { parseArgPairs } from './args.ts';
import { CniError, ErrorCode } from './errors.ts';

export type PluginName = CniRequest['plugin'];

function requestOf(plugin: PluginName, args: CmdArgs, extra: { ipamResult?: Result100 }): CniRequest {
  return {
    plugin,
    config: args.config,
    ...(args.containerID ? { containerId: args.containerID } : {}),
    ...(args.netns ? { netns: args.netns } : {}),
    ...(args.ifName ? { ifname: args.ifName } : {}),
    ...(args.args ? { args: args.args } : {}),
    ...extra,
  };
}

/** The type of a delegated `ipam` section; undefined when Knit's own IPAM serves it. */
function delegatedIpam(args: CmdArgs): string | undefined {
  const ipam = args.config.ipam;
  if (typeof ipam !== 'object' || ipam === null) return undefined;
  const t = (ipam as Record<string, unknown>).type;
  if (typeof t !== 'string' || t === '' || t === 'knit' || t === 'knit-ipam') return undefined;
  return t;
}

async function execIpam(type: string, command: string, args: CmdArgs): Promise<Result100 | undefined> {
  let path: string;
  try {
    path = findInPath(type, args.path.split(':').filter((p) => p !== ''));
  } catch (err) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `ipam.type: ${(err as Error).message}`, 'ipam.type');
  }
  const inv = {
    command,
    containerID: args.containerID,
    netns: args.netns,
    ifName: args.ifName,
    pluginArgs: args.args === '' ? [] : parseArgPairs(args.args),
    path: args.path,
  };
  if (command !== 'ADD') {
    await execPluginWithoutResult(path, args.stdinData, inv);
    return undefined;
  }
  return convertResult(await execPluginWithResult(path, args.stdinData, inv), '1.1.0') as Result100;
}

/** The skel handlers of `plugin`, served by the daemon's CNI service. */
export function pluginHandlers(plugin: PluginName, service: CniService): PluginHandlers {
  const call = (verb: CniVerb, args: CmdArgs, extra: { ipamResult?: Result100 } = {}) => service.run(verb, requestOf(plugin, args, extra));
  const base = { versions: ALL_VERSIONS };
  if (plugin === 'knit-ipam') {
    return {
      ...base,
      async add(args) {
        const r = await call('add', args);
        if (!r) throw new CniError(ErrorCode.Internal, 'the CNI service returned no result for ADD');
        return r;
      },
      del: async (args) => void (await call('del', args)),
      check: async (args) => void (await call('check', args)),
      gc: async (args) => void (await call('gc', args)),
      status: async (args) => void (await call('status', args)),
    };
  }
  return {
    ...base,
    async add(args) {
      const ipamType = delegatedIpam(args);
      const ipamResult = ipamType ? await execIpam(ipamType, 'ADD', args) : undefined;
      try {
        const r = await call('add', args, ipamResult ? { ipamResult } : {});
        if (!r) throw new CniError(ErrorCode.Internal, 'the CNI service returned no result for ADD');
        return r;
      } catch (err) {
        if (ipamType) await execIpam(ipamType, 'DEL', args).catch(() => undefined);
        throw err;
      }
    },
    async del(args) {
      await call('del', args);
      const ipamType = delegatedIpam(args);
      if (ipamType) await execIpam(ipamType, 'DEL', args);
    },
    async check(args) {
      const ipamType = delegatedIpam(args);
      if (ipamType) await execIpam(ipamType, 'CHECK', args);
      await call('check', args);
    },
    async gc(args) {
      await call('gc', args);
      const ipamType = delegatedIpam(args);
      if (ipamType) await execIpam(ipamType, 'GC', args);
    },
    async status(args) {
      await call('status', args);
      const ipamType = delegatedIpam(args);
      if (ipamType) await execIpam(ipamType, 'STATUS', args);
    },
  };
}
