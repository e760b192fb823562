// Throwaway network namespaces for tests on the real kernel. Every name
// starts with `knt` and a per-process tag, so leftovers are recognisable and
// parallel test files never collide.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after } from 'node:test';

const tag = randomBytes(3).toString('hex');
let counter = 0;
const created = new Set<string>();

/** Runs a command and returns its stdout; throws with stderr on failure. */
export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs `ip` inside a namespace (or the current one when ns is undefined). */
export function ipIn(ns: string | undefined, ...args: string[]): string {
  return sh('ip', ns === undefined ? args : ['-n', ns, ...args]);
}

/** A unique short name (<= 15 chars) for a link or namespace in this test run. */
export function uniqueName(prefix = 'knt'): string {
  counter += 1;
  return `${prefix}${tag}${counter.toString(36)}`.slice(0, 15);
}

/** Creates /run/netns/<name> and removes it when the test file ends. */
export function makeNetns(prefix = 'knt'): { name: string; path: string } {
  const name = uniqueName(prefix);
  sh('ip', ['netns', 'add', name]);
  sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  created.add(name);
  return { name, path: `/run/netns/${name}` };
}

export function removeNetns(name: string): void {
  try {
    sh('ip', ['netns', 'del', name]);
  } catch {
    // already gone
  }
  created.delete(name);
}

after(() => {
  for (const name of [...created]) removeNetns(name);
});

/** True when running as root with the tools kernel tests need. */
export function canRunKernelTests(): boolean {
  return process.getuid?.() === 0;
}
