// Bundles Knit's short-lived executables with esbuild (run by `npm ci`
// through `prepare`, and by `npm run build`). Start-up is part of their
// latency: one file parses faster than a tree of .ts files stripped one by one.
//
// The daemon is not bundled: it is long-lived, and the CLI loads it from src/
// on `knit daemon` (see src/cli/main.ts, FROM_SOURCE). Native modules (koffi)
// stay external and load from node_modules at run time.
import { build, type BuildOptions } from 'esbuild';
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };

interface Entry {
  /** Source entry point, relative to the project root. */
  in: string;
  /** Output file name in dist/, without extension. */
  out: string;
  /** Split lazily imported modules into chunks under dist/<out>-chunks/ (ESM only). */
  splitting: boolean;
  /** Prepend a `require` for bundled CommonJS dependencies that call it. */
  cjsRequire: boolean;
}

/** Every bundle Knit ships. The CNI plugin joins here (its own file, no shared chunks). */
export const ENTRIES: Entry[] = [
  { in: 'src/cli/main.ts', out: 'knit', splitting: true, cjsRequire: false },
  // The CNI plugins: single files, started once per container operation.
  { in: 'src/cni/plugin.ts', out: 'knit-cni', splitting: false, cjsRequire: false },
  { in: 'src/cni/ipam-plugin.ts', out: 'knit-ipam', splitting: false, cjsRequire: false },
];

/**
 * The CNI plugins as CNI plugins ship: one standalone executable each in
 * dist/cni/ (`bun build --compile --bytecode`).
 * Without bun, dist/cni/ holds scripts that run the bundles on this
 * project's Node 24 instead (see src/cni/install.ts).
 */
export const CNI_EXECUTABLES = [
  { in: 'src/cni/plugin.ts', bundle: 'knit-cni', out: 'knit' },
  { in: 'src/cni/ipam-plugin.ts', bundle: 'knit-ipam', out: 'knit-ipam' },
];

const EXTERNAL = ['koffi', '*.node'];

const REQUIRE_BANNER = "import { createRequire as __knitCreateRequire } from 'node:module'; const require = __knitCreateRequire(import.meta.url);";

function optionsFor(e: Entry): BuildOptions {
  const dist = join(root, 'dist');
  return {
    absWorkingDir: root,
    entryPoints: [{ in: e.in, out: e.out }],
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    outdir: dist,
    outExtension: { '.js': '.mjs' },
    splitting: e.splitting,
    chunkNames: `${e.out}-chunks/[name]-[hash]`,
    external: EXTERNAL,
    minify: true,
    legalComments: 'none',
    logLevel: 'warning',
    banner: e.cjsRequire ? { js: REQUIRE_BANNER } : {},
    define: {
      __KNIT_VERSION__: JSON.stringify(pkg.version),
      // Modules the bundle loads from source (the daemon, the CNI runtime), from dist/.
      __KNIT_SRC__: JSON.stringify('../src/'),
    },
  };
}

const started = Date.now();
for (const e of ENTRIES) {
  rmSync(join(root, 'dist', `${e.out}.mjs`), { force: true });
  rmSync(join(root, 'dist', `${e.out}-chunks`), { recursive: true, force: true });
  await build(optionsFor(e));
}
const cniDir = join(root, 'dist', 'cni');
mkdirSync(cniDir, { recursive: true });
const bun = join(root, 'node_modules', '.bin', 'bun');
const nodeBin = join(root, 'node_modules', '.bin', 'node');
let compiled = false;
for (const c of CNI_EXECUTABLES) {
  const out = join(cniDir, c.out);
  // Built beside and renamed over: a build running meanwhile (or a runtime) never sees a half file.
  const tmp = `${out}.build-${process.pid}`;
  const r = existsSync(bun)
    ? // --bytecode: the executable carries compiled bytecode, not source to parse at each start (~10 ms
      // less); it needs CommonJS output, hence no top-level await in the plugins.
      // No .env or bunfig.toml from the runtime's working directory: a plugin's behaviour
      // must not depend on where containerd or podman happens to run it.
      // Measured and left out (CPU per start, interleaved): --bytecode-depth=1/2 (+0.3..1 ms),
      // --bytecode-order profiles, --compile-exec-argv=--smol (no gain). What the plugin
      // touches matters more: see skel.ts (bunIO) for process.stdin/stdout.
      spawnSync(bun, ['build', '--compile', '--minify', '--bytecode', '--format=cjs', '--target=bun', '--no-compile-autoload-dotenv', '--no-compile-autoload-bunfig', c.in, '--outfile', tmp], { cwd: root, encoding: 'utf8' })
    : undefined;
  if (r !== undefined && r.status === 0) {
    renameSync(tmp, out);
    compiled = true;
    continue;
  }
  rmSync(tmp, { force: true });
  if (r !== undefined) console.warn(`build: bun could not compile ${c.in}, using the Node bundle: ${r.stderr || r.error?.message}`);
  // The fallback: the bundle on this project's Node 24.
  writeFileSync(tmp, `#!/bin/sh\nexec ${JSON.stringify(realpathSync(nodeBin))} ${JSON.stringify(join(root, 'dist', `${c.bundle}.mjs`))} "$@"\n`, { mode: 0o755 });
  renameSync(tmp, out);
}
console.log(
  `build: ${ENTRIES.map((e) => `dist/${e.out}.mjs`).join(', ')}; CNI plugins in dist/cni/ (${compiled ? 'bun --compile' : 'node wrappers'}) in ${Date.now() - started} ms`,
);
