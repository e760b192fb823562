// Bundles Knit's short-lived executables with esbuild (run by `npm ci`
// through `prepare`, and by `npm run build`). Start-up is part of their
// latency: one file parses faster than a tree of .ts files stripped one by one.
//
// The daemon is not bundled: it is long-lived, and the CLI loads it from src/
// on `knit daemon` (see src/cli/main.ts, FROM_SOURCE). Native modules (koffi)
// stay external and load from node_modules at run time.
import { build, type BuildOptions } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
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
export const ENTRIES: Entry[] = [{ in: 'src/cli/main.ts', out: 'knit', splitting: true, cjsRequire: false }];

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
console.log(`build: ${ENTRIES.map((e) => `dist/${e.out}.mjs`).join(', ')} in ${Date.now() - started} ms`);
