// The daemon's HTTP API on its unix socket: routes, views and the error body.
// Every front-end (CLI, CNI plugin, Docker plugin) speaks to the same engine;
// the CLI and the CNI plugin speak to it through these routes.
//
//   GET    /v1/version                       -> VersionView
//   GET    /v1/status                        -> StatusView
//   GET    /v1/metrics                       -> MetricsView (time spent per route)
//   GET    /v1/networks                      -> NetworkView[]
//   POST   /v1/networks          NetworkCreate -> NetworkView (201)
//   GET    /v1/networks/:name                -> NetworkView   (name, id or unique id prefix)
//   DELETE /v1/networks/:name                -> 204
//   POST   /v1/networks/:name/connect    ConnectRequest -> EndpointView
//   POST   /v1/networks/:name/disconnect {sandbox} -> 204
//   GET    /v1/sandboxes                     -> SandboxView[]
//   POST   /v1/sandboxes         SandboxCreate -> SandboxView (201)
//   GET    /v1/sandboxes/:name               -> SandboxView
//   DELETE /v1/sandboxes/:name               -> 204
//
// Errors: HTTP status from the code (invalid 400, not-found 404, conflict 409,
// exhausted 409, unsupported 501, unavailable 503, internal 500) and ErrorBody.
import type { ErrorCode } from '../lib/errors.ts';
import type { Bandwidth, Network, Sandbox, PortMapping } from './index.ts';

export interface ErrorBody {
  error: { code: ErrorCode; message: string; field?: string };
}

export interface VersionView {
  version: string;
  apiVersion: string;
  node: string;
}

export interface StatusView {
  daemon: { pid: number; socket: string; stateDir: string; runDir: string; uptimeSeconds: number; netns: string };
  store: { backend: string; path: string; revision: number };
  counts: { networks: number; sandboxes: number; endpoints: number };
}

/** One route's handling times in the daemon (API route or Docker plugin call). */
export interface RouteTimingsView {
  /** Calls since the daemon started. */
  count: number;
  /** Their summed duration, ms. */
  totalMs: number;
  /** The latest durations (up to 1,000), oldest first, ms. */
  samplesMs: number[];
}

/**
 * Keys: `METHOD /v1/pattern` for the API (e.g. `POST /v1/networks/:name/connect`),
 * the plugin path for Docker's calls (e.g. `/NetworkDriver.Join`). Times run
 * from the request's arrival to the reply's last byte handed to the socket.
 */
export interface MetricsView {
  routes: Record<string, RouteTimingsView>;
}

export interface EndpointView {
  id: string;
  network: string;
  networkId: string;
  sandbox: string;
  sandboxId: string;
  ifname: string;
  hostIfname?: string;
  mac: string;
  /** CIDR, e.g. 10.1.0.2/24 */
  ipv4?: string;
  ipv6?: string;
  gateway4?: string;
  gateway6?: string;
  aliases: string[];
  ports: PortMapping[];
}

export type NetworkView = Network & { endpoints: EndpointView[] };
export type SandboxView = Sandbox & { endpoints: EndpointView[] };

export interface ConnectRequest {
  sandbox: string;
  ip?: string;
  ipv6?: string;
  mac?: string;
  ifname?: string;
  aliases?: string[];
  publish?: string[];
  /** Traffic shaping of the endpoint (bridge networks). */
  bandwidth?: Bandwidth;
  /** Use this id for the endpoint (Docker chooses its endpoint ids). */
  endpointId?: string;
  /**
   * Leave the sandbox end of the veth in the host namespace under this
   * temporary name, unconfigured: the caller (dockerd, per Docker's Join
   * contract) moves it into the sandbox and sets its addresses and routes.
   */
  hostPeer?: string;
}

export const API_VERSION = '1';

export function httpStatusOf(code: ErrorCode): number {
  switch (code) {
    case 'invalid':
      return 400;
    case 'not-found':
      return 404;
    case 'conflict':
    case 'exhausted':
      return 409;
    case 'unsupported':
      return 501;
    case 'unavailable':
      return 503;
    case 'internal':
      return 500;
  }
}
