// CNI_ARGS: "K1=V1;K2=V2". Plugin side parses it as types.LoadArgs does
// (exactly one "=" per pair, unknown keys refused unless IgnoreUnknown);
// runtime side parses the user's --args as cnitool does.
import { isIP } from 'node:net';
import { quote, quoteList } from './errors.ts';

export type ArgPair = [string, string];

/** Bool as types.UnmarshallableBool: 1/true/0/false, any case. */
function parseBool(s: string): boolean {
  switch (s.toLowerCase()) {
    case '1':
    case 'true':
      return true;
    case '0':
    case 'false':
      return false;
    default:
      throw new Error(`boolean unmarshal error: invalid input ${s.toLowerCase()}`);
  }
}

/** How one known key's value is read; throw to reject it. */
export type ArgParser<T> = (value: string) => T;

/**
 * types.LoadArgs against a set of known keys (a Go struct's field names,
 * case-sensitive). Returns the parsed values of the keys present.
 */
export function loadArgs<S extends Record<string, ArgParser<unknown>>>(
  args: string,
  known: S,
): { [K in keyof S]?: ReturnType<S[K]> } & { IgnoreUnknown?: boolean } {
  const out: Record<string, unknown> = {};
  if (args === '') return out as { [K in keyof S]?: ReturnType<S[K]> };
  const unknown: string[] = [];
  for (const pair of args.split(';')) {
    const kv = pair.split('=');
    if (kv.length !== 2) throw new Error(`ARGS: invalid pair ${quote(pair)}`);
    const [key, value] = kv as [string, string];
    const parser = key === 'IgnoreUnknown' ? parseBool : Object.hasOwn(known, key) ? known[key] : undefined;
    if (parser === undefined) {
      unknown.push(pair);
      continue;
    }
    try {
      out[key] = parser(value);
    } catch (err) {
      throw new Error(`ARGS: error parsing value of pair ${quote(pair)}: ${(err as Error).message}`);
    }
  }
  if (unknown.length > 0 && out.IgnoreUnknown !== true) throw new Error(`ARGS: unknown args ${quoteList(unknown)}`);
  return out as { [K in keyof S]?: ReturnType<S[K]> } & { IgnoreUnknown?: boolean };
}

export const stringArg: ArgParser<string> = (v) => v;

/** IP=<ip>[/<prefix>][,<ip>[/<prefix>]...] as host-local and static read it. */
export const ipListArg: ArgParser<string[]> = (v) => {
  const list = v.split(',').map((s) => s.trim());
  for (const ip of list) {
    const slash = ip.indexOf('/');
    const addr = slash < 0 ? ip : ip.slice(0, slash);
    const len = slash < 0 ? '0' : ip.slice(slash + 1);
    const fam = isIP(addr);
    if (fam === 0 || !/^\d{1,3}$/.test(len) || Number(len) > (fam === 4 ? 32 : 128)) {
      throw new Error(`invalid IP address: ${ip}`);
    }
  }
  return list;
};

/** A 48-bit MAC as net.ParseMAC accepts it (colon or dash separated). */
export const macArg: ArgParser<string> = (v) => {
  if (!/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(v)) throw new Error(`address ${v}: invalid MAC address`);
  return v.toLowerCase().replaceAll('-', ':');
};

/** The keys Knit's plugins understand: Kubernetes' conventional ones plus IP, MAC, GATEWAY. */
export const KNOWN_ARGS = {
  K8S_POD_NAMESPACE: stringArg,
  K8S_POD_NAME: stringArg,
  K8S_POD_INFRA_CONTAINER_ID: stringArg,
  K8S_POD_UID: stringArg,
  IP: ipListArg,
  MAC: macArg,
  GATEWAY: stringArg,
} satisfies Record<string, ArgParser<unknown>>;

export interface CniArgs {
  IgnoreUnknown?: boolean;
  K8S_POD_NAMESPACE?: string;
  K8S_POD_NAME?: string;
  K8S_POD_INFRA_CONTAINER_ID?: string;
  K8S_POD_UID?: string;
  IP?: string[];
  MAC?: string;
  GATEWAY?: string;
}

/** CNI_ARGS for Knit's plugins. Throws "ARGS: ..." like the reference plugins. */
export function parseCniArgs(args: string): CniArgs {
  return loadArgs(args, KNOWN_ARGS);
}

/** Runtime side (cnitool's parseArgs): every pair needs a key and a value. */
export function parseArgPairs(args: string): ArgPair[] {
  if (args === '') return [];
  return args.split(';').map((pair) => {
    const kv = pair.split('=');
    if (kv.length !== 2 || kv[0] === '' || kv[1] === '') throw new Error(`invalid CNI_ARGS pair ${quote(pair)}`);
    return [kv[0], kv[1]] as ArgPair;
  });
}

/** The CNI_ARGS string a runtime passes (invoke.Args.AsEnv). */
export function stringifyArgs(pairs: readonly ArgPair[]): string {
  return pairs.map(([k, v]) => `${k}=${v}`).join(';');
}
