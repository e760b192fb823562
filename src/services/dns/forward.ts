// Relays queries Knit does not own to the host's resolvers. The query bytes go
// upstream unchanged except for a fresh random ID (so a client cannot pick the
// ID another client's reply will match); the reply comes back with the
// client's ID restored. UDP first; a truncated reply is fetched again over TCP.
// Upstreams are tried in order, the next one joining in when the previous has
// been silent for its share of the deadline (the first answer wins).
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import { canonicalIP, familyOf } from '../../lib/ip.ts';
import { HEADER, isTruncated, sameQuestion } from './wire.ts';

export interface Upstream {
  ip: string;
  port: number;
}

export type ForwardResult =
  | { ok: true; reply: Buffer; via: 'udp' | 'tcp' }
  | { ok: false; reason: 'timeout' | 'no-upstream' | 'busy' };

export interface ForwarderOptions {
  /** Called for every query, so resolver changes apply at once: "ip", "ip:port", "[v6]:port". */
  upstreams: () => string[];
  /** Deadline for the whole relay, all upstreams and TCP included (default 2000 ms). */
  timeoutMs?: number;
  /** Queries in flight at once (default 4096); beyond it, queries fail as 'busy'. */
  maxPending?: number;
  /** Queries in flight per client address (default 256), so one client cannot starve the rest. */
  maxPerClient?: number;
  log?: (msg: string) => void;
}

/** Parses "ip", "ip:port", "[v6]:port" or a bare v6 address; port defaults to 53. */
export function parseUpstream(spec: string): Upstream | undefined {
  const s = spec.trim();
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket !== null) return withPort(bracket[1]!, bracket[2]);
  if (familyOf(s.split('%')[0] ?? '') !== undefined) return { ip: s, port: 53 };
  const colon = s.lastIndexOf(':');
  if (colon > 0 && familyOf(s.slice(0, colon)) === 4) return withPort(s.slice(0, colon), s.slice(colon + 1));
  return undefined;
}

function withPort(ip: string, port: string | undefined): Upstream | undefined {
  if (familyOf(ip.split('%')[0] ?? '') === undefined) return undefined;
  const p = port === undefined ? 53 : Number(port);
  if (!Number.isInteger(p) || p < 1 || p > 65535) return undefined;
  return { ip, port: p };
}

interface Attempt {
  upstream: Upstream;
  request: Request;
}

interface Request {
  query: Buffer;
  /** End of the question section, for matching replies. */
  qend: number;
  clientId: number;
  limit: number;
  client: string;
  ids: number[];
  timers: NodeJS.Timeout[];
  tcp: net.Socket[];
  done: boolean;
  /** A truncated UDP reply, used if the TCP retry cannot finish in time. */
  truncated: Buffer | undefined;
  resolve: (r: ForwardResult) => void;
}

export class Forwarder {
  readonly #upstreams: () => string[];
  readonly #timeoutMs: number;
  readonly #maxPending: number;
  readonly #maxPerClient: number;
  readonly #log: (msg: string) => void;
  readonly #pending = new Map<number, Attempt>();
  readonly #perClient = new Map<string, number>();
  #requests = 0;
  #udp4: dgram.Socket | undefined;
  #udp6: dgram.Socket | undefined;
  #closed = false;

  constructor(opts: ForwarderOptions) {
    this.#upstreams = opts.upstreams;
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#maxPending = Math.min(opts.maxPending ?? 4096, 32768);
    this.#maxPerClient = opts.maxPerClient ?? 256;
    this.#log = opts.log ?? (() => {});
  }

  get inFlight(): number {
    return this.#requests;
  }

  /**
   * Relays `query` (a well-formed query whose question ends at `qend`).
   * `limit` is the largest reply the client can take: a TCP-fetched reply
   * larger than that is not used, and the truncated UDP reply stands.
   */
  forward(query: Buffer, qend: number, limit: number, client: string): Promise<ForwardResult> {
    if (this.#closed) return Promise.resolve({ ok: false, reason: 'no-upstream' });
    const upstreams: Upstream[] = [];
    for (const spec of this.#upstreams()) {
      const u = parseUpstream(spec);
      if (u !== undefined) upstreams.push(u);
    }
    if (upstreams.length === 0) return Promise.resolve({ ok: false, reason: 'no-upstream' });
    const mine = this.#perClient.get(client) ?? 0;
    if (this.#requests >= this.#maxPending || mine >= this.#maxPerClient) {
      return Promise.resolve({ ok: false, reason: 'busy' });
    }
    this.#requests += 1;
    this.#perClient.set(client, mine + 1);

    return new Promise<ForwardResult>((resolve) => {
      const req: Request = {
        query,
        qend,
        clientId: query.readUInt16BE(0),
        limit,
        client,
        ids: [],
        timers: [],
        tcp: [],
        done: false,
        truncated: undefined,
        resolve,
      };
      const expire = (): void => {
        const t = req.truncated;
        this.#finish(req, t === undefined ? { ok: false, reason: 'timeout' } : { ok: true, reply: t, via: 'udp' });
      };
      req.timers.push(setTimeout(expire, this.#timeoutMs));
      const share = this.#timeoutMs / upstreams.length;
      let next = 0;
      const launch = (): void => {
        if (req.done || next >= upstreams.length) return;
        this.#sendUdp(req, upstreams[next]!);
        next += 1;
        if (next < upstreams.length) req.timers.push(setTimeout(launch, share));
      };
      launch();
    });
  }

  #socket(family: 4 | 6): dgram.Socket {
    const existing = family === 4 ? this.#udp4 : this.#udp6;
    if (existing !== undefined) return existing;
    const sock = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    sock.on('message', (msg, rinfo) => this.#onReply(msg, rinfo.address, rinfo.port));
    sock.on('error', (err) => this.#log(`dns forwarder: udp${family} socket: ${err.message}`));
    sock.bind(0);
    sock.unref();
    if (family === 4) this.#udp4 = sock;
    else this.#udp6 = sock;
    return sock;
  }

  #freshId(): number {
    for (;;) {
      const id = randomInt(0, 0x10000);
      if (!this.#pending.has(id)) return id;
    }
  }

  #sendUdp(req: Request, upstream: Upstream): void {
    const family = familyOf(upstream.ip.split('%')[0] ?? '') ?? 4;
    const id = this.#freshId();
    const msg = Buffer.from(req.query);
    msg.writeUInt16BE(id, 0);
    this.#pending.set(id, { upstream, request: req });
    req.ids.push(id);
    this.#socket(family).send(msg, upstream.port, upstream.ip, (err) => {
      // Unreachable upstreams fail quietly; the deadline or another upstream answers.
      if (err !== null) this.#log(`dns forwarder: send to ${upstream.ip}:${upstream.port}: ${err.message}`);
    });
  }

  #onReply(msg: Buffer, ip: string, port: number): void {
    if (msg.length < HEADER) return;
    const attempt = this.#pending.get(msg.readUInt16BE(0));
    if (attempt === undefined) return;
    const { upstream, request: req } = attempt;
    // Only the upstream asked may answer, and only for the question asked.
    if (port !== upstream.port || !sameAddress(ip, upstream.ip)) return;
    if (!sameQuestion(msg, req.query, req.qend)) return;
    if (isTruncated(msg)) {
      this.#retryTcp(req, upstream, msg);
      return;
    }
    this.#finish(req, { ok: true, reply: msg, via: 'udp' });
  }

  /** Fetches the full reply over TCP; keeps the truncated one if TCP fails or the full one is too big. */
  #retryTcp(req: Request, upstream: Upstream, truncated: Buffer): void {
    if (req.done) return;
    req.truncated ??= truncated;
    const id = this.#freshId();
    const body = Buffer.from(req.query);
    body.writeUInt16BE(id, 0);
    const frame = Buffer.allocUnsafe(2 + body.length);
    frame.writeUInt16BE(body.length, 0);
    body.copy(frame, 2);
    const sock = net.connect({ host: upstream.ip.split('%')[0], port: upstream.port });
    req.tcp.push(sock);
    let buf = Buffer.alloc(0);
    const fallback = (): void => this.#finish(req, { ok: true, reply: truncated, via: 'udp' });
    sock.on('connect', () => sock.write(frame));
    sock.on('data', (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      const reply = buf.subarray(2, 2 + len);
      sock.destroy();
      if (len < HEADER || reply.readUInt16BE(0) !== id || !sameQuestion(reply, req.query, req.qend)) fallback();
      else if (reply.length > req.limit) fallback();
      else this.#finish(req, { ok: true, reply, via: 'tcp' });
    });
    sock.on('error', (err) => {
      this.#log(`dns forwarder: tcp to ${upstream.ip}:${upstream.port}: ${err.message}`);
      fallback();
    });
    sock.on('end', fallback);
  }

  #finish(req: Request, result: ForwardResult): void {
    if (req.done) return;
    req.done = true;
    for (const id of req.ids) this.#pending.delete(id);
    for (const t of req.timers) clearTimeout(t);
    for (const s of req.tcp) s.destroy();
    this.#requests -= 1;
    const n = (this.#perClient.get(req.client) ?? 1) - 1;
    if (n <= 0) this.#perClient.delete(req.client);
    else this.#perClient.set(req.client, n);
    if (result.ok) {
      const reply = Buffer.from(result.reply);
      reply.writeUInt16BE(req.clientId, 0);
      req.resolve({ ok: true, reply, via: result.via });
    } else {
      req.resolve(result);
    }
  }

  /** Fails everything in flight and releases the sockets. */
  close(): void {
    this.#closed = true;
    const reqs = new Set<Request>();
    for (const a of this.#pending.values()) reqs.add(a.request);
    for (const r of reqs) this.#finish(r, { ok: false, reason: 'no-upstream' });
    this.#udp4?.close();
    this.#udp6?.close();
    this.#udp4 = undefined;
    this.#udp6 = undefined;
  }
}

function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const bb = b.split('%')[0] ?? b;
  const aa = a.split('%')[0] ?? a;
  if (aa === bb) return true;
  // Node reports replies in canonical form; the configured upstream may not be.
  try {
    return canonicalIP(aa) === canonicalIP(bb);
  } catch {
    return false;
  }
}
