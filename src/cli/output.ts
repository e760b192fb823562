// Output: docker-like tables (columns padded to the widest cell, three spaces
// apart) for people, JSON for scripts.
import type { EndpointView } from '../model/api.ts';
import type { PortMapping } from '../model/index.ts';
import type { Format } from './args.ts';

export interface Writer {
  write(s: string): unknown;
}

/** Where a command writes; tests pass their own. */
export interface Io {
  stdout: Writer;
  stderr: Writer;
}

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}

/** Writes `value` as JSON, or the table `render` makes of it. */
export function emit<T>(io: Io, format: Format, value: T, render: (v: T) => string): void {
  io.stdout.write(format === 'json' ? json(value) : render(value));
}

/** Docker's short id: the first 12 characters. */
export function shortId(id: string): string {
  return id.slice(0, 12);
}

/** `0.0.0.0:8080->80/tcp`, as `docker ps` shows a mapping. */
export function formatPort(p: PortMapping): string {
  const host = p.hostIP === undefined || p.hostIP === '' ? '0.0.0.0' : p.hostIP.includes(':') ? `[${p.hostIP}]` : p.hostIP;
  return `${host}:${p.hostPort}->${p.containerPort}/${p.proto}`;
}

export function endpointAddresses(e: EndpointView): string[] {
  return [e.ipv4, e.ipv6].filter((a): a is string => a !== undefined && a !== '');
}

/** `3 minutes ago` from an ISO timestamp, as docker lists show age. */
export function ago(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  const units: [number, string][] = [
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [size, name] of units) {
    if (s >= size) {
      const n = Math.floor(s / size);
      return `${n} ${name}${n === 1 ? '' : 's'} ago`;
    }
  }
  return s < 2 ? 'just now' : `${s} seconds ago`;
}

export function duration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}
