// How long the daemon spends on each request, per route: a count, a running
// total and the latest samples, so a benchmark or an operator can tell the
// daemon's own time from the client's (`GET /v1/metrics`). Recording costs one
// clock read and one store into a preallocated ring: no allocation per call.
import type { MetricsView, RouteTimingsView } from '../model/api.ts';

/** Samples kept per route: enough for a median over a benchmark's run. */
export const SAMPLES_KEPT = 1000;

class RouteTimings {
  count = 0;
  totalMs = 0;
  readonly ring: Float64Array;

  constructor(size: number) {
    this.ring = new Float64Array(size);
  }

  add(ms: number): void {
    this.ring[this.count % this.ring.length] = ms;
    this.count += 1;
    this.totalMs += ms;
  }

  /** The kept samples, oldest first. */
  samples(): number[] {
    const size = this.ring.length;
    if (this.count <= size) return Array.from(this.ring.subarray(0, this.count));
    const start = this.count % size;
    return [...this.ring.subarray(start), ...this.ring.subarray(0, start)];
  }
}

export class Timings {
  readonly #routes = new Map<string, RouteTimings>();
  readonly #kept: number;

  constructor(kept = SAMPLES_KEPT) {
    if (!Number.isInteger(kept) || kept < 1) throw new RangeError(`samples kept must be a positive integer, not ${kept}`);
    this.#kept = kept;
  }

  /**
   * Records one call of `route`, which must come from a fixed set (a route
   * pattern, a plugin call name), never from the raw request, so the map
   * stays bounded.
   */
  record(route: string, ms: number): void {
    let r = this.#routes.get(route);
    if (!r) this.#routes.set(route, (r = new RouteTimings(this.#kept)));
    r.add(ms);
  }

  snapshot(): MetricsView {
    const routes: Record<string, RouteTimingsView> = {};
    for (const [key, r] of [...this.#routes].sort(([a], [b]) => a.localeCompare(b))) {
      routes[key] = { count: r.count, totalMs: r.totalMs, samplesMs: r.samples() };
    }
    return { routes };
  }
}
