// What every subcommand is: its right form, its options and what it does.
import type { Format, OptionSpecs, Parsed } from './args.ts';
import type { Client } from './client.ts';
import type { Io } from './output.ts';

export interface Context {
  io: Io;
  format: Format;
  socket: string;
  /** The API client, made on first use (version and help never need one). */
  client(): Client;
  env: NodeJS.ProcessEnv;
}

export interface Command {
  /** The right form, quoted in usage errors and --help. */
  usage: string;
  summary: string;
  options: OptionSpecs;
  run(ctx: Context, p: Parsed): Promise<number>;
}

/**
 * Runs `fn` for each name, reporting a failure as one line on stderr and
 * going on with the rest (as `docker rm a b` does); exit 1 if any failed.
 */
export async function eachName(ctx: Context, names: string[], fn: (name: string) => Promise<void>): Promise<number> {
  let status = 0;
  for (const name of names) {
    try {
      await fn(name);
    } catch (err) {
      ctx.io.stderr.write(`knit: ${err instanceof Error ? err.message : String(err)}\n`);
      status = 1;
    }
  }
  return status;
}

/** DELETE each name's path; prints the names removed (a JSON array with --format json). */
export async function removeEach(ctx: Context, names: string[], pathOf: (name: string) => string): Promise<number> {
  const removed: string[] = [];
  const status = await eachName(ctx, names, async (name) => {
    await ctx.client().delete(pathOf(name));
    removed.push(name);
    if (ctx.format === 'table') ctx.io.stdout.write(`${name}\n`);
  });
  if (ctx.format === 'json') ctx.io.stdout.write(JSON.stringify(removed, null, 2) + '\n');
  return status;
}
