// knit version, knit status
import type { StatusView, VersionView } from '../model/api.ts';
import { API_VERSION } from '../model/api.ts';
import { expectPositionals } from './args.ts';
import type { Command } from './command.ts';
import { duration, emit } from './output.ts';

// The bundler defines this (scripts/build.ts); from source, package.json says.
declare const __KNIT_VERSION__: string | undefined;

export function clientVersion(): string {
  if (typeof __KNIT_VERSION__ === 'string') return __KNIT_VERSION__;
  try {
    const { readFileSync } = process.getBuiltinModule('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export interface VersionReport {
  client: { version: string; apiVersion: string; node: string };
  /** null when the daemon cannot be reached: the client's version is still worth printing. */
  server: VersionView | null;
  serverError?: string;
}

const VERSION_USAGE = 'knit version [--format table|json]';
const STATUS_USAGE = 'knit status [--format table|json]';

function renderVersion(v: VersionReport): string {
  const lines = ['Client:', `  Version:      ${v.client.version}`, `  API version:  ${v.client.apiVersion}`, `  Node:         ${v.client.node}`];
  if (v.server !== null) {
    lines.push('Server:', `  Version:      ${v.server.version}`, `  API version:  ${v.server.apiVersion}`, `  Node:         ${v.server.node}`);
  } else {
    lines.push(`Server:         not reachable (${v.serverError ?? 'unknown error'})`);
  }
  return lines.join('\n') + '\n';
}

function renderStatus(s: StatusView): string {
  const d = s.daemon;
  return [
    `Daemon:     running, pid ${d.pid}, up ${duration(d.uptimeSeconds)}`,
    `Socket:     ${d.socket}`,
    `Netns:      ${d.netns}`,
    `State dir:  ${d.stateDir}`,
    `Run dir:    ${d.runDir}`,
    `Store:      ${s.store.backend} ${s.store.path} (revision ${s.store.revision})`,
    `Networks:   ${s.counts.networks}`,
    `Sandboxes:  ${s.counts.sandboxes}`,
    `Endpoints:  ${s.counts.endpoints}`,
  ].join('\n') + '\n';
}

export const miscCommands: Record<string, Command> = {
  version: {
    usage: VERSION_USAGE,
    summary: "show the client's and the daemon's versions",
    options: {},
    async run(ctx, p) {
      expectPositionals(p, [], VERSION_USAGE);
      const report: VersionReport = {
        client: { version: clientVersion(), apiVersion: API_VERSION, node: process.version },
        server: null,
      };
      try {
        report.server = await ctx.client().get<VersionView>('/v1/version');
      } catch (err) {
        report.serverError = err instanceof Error ? err.message : String(err);
      }
      emit(ctx.io, ctx.format, report, renderVersion);
      return 0;
    },
  },
  status: {
    usage: STATUS_USAGE,
    summary: 'show the daemon, its store and counts',
    options: {},
    async run(ctx, p) {
      expectPositionals(p, [], STATUS_USAGE);
      const s = await ctx.client().get<StatusView>('/v1/status');
      emit(ctx.io, ctx.format, s, renderStatus);
      return 0;
    },
  },
};
