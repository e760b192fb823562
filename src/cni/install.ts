// `knit install cni [--bin-dir DIR]`: puts the `knit` and `knit-ipam` CNI
// plugins where runtimes look for them (/opt/cni/bin by default). They are
// the executables `npm run build` left in dist/cni/: standalone binaries
// compiled by bun, or, without bun, scripts that run the bundles on this
// project's Node 24. Each is written beside its target and renamed over it,
// so a runtime never executes a half-written file.
import { parseArgs } from 'node:util';
import { chmodSync, copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const DEFAULT_BIN_DIR = '/opt/cni/bin';
export const PLUGINS = ['knit', 'knit-ipam'] as const;

const USAGE = `usage: knit install cni [--bin-dir DIR]

Installs the CNI plugins knit and knit-ipam into DIR (default ${DEFAULT_BIN_DIR}).
They talk to the Knit daemon at the config's "socket", else $KNIT_SOCKET, else /run/knit/knit.sock.`;

/** Where the built plugins are: dist/cni/ of this checkout. */
export function builtPluginDir(): string {
  return resolve(import.meta.dirname, '../../dist/cni');
}

export async function runInstall(argv: string[]): Promise<number> {
  let values: { 'bin-dir'?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({ args: argv, options: { 'bin-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (err) {
    process.stderr.write(`knit install cni: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const binDir = resolve(values['bin-dir'] ?? DEFAULT_BIN_DIR);
  const from = builtPluginDir();
  const missing = PLUGINS.filter((p) => !existsSync(join(from, p)));
  if (missing.length) {
    process.stderr.write(`knit install cni: ${missing.map((p) => join(from, p)).join(', ')} not built; run \`npm run build\` first\n`);
    return 1;
  }
  mkdirSync(binDir, { recursive: true });
  for (const p of PLUGINS) {
    const target = join(binDir, p);
    const tmp = join(binDir, `.${p}.knit-install-${process.pid}`);
    try {
      copyFileSync(join(from, p), tmp);
      chmodSync(tmp, 0o755);
      renameSync(tmp, target);
    } catch (err) {
      rmSync(tmp, { force: true });
      process.stderr.write(`knit install cni: installing ${target}: ${(err as Error).message}\n`);
      return 1;
    }
    process.stdout.write(`installed ${target}\n`);
  }
  return 0;
}
