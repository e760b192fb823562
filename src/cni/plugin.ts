// The `knit` CNI plugin executable: a thin client of Knit's daemon, which
// does all the work (see service.ts). A delegated IPAM section (host-local,
// static, dhcp...) runs here, from CNI_PATH, and its addresses go to the
// daemon as static requests.
import { pluginMain, type CmdArgs } from './skel.ts';
import { ALL_VERSIONS, convertResult } from './version.ts';
import type { Result100 } from './types.ts';
import { callDaemon } from './plugin-client.ts';
import { CniError, ErrorCode } from './errors.ts';

function delegatedIpam(args: CmdArgs): string | undefined {
  const ipam = args.config.ipam;
  if (typeof ipam !== 'object' || ipam === null) return undefined;
  const t = (ipam as Record<string, unknown>).type;
  if (typeof t !== 'string' || t === '' || t === 'knit' || t === 'knit-ipam') return undefined;
  return t;
}

async function execIpam(type: string, command: string, args: CmdArgs): Promise<Result100 | undefined> {
  const { execPluginWithResult, execPluginWithoutResult, findInPath } = await import('./invoke.ts');
  const { parseArgPairs } = await import('./args.ts');
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

// Not a top-level await: bun's --bytecode build (see scripts/build.ts) is CommonJS.
// runPlugin turns every failure into a CNI error and an exit code.
void pluginMain({
  versions: ALL_VERSIONS,
  about: 'knit: Knit container networking CNI plugin (a client of the Knit daemon)',
  async add(args) {
    const ipamType = delegatedIpam(args);
    const ipamResult = ipamType ? await execIpam(ipamType, 'ADD', args) : undefined;
    try {
      const r = await callDaemon('add', 'knit', args, ipamResult ? { ipamResult } : {});
      if (!r) throw new CniError(ErrorCode.Internal, 'the daemon returned no result for ADD');
      return r;
    } catch (err) {
      if (ipamType) await execIpam(ipamType, 'DEL', args).catch(() => undefined);
      throw err;
    }
  },
  async del(args) {
    await callDaemon('del', 'knit', args);
    const ipamType = delegatedIpam(args);
    if (ipamType) await execIpam(ipamType, 'DEL', args);
  },
  async check(args) {
    const ipamType = delegatedIpam(args);
    if (ipamType) await execIpam(ipamType, 'CHECK', args);
    await callDaemon('check', 'knit', args);
  },
  async gc(args) {
    await callDaemon('gc', 'knit', args);
    const ipamType = delegatedIpam(args);
    if (ipamType) await execIpam(ipamType, 'GC', args);
  },
  async status(args) {
    try {
      await callDaemon('status', 'knit', args);
    } catch (err) {
      // No daemon: this plugin cannot serve ADD at all.
      if (err instanceof CniError && err.code === ErrorCode.TryAgainLater) {
        throw new CniError(ErrorCode.PluginNotAvailable, err.msg, err.details);
      }
      throw err;
    }
    const ipamType = delegatedIpam(args);
    if (ipamType) await execIpam(ipamType, 'STATUS', args);
  },
});
