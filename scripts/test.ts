// `npm test`: every test, unit first, on the real kernel (needs root).
// `npm test -- unit` or a path runs a subset. Extra args pass to node --test.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir)) {
    const p = join(dir, entry);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (p.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

const args = process.argv.slice(2);
const selectors = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));
let files = findTests('test');
if (selectors.length > 0) files = files.filter((f) => selectors.some((s) => f.includes(s)));
// Unit tests first: they fail fast and need nothing from the machine.
files.sort((a, b) => Number(!a.startsWith('test/unit')) - Number(!b.startsWith('test/unit')) || a.localeCompare(b));

// Node 20 pays ~45 ms per start parsing this bundle; children never need it.
const env = { ...process.env };
delete env.NODE_EXTRA_CA_CERTS;
const res = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=1', '--test-timeout=300000', ...flags, ...files],
  { stdio: 'inherit', env },
);
process.exit(res.status ?? 1);
