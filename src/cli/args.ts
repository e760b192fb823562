// Command-line parsing shared by every command: the global options that may
// stand before or after the subcommand, usage errors, and a parseArgs wrapper
// whose errors name the command and show its right form.
import { parseKeyValues } from '../model/names.ts';

// See client.ts for why builtins come through getBuiltinModule.
const { parseArgs } = process.getBuiltinModule('node:util');

export const DEFAULT_SOCKET = '/run/knit/knit.sock';

export type Format = 'table' | 'json';

/** A mistake on the command line: one line, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface Globals {
  socket?: string;
  format?: string;
  help?: boolean;
}

type OptionSpec = { type: 'string' | 'boolean'; short?: string; multiple?: boolean };
export type OptionSpecs = Record<string, OptionSpec>;

/** Options every command accepts, wherever they stand. */
export const GLOBAL_OPTIONS = {
  socket: { type: 'string' },
  format: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpecs;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/**
 * Parses the words after the subcommand. `usage` is the command's right form,
 * quoted in every error so the one line says both what is wrong and what to type.
 */
export function parseCommand(args: string[], options: OptionSpecs, usage: string): Parsed {
  try {
    const r = parseArgs({
      args,
      options: { ...GLOBAL_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (err) {
    throw new UsageError(`${describeParseError(err)}; usage: ${usage}`);
  }
}

function describeParseError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? String(err);
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const m = /'([^']+)'/.exec(msg);
      return `unknown option ${m?.[1] ?? msg}`;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      // "Option '--subnet <value>' argument missing" / "Option '--ipv6' does not take an argument"
      const m = /Option '(-[^' ]+(?:, -[^' ]+)?)/.exec(msg);
      const opt = m?.[1] ?? 'an option';
      return msg.includes('missing') ? `${opt} needs a value` : `${opt} takes no value`;
    }
    default:
      return msg;
  }
}

/** Values of a repeatable string option, [] when absent. */
export function list(p: Parsed, name: string): string[] {
  const v = p.values[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [String(v)];
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

/**
 * Takes --socket, --format and --help from the front of argv (before the
 * subcommand) and returns the rest untouched.
 */
export function takeLeadingGlobals(argv: string[]): { globals: Globals; rest: string[]; version: boolean } {
  const globals: Globals = {};
  let version = false;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith('-') || a === '-') break;
    if (a === '--') {
      i++;
      break;
    }
    if (a === '-h' || a === '--help') globals.help = true;
    else if (a === '-v' || a === '--version') version = true;
    else {
      const [name, inline] = splitOption(a);
      if (name !== '--socket' && name !== '--format') {
        throw new UsageError(`unknown option ${name}; usage: knit [--socket PATH] [--format table|json] COMMAND ...`);
      }
      let value = inline;
      if (value === undefined) {
        value = argv[i + 1];
        if (value === undefined) throw new UsageError(`${name} needs a value; usage: knit ${name} VALUE COMMAND ...`);
        i++;
      }
      if (name === '--socket') globals.socket = value;
      else globals.format = value;
    }
  }
  return { globals, rest: argv.slice(i), version };
}

function splitOption(a: string): [string, string | undefined] {
  const eq = a.indexOf('=');
  return eq < 0 ? [a, undefined] : [a.slice(0, eq), a.slice(eq + 1)];
}

export function checkFormat(value: string | undefined): Format {
  if (value === undefined || value === 'table') return 'table';
  if (value === 'json') return 'json';
  throw new UsageError(`--format must be 'table' or 'json', not '${value}'`);
}

/** Exactly `names.length` positionals, else a usage error naming the first missing or the extra. */
export function expectPositionals(p: Parsed, names: string[], usage: string): string[] {
  const got = p.positionals;
  if (got.length < names.length) throw new UsageError(`missing ${names[got.length]}; usage: ${usage}`);
  if (got.length > names.length) throw new UsageError(`unexpected argument '${got[names.length]}'; usage: ${usage}`);
  return got;
}

/** At least one positional (NAME...). */
export function expectSome(p: Parsed, name: string, usage: string): string[] {
  if (p.positionals.length === 0) throw new UsageError(`missing ${name}; usage: ${usage}`);
  return p.positionals;
}

/** Repeated `--NAME k=v` options as a record; undefined when none were given. */
export function keyValues(p: Parsed, name: string, usage: string): Record<string, string> | undefined {
  const items = list(p, name);
  if (items.length === 0) return undefined;
  try {
    return parseKeyValues(`--${name}`, items);
  } catch (err) {
    throw new UsageError(`${err instanceof Error ? err.message : String(err)}; usage: ${usage}`);
  }
}
