// `npm run bench [-- [--quick] [NAME...]]`: runs every benchmark (or those
// named), prints each report and writes it as Markdown to bench/results/.
// A benchmark is bench/<name>.ts with a default export (lib/types.ts); one
// whose file is absent is skipped with a line saying so.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { Benchmark, Report } from './lib/types.ts';
import { describeMachine, loadAverage, machine } from './lib/machine.ts';
import { runCleanups } from './lib/netns.ts';
import { toMarkdown, toText } from './lib/table.ts';
import { nowMs } from './lib/stats.ts';

/** Every benchmark, in the order a full run takes them. */
const ALL = ['attach', 'cni', 'docker', 'dns', 'datapath', 'scale'];
const HERE = import.meta.dirname;
const USAGE = `usage: npm run bench -- [--quick] [--no-write] [NAME...]   (names: ${ALL.join(', ')})`;

function isBenchmark(x: unknown): x is Benchmark {
  const b = x as Partial<Benchmark> | undefined;
  return typeof b === 'object' && b !== null && typeof b.name === 'string' && typeof b.run === 'function';
}

async function load(name: string): Promise<Benchmark | string> {
  const file = join(HERE, `${name}.ts`);
  if (!existsSync(file)) return `bench/${name}.ts is absent`;
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (!isBenchmark(mod.default)) return `bench/${name}.ts has no default export { name, peers, run }`;
  return mod.default;
}

function today(): string {
  return new Date().toISOString().slice(0, 10);
}

function write(name: string, report: Report, quick: boolean, seconds: number, loadBefore: string): string {
  const dir = join(HERE, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${today()}-${name}${quick ? '-quick' : ''}.md`);
  const header = [
    `- date: ${new Date().toISOString()}`,
    `- machine: ${describeMachine(machine())}`,
    `- load average (1, 5, 15 min): ${loadBefore} before, ${loadAverage()} after`,
    `- run: \`npm run bench -- ${quick ? '--quick ' : ''}${name}\`, ${seconds.toFixed(0)} s`,
  ];
  writeFileSync(file, toMarkdown(report, header));
  return file;
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: process.argv.slice(2),
      options: { quick: { type: 'boolean' }, 'no-write': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
    });
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const unknown = positionals.filter((p) => !ALL.includes(p));
  if (unknown.length > 0) {
    process.stderr.write(`bench: unknown benchmark ${unknown.join(', ')}\n${USAGE}\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (it builds namespaces, veths and nftables tables inside them); run with sudo\n');
    return 2;
  }
  const quick = values.quick === true;
  const names = positionals.length > 0 ? positionals : ALL;
  const log = (m: string) => process.stderr.write(`  · ${m}\n`);
  process.stdout.write(`Knit benchmarks${quick ? ' (quick)' : ''} on ${describeMachine(machine())}; load ${loadAverage()}\n\n`);

  let failures = 0;
  const t0 = nowMs();
  for (const name of names) {
    const b = await load(name);
    if (typeof b === 'string') {
      process.stdout.write(`-- ${name}: skipped (${b})\n\n`);
      continue;
    }
    const loadBefore = loadAverage();
    const start = nowMs();
    process.stderr.write(`-- ${name}: ${b.description}\n`);
    try {
      const report = await b.run({ quick, log });
      const seconds = (nowMs() - start) / 1000;
      process.stdout.write(toText(report));
      if (values['no-write'] !== true) process.stdout.write(`   written to ${write(name, report, quick, seconds, loadBefore)}\n`);
      process.stdout.write(`   (${seconds.toFixed(0)} s)\n\n`);
    } catch (err) {
      failures++;
      process.stdout.write(`-- ${name}: FAILED: ${(err as Error).stack ?? String(err)}\n\n`);
    } finally {
      await runCleanups();
    }
  }
  process.stdout.write(`all done in ${((nowMs() - t0) / 1000).toFixed(0)} s${failures ? `, ${failures} failed` : ''}\n`);
  return failures === 0 ? 0 : 1;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`bench: ${sig}, cleaning up\n`);
    void runCleanups().finally(() => process.exit(130));
  });
}

process.exitCode = await main();
