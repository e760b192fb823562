// The daemon's HTTP API (routes in src/model/api.ts), a thin translation of
// requests into Engine calls and of KnitErrors into status codes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Engine } from '../engine/engine.ts';
import type { ErrorBody, StatusView, VersionView, ConnectRequest, MetricsView } from '../model/api.ts';
import { API_VERSION, httpStatusOf } from '../model/api.ts';
import { KnitError, invalid, messageOf } from '../lib/errors.ts';
import { VERSION } from '../version.ts';
import type { CniService } from '../cni/service.ts';
import { runPluginCall } from '../cni/plugin-call.ts';
import { callerOf } from '../cni/caller.ts';
import type { Timings } from './metrics.ts';

export interface ApiContext {
  engine: Engine;
  status: () => Promise<StatusView>;
  /** Where each request's handling time goes, under its route pattern. */
  timings: Timings;
  /** What Knit's CNI plugins forward (/v1/cni/exec). */
  cni: CniService;
  /** The socket this API listens on. */
  socket: string;
}

type Handler = (ctx: ApiContext, params: string[], body: unknown, req: IncomingMessage) => Promise<unknown>;

// [method, pattern (the key its timings are kept under), matcher, handler]
const routes: [string, string, RegExp, Handler][] = [
  ['GET', '/v1/version', /^\/v1\/version$/, async () => ({ version: VERSION, apiVersion: API_VERSION, node: process.version }) satisfies VersionView],
  ['GET', '/v1/status', /^\/v1\/status$/, async (c) => c.status()],
  ['GET', '/v1/metrics', /^\/v1\/metrics$/, async (c) => c.timings.snapshot() satisfies MetricsView],
  ['GET', '/v1/networks', /^\/v1\/networks$/, async (c) => c.engine.listNetworks()],
  ['POST', '/v1/networks', /^\/v1\/networks$/, async (c, _p, b) => c.engine.createNetwork(b)],
  ['GET', '/v1/networks/:name', /^\/v1\/networks\/([^/]+)$/, async (c, [n]) => c.engine.inspectNetwork(n as string)],
  ['DELETE', '/v1/networks/:name', /^\/v1\/networks\/([^/]+)$/, async (c, [n]) => c.engine.deleteNetwork(n as string)],
  ['POST', '/v1/networks/:name/connect', /^\/v1\/networks\/([^/]+)\/connect$/, async (c, [n], b) => c.engine.connect(n as string, b as ConnectRequest)],
  ['POST', '/v1/networks/:name/disconnect', /^\/v1\/networks\/([^/]+)\/disconnect$/, async (c, [n], b) => c.engine.disconnect(n as string, sandboxOf(b))],
  ['GET', '/v1/sandboxes', /^\/v1\/sandboxes$/, async (c) => c.engine.listSandboxes()],
  ['POST', '/v1/sandboxes', /^\/v1\/sandboxes$/, async (c, _p, b) => c.engine.createSandbox(b)],
  ['GET', '/v1/sandboxes/:name', /^\/v1\/sandboxes\/([^/]+)$/, async (c, [n]) => c.engine.inspectSandbox(n as string)],
  ['DELETE', '/v1/sandboxes/:name', /^\/v1\/sandboxes\/([^/]+)$/, async (c, [n]) => c.engine.deleteSandbox(n as string)],
  // Knit's CNI plugin executables forward whole calls: the reply is what they print and
  // their exit code (a CNI error is a 200 whose code is 1). The daemon reads the
  // calling process's stdin itself (src/cni/caller.ts).
  ['POST', '/v1/cni/exec', /^\/v1\/cni\/exec$/, async (c, _p, b, req) => runPluginCall(c.cni, b, callerOf(req.socket), { socket: c.socket })],
];

function sandboxOf(b: unknown): string {
  const s = (b as { sandbox?: unknown } | undefined)?.sandbox;
  if (typeof s !== 'string' || s === '') throw invalid('sandbox', 'disconnect needs {"sandbox": NAME}');
  return s;
}

export function apiHandler(ctx: ApiContext) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void serve(ctx, req, Buffer.concat(chunks).toString('utf8'))
        .then(({ status, body, route }) => {
          reply(res, status, body);
          // Unmatched paths are not recorded: their keys would come from the client.
          if (route !== undefined) ctx.timings.record(route, performance.now() - t0);
        })
        .catch((err: unknown) => reply(res, 500, errorBody(err)));
    });
  };
}

interface Served {
  status: number;
  body: unknown;
  /** `METHOD pattern` of the route that handled it. */
  route?: string;
}

async function serve(ctx: ApiContext, req: IncomingMessage, text: string): Promise<Served> {
  const path = (req.url ?? '/').split('?')[0] as string;
  const method = req.method ?? 'GET';
  let pathMatched = false;
  for (const [m, pattern, re, handler] of routes) {
    const match = re.exec(path);
    if (!match) continue;
    pathMatched = true;
    if (m !== method) continue;
    const route = `${m} ${pattern}`;
    try {
      const body = text === '' ? undefined : parseJson(text);
      const params = match.slice(1).map((p) => decodeURIComponent(p));
      const result = await handler(ctx, params, body, req);
      if (result === undefined) return { status: 204, body: undefined, route };
      const created = method === 'POST' && (path === '/v1/networks' || path === '/v1/sandboxes');
      return { status: created ? 201 : 200, body: result, route };
    } catch (err) {
      const e = toKnitError(err);
      return { status: httpStatusOf(e.code), body: errorBody(e), route };
    }
  }
  const e = new KnitError(pathMatched ? 'invalid' : 'not-found', `${method} ${path} is not part of the Knit API v${API_VERSION}`);
  return { status: pathMatched ? 405 : 404, body: errorBody(e) };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalid('body', `request body is not JSON: ${messageOf(err)}`);
  }
}

function toKnitError(err: unknown): KnitError {
  if (err instanceof KnitError) return err;
  return new KnitError('internal', messageOf(err), { cause: err });
}

function errorBody(err: unknown): ErrorBody {
  const e = toKnitError(err);
  return { error: { code: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) } };
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}
