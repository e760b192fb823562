// Timing and summaries. Medians, not means: the 2-core machines these run on
// carry other load, and a few slow outliers must not move the figure.
import type { Stat } from './types.ts';

/** Milliseconds since an arbitrary origin, sub-microsecond resolution. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export function stat(samples: number[]): Stat {
  if (samples.length === 0) throw new Error('stat: no samples');
  const s = [...samples].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { median, min: s[0]!, max: s[s.length - 1]!, n: s.length };
}

/** A single measurement as a Stat (n = 1). */
export function one(value: number): Stat {
  return { median: value, min: value, max: value, n: 1 };
}

/** Times fn n times (after `warmup` untimed runs); returns the durations in ms. */
export async function timeEach(n: number, fn: (i: number) => Promise<void> | void, warmup = 0): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = nowMs();
    await fn(i);
    out.push(nowMs() - t0);
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
