// Throwaway namespaces for benchmarks and the cleanups that remove them.
// Names start with `kntb` and a per-run tag (test/helpers uses `knt` too, so
// leftovers of either are recognisable). Cleanups run when a benchmark ends,
// on failure too, and on SIGINT/SIGTERM; the machine's own namespace is
// never touched.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const RUN_TAG = randomBytes(2).toString('hex');
let counter = 0;
const cleanups: (() => void | Promise<void>)[] = [];

/** Runs a command and returns its stdout; throws with stderr on failure. */
export function sh(cmd: string, args: string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } catch (err) {
    const e = err as { stderr?: string; status?: number };
    throw new Error(`${cmd} ${args.join(' ')} failed (${e.status ?? '?'}): ${(e.stderr ?? '').trim()}`);
  }
}

/** A unique name of at most 15 characters. */
export function uniqueName(prefix = 'kntb'): string {
  counter += 1;
  return `${prefix}${RUN_TAG}${counter.toString(36)}`.slice(0, 15);
}

/** Registers fn to run at the next runCleanups(), last registered first. */
export function onCleanup(fn: () => void | Promise<void>): void {
  cleanups.push(fn);
}

export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`bench cleanup: ${(err as Error).message}\n`);
    }
  }
}

export function removeNetns(name: string): void {
  spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
}

/** /run/netns/<name>, with lo up; removed at cleanup. */
export function makeNetns(prefix = 'kntb'): { name: string; path: string } {
  const name = uniqueName(prefix);
  sh('ip', ['netns', 'add', name]);
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  onCleanup(() => removeNetns(name));
  return { name, path: `/run/netns/${name}` };
}

/** Removes every /run/netns entry starting with prefix (sandboxes a benchmark's daemon made). */
export function removeNetnsWithPrefix(prefix: string): void {
  if (existsSync('/run/netns')) for (const n of readdirSync('/run/netns')) if (n.startsWith(prefix)) removeNetns(n);
  // The sandbox files Knit's daemon wrote for them (a daemon stopped with its sandboxes in place leaves them).
  if (existsSync('/etc/netns')) for (const n of readdirSync('/etc/netns')) if (n.startsWith(prefix)) rmSync(join('/etc/netns', n), { recursive: true, force: true });
}

/** Runs `ip` inside a namespace. */
export function ipIn(ns: string, ...args: string[]): string {
  return sh('ip', ['-n', ns, ...args]);
}

/** Runs a command inside the namespace at nsPath (nsenter: no private mount namespace). */
export function inNs(nsPath: string, cmd: string, args: string[]): string {
  return sh('nsenter', [`--net=${nsPath}`, cmd, ...args]);
}
