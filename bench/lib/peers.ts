// Peers come from Debian's packages. A missing one is installed with apt-get
// when we are root (the benchmarks need root anyway); otherwise the report
// says how to install it and the peer's columns stay empty.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const tried = new Map<string, boolean>();

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The path of `command` on PATH (or the absolute path given), if it can run. */
export function which(command: string): string | undefined {
  if (command.startsWith('/')) return executable(command) ? command : undefined;
  for (const dir of (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (dir && executable(`${dir}/${command}`)) return `${dir}/${command}`;
  }
  return undefined;
}

export interface Peer {
  path?: string;
  /** Why it is missing and how to get it, when path is undefined. */
  missing?: string;
}

/** Finds `command`, installing Debian's `pkg` once if it is absent. */
export function ensurePeer(command: string, pkg: string, log: (m: string) => void): Peer {
  let path = which(command);
  if (path) return { path };
  if (!tried.has(pkg) && process.getuid?.() === 0 && which('apt-get')) {
    log(`installing ${pkg} (for ${command}) with apt-get`);
    const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], {
      encoding: 'utf8',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      timeout: 300_000,
    });
    tried.set(pkg, r.status === 0);
    path = which(command);
    if (path) return { path };
  }
  return { missing: `${command} not found: install it with \`sudo apt-get install ${pkg}\` (Debian/Ubuntu)` };
}
