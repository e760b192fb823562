// `knit cni add|del|check|status|gc`: Knit as a CNI runtime, the way cnitool
// drives libcni. Prints the ADD result as JSON; errors go to stderr.
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { parseArgPairs } from './args.ts';
import { DEFAULT_CACHE_DIR } from './cache.ts';
import { confListFromFile, loadNetworkConfList, type NetworkConfigList, type RuntimeConf } from './conf.ts';
import { CniError } from './errors.ts';
import { CniRuntime } from './runtime.ts';
import type { GCAttachment } from './types.ts';
import { formatResult } from './version.ts';

export const DEFAULT_CONF_DIR = '/etc/cni/net.d';
export const DEFAULT_BIN_DIRS = '/opt/cni/bin:/usr/lib/cni';

const USAGE = `usage: knit cni add|del|check|status|gc (--net NAME | --conflist FILE) [options]
  --netns PATH             network namespace of the container (add, check, del)
  --container-id ID        attachment's container id (default: derived from --netns)
  --ifname IF              interface name in the container (default eth0)
  --args K=V;...           CNI_ARGS
  --capability-args JSON   capability arguments (portMappings, bandwidth, ips, mac, ...)
  --valid-attachments JSON gc: [{"containerID":"...","ifname":"..."}] still in use
  --conf-dir DIR           where --net is looked up (default ${DEFAULT_CONF_DIR})
  --bin-dir DIRS           plugin directories, ":"-separated (default ${DEFAULT_BIN_DIRS})
  --cache-dir DIR          result cache root (default ${DEFAULT_CACHE_DIR})
  --timeout SECONDS        kill a plugin that runs longer`;

class UsageError extends Error {}

function parseJSONOption(name: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--${name}: not valid JSON: ${(err as Error).message}`);
  }
}

function parseValidAttachments(text: string): GCAttachment[] {
  const v = parseJSONOption('valid-attachments', text);
  if (!Array.isArray(v)) throw new UsageError('--valid-attachments: expected a JSON array of {"containerID","ifname"}');
  return v.map((a: unknown, i) => {
    const o = a as Record<string, unknown> | null;
    if (typeof o !== 'object' || o === null || typeof o.containerID !== 'string' || typeof o.ifname !== 'string') {
      throw new UsageError(`--valid-attachments[${i}]: expected {"containerID": string, "ifname": string}`);
    }
    return { containerID: o.containerID, ifname: o.ifname };
  });
}

export async function runCniCommand(argv: string[]): Promise<number> {
  const write = (s: string) => process.stderr.write(`${s}\n`);
  let verb = '';
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        net: { type: 'string' },
        conflist: { type: 'string' },
        netns: { type: 'string' },
        'container-id': { type: 'string' },
        ifname: { type: 'string' },
        args: { type: 'string' },
        'capability-args': { type: 'string' },
        'valid-attachments': { type: 'string' },
        'conf-dir': { type: 'string' },
        'bin-dir': { type: 'string' },
        'cache-dir': { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help === true) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    verb = positionals[0] ?? '';
    if (!['add', 'del', 'check', 'status', 'gc'].includes(verb) || positionals.length > 1) {
      throw new UsageError(verb === '' ? 'missing command' : `unknown command ${JSON.stringify(positionals.join(' '))}`);
    }
    if ((values.net === undefined) === (values.conflist === undefined)) {
      throw new UsageError('give exactly one of --net NAME or --conflist FILE');
    }

    const list: NetworkConfigList =
      values.conflist !== undefined
        ? confListFromFile(values.conflist)
        : loadNetworkConfList(values['conf-dir'] ?? DEFAULT_CONF_DIR, values.net as string);

    let timeoutMs: number | undefined;
    if (values.timeout !== undefined) {
      const t = Number(values.timeout);
      if (!(t > 0)) throw new UsageError(`--timeout: expected seconds > 0, got ${JSON.stringify(values.timeout)}`);
      timeoutMs = t * 1000;
    }
    const runtime = new CniRuntime({
      path: (values['bin-dir'] ?? DEFAULT_BIN_DIRS).split(':').filter((d) => d !== ''),
      cacheDir: values['cache-dir'] ?? DEFAULT_CACHE_DIR,
      exec: timeoutMs === undefined ? {} : { timeoutMs },
    });

    if (verb === 'status') {
      await runtime.statusNetworkList(list);
      return 0;
    }
    if (verb === 'gc') {
      const valid = values['valid-attachments'] !== undefined ? parseValidAttachments(values['valid-attachments']) : undefined;
      await runtime.gcNetworkList(list, valid);
      return 0;
    }

    const netns = values.netns === undefined ? '' : resolve(values.netns);
    if (netns === '' && verb !== 'del') throw new UsageError(`--netns is required for ${verb}`);
    let containerID = values['container-id'] ?? '';
    if (containerID === '') {
      if (netns === '') throw new UsageError('give --container-id (or --netns to derive one)');
      // cnitool's convention: a stable id per namespace path.
      containerID = `knit-${createHash('sha512').update(netns).digest('hex').slice(0, 20)}`;
    }
    let capabilityArgs: Record<string, unknown> = {};
    if (values['capability-args'] !== undefined) {
      const c = parseJSONOption('capability-args', values['capability-args']);
      if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new UsageError('--capability-args: expected a JSON object');
      capabilityArgs = c as Record<string, unknown>;
    }
    let args;
    try {
      args = parseArgPairs(values.args ?? '');
    } catch (err) {
      throw new UsageError(`--args: ${(err as Error).message}`);
    }
    const rt: RuntimeConf = { containerID, netns, ifName: values.ifname ?? 'eth0', args, capabilityArgs };

    if (verb === 'add') {
      const result = await runtime.addNetworkList(list, rt);
      process.stdout.write(`${formatResult(result)}\n`);
      return 0;
    }
    // CHECK and DEL must see the ADD's arguments: replay the cached ones when
    // the caller gives none (portmap, bandwidth act on runtimeConfig only).
    const cached = runtime.getCachedConfig(list, rt);
    const sameRt = cached !== undefined && values.args === undefined && values['capability-args'] === undefined ? cached.rt : rt;
    if (verb === 'check') await runtime.checkNetworkList(list, sameRt);
    else await runtime.delNetworkList(list, sameRt);
    return 0;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const nodeCode = (err as { code?: unknown } | null)?.code;
    if (err instanceof UsageError || (typeof nodeCode === 'string' && nodeCode.startsWith('ERR_PARSE_ARGS'))) {
      write(`knit cni: ${msg}`);
      write(USAGE);
      return 2;
    }
    const code = err instanceof CniError ? ` (CNI error code ${err.code})` : '';
    write(`knit cni ${verb}: ${msg}${code}`);
    return 1;
  }
}
