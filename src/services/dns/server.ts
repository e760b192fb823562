// Knit's embedded DNS server: one UDP socket and one TCP listener per
// network's DNS address. Knit's own names (records.ts) are answered here,
// authoritatively and scoped to the asking sandbox; everything else is relayed
// to the host's resolvers (forward.ts). Input is never trusted: anything that
// is not a well-formed query is answered with FORMERR/NOTIMP or dropped, and
// nothing a client sends can throw out of a handler.
import dgram from 'node:dgram';
import net from 'node:net';
import packet from 'dns-packet';
import { canonicalIP, familyOf } from '../../lib/ip.ts';
import { conflict, KnitError, messageOf } from '../../lib/errors.ts';
import { withNetns as kernelWithNetns } from '../../kernel/netns.ts';
import { reverseNameToIP, type DnsRecords } from './records.ts';
import { Forwarder, parseUpstream } from './forward.ts';
import { bindError, bindSocket, boundPort } from '../../kernel/socket.ts';
import { close as closeFd } from '../../kernel/libc.ts';
import {
  buildReply,
  CLASS_ANY,
  CLASS_IN,
  CLASSIC_UDP_SIZE,
  hasRecords,
  encodeName,
  FORMERR,
  headerOnly,
  isResponse,
  NOERROR,
  NOTIMP,
  opcodeOf,
  questionCount,
  readQuestion,
  REFUSED,
  SERVFAIL,
  BADVERS_HIGH,
  truncateReply,
  TYPE_A,
  TYPE_AAAA,
  TYPE_ANY,
  TYPE_PTR,
  type Answer,
  type Edns,
  type Question,
} from './wire.ts';

export type { DnsEndpoint } from './records.ts';

export type WithNetns = <T>(path: string, fn: () => T) => T;

/**
 * TTL of Knit's own answers. Docker answers with 600 s and aardvark-dns with
 * 60 s; both are long enough for a caching client (nscd, systemd-resolved or
 * dnsmasq inside a container) to keep using a removed sandbox's address. Knit
 * promises that a detached name is gone when detach returns, so it stays
 * short; it is not 0 because some stubs treat TTL 0 as "do not use twice" and
 * re-ask for every connection of a burst.
 */
export const DEFAULT_TTL = 5;
/** Idle TCP connections close after this long (aardvark-dns uses 3 s too). */
const TCP_IDLE_MS = 3000;
const TCP_MAX_CONNECTIONS = 256;
/** Queries one TCP connection may have in flight before Knit stops reading it. */
const TCP_MAX_INFLIGHT = 32;
const MAX_TCP_MESSAGE = 65535;
const MAX_UDP_REPLY = 4096;

export interface DnsServerOptions {
  records: DnsRecords;
  /** Upstream resolvers, asked per query so changes apply at once ("ip", "ip:port", "[v6]:port"). */
  upstreams: () => string[];
  /** Deadline for relayed queries; a silent upstream yields SERVFAIL after it (default 2000 ms). */
  timeoutMs?: number;
  ttl?: number;
  log?: (msg: string) => void;
  /** Enters a netns for a synchronous window; defaults to src/kernel/netns.ts. */
  withNetns?: WithNetns;
}

export interface ListenAddress {
  ip: string;
  /** Default 53; 0 picks a free port (the same for UDP and TCP), returned by listen. */
  port?: number;
  /** Create the sockets inside this network namespace (e.g. /run/netns/NAME). */
  netnsPath?: string;
  /** The network this address serves: clients Knit does not know see its names. */
  network?: string;
}

type Reply = Buffer | undefined | Promise<Buffer | undefined>;

interface Listener {
  ip: string;
  port: number;
  udp: dgram.Socket;
  tcp: net.Server;
  conns: Set<net.Socket>;
}

export class DnsServer {
  readonly #records: DnsRecords;
  readonly #forwarder: Forwarder;
  readonly #ttl: number;
  readonly #log: (msg: string) => void;
  readonly #withNetns: WithNetns;
  readonly #listeners = new Map<string, Listener>();

  constructor(opts: DnsServerOptions) {
    this.#records = opts.records;
    this.#ttl = opts.ttl ?? DEFAULT_TTL;
    this.#log = opts.log ?? (() => {});
    this.#withNetns = opts.withNetns ?? kernelWithNetns;
    this.#forwarder = new Forwarder({
      // Never relay to ourselves: a host resolv.conf naming a Knit gateway would loop.
      upstreams: () => opts.upstreams().filter((spec) => !this.#isSelf(spec)),
      timeoutMs: opts.timeoutMs ?? 2000,
      log: this.#log,
    });
  }

  /** Starts UDP and TCP on ip:port; resolves with the port actually bound. */
  async listen(addr: ListenAddress): Promise<{ ip: string; port: number }> {
    const ip = canonicalIP(addr.ip, 'ip');
    if (this.#listeners.has(ip)) throw conflict(`DNS server already listening on ${ip}`, 'ip');
    const fds = addr.netnsPath === undefined ? bindPair(ip, addr.port ?? 53) : this.#withNetns(addr.netnsPath, () => bindPair(ip, addr.port ?? 53));
    const network = addr.network?.toLowerCase();
    const family = familyOf(ip) === 6 ? 6 : 4;
    const udp = dgram.createSocket({ type: family === 6 ? 'udp6' : 'udp4', recvBufferSize: 4 << 20, lookup: literalLookup(family) });
    const tcp = net.createServer({ noDelay: true });
    const l: Listener = { ip, port: fds.port, udp, tcp, conns: new Set() };
    udp.on('message', (msg, rinfo) => this.#onDatagram(l, network, msg, rinfo));
    udp.on('error', (err) => this.#log(`dns ${ip}: udp: ${err.message}`));
    tcp.maxConnections = TCP_MAX_CONNECTIONS;
    tcp.on('connection', (c) => this.#onConnection(l, network, c));
    tcp.on('error', (err) => this.#log(`dns ${ip}: tcp: ${err.message}`));
    try {
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ fd: fds.udp }, () => {
          udp.off('error', reject);
          resolve();
        });
      });
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ fd: fds.tcp, backlog: 128 }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      tcp.close();
      throw new KnitError('internal', `DNS server on ${ip}:${fds.port}: ${messageOf(err)}`, { cause: err });
    }
    this.#listeners.set(ip, l);
    this.#log(`dns: listening on ${ip}:${fds.port}${addr.netnsPath === undefined ? '' : ` in ${addr.netnsPath}`}`);
    return { ip, port: fds.port };
  }

  async unlisten(ip: string): Promise<void> {
    const key = canonicalIP(ip, 'ip');
    const l = this.#listeners.get(key);
    if (l === undefined) return;
    this.#listeners.delete(key);
    for (const c of l.conns) c.destroy();
    await Promise.all([
      new Promise<void>((r) => l.udp.close(() => r())),
      new Promise<void>((r) => l.tcp.close(() => r())),
    ]);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#listeners.keys()].map((ip) => this.unlisten(ip)));
    this.#forwarder.close();
  }

  #isSelf(spec: string): boolean {
    const u = parseUpstream(spec);
    if (u === undefined) return false;
    let ip: string;
    try {
      ip = canonicalIP(u.ip.split('%')[0] ?? u.ip);
    } catch {
      return false;
    }
    return this.#listeners.get(ip)?.port === u.port;
  }

  listening(): { ip: string; port: number }[] {
    return [...this.#listeners.values()].map((l) => ({ ip: l.ip, port: l.port }));
  }

  #onDatagram(l: Listener, network: string | undefined, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    let reply: Reply;
    try {
      reply = this.handle(msg, rinfo.address, network, false);
    } catch (err) {
      this.#log(`dns ${l.ip}: query from ${rinfo.address}: ${messageOf(err)}`);
      return;
    }
    if (reply === undefined) return;
    if (!(reply instanceof Promise)) {
      sendTo(l, reply, rinfo);
      return;
    }
    reply.then(
      (r) => {
        if (r !== undefined) sendTo(l, r, rinfo);
      },
      (err: unknown) => this.#log(`dns ${l.ip}: relay for ${rinfo.address}: ${messageOf(err)}`),
    );
  }

  #onConnection(l: Listener, network: string | undefined, c: net.Socket): void {
    const client = c.remoteAddress;
    if (client === undefined) {
      c.destroy();
      return;
    }
    l.conns.add(c);
    c.setTimeout(TCP_IDLE_MS, () => c.destroy());
    c.on('error', () => c.destroy());
    c.on('close', () => l.conns.delete(c));
    let buf: Buffer = Buffer.alloc(0);
    let inflight = 0;
    const write = (r: Buffer | undefined): void => {
      if (r === undefined || c.destroyed) return;
      const frame = Buffer.allocUnsafe(2 + r.length);
      frame.writeUInt16BE(r.length, 0);
      r.copy(frame, 2);
      c.write(frame);
    };
    const settle = (): void => {
      inflight -= 1;
      if (inflight < TCP_MAX_INFLIGHT && c.isPaused()) c.resume();
    };
    c.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        let reply: Reply;
        try {
          reply = this.handle(msg, client, network, true);
        } catch (err) {
          this.#log(`dns ${l.ip}: tcp query from ${client}: ${messageOf(err)}`);
          continue;
        }
        if (!(reply instanceof Promise)) {
          write(reply);
          continue;
        }
        inflight += 1;
        if (inflight >= TCP_MAX_INFLIGHT) c.pause();
        reply.then(
          (r) => {
            settle();
            write(r);
          },
          (err: unknown) => {
            settle();
            this.#log(`dns ${l.ip}: tcp relay for ${client}: ${messageOf(err)}`);
          },
        );
      }
      if (buf.length > 2 + MAX_TCP_MESSAGE) c.destroy();
    });
  }

  /**
   * Answers one message from `client`, asked at a listener serving `network`.
   * Synchronous for Knit's own names and errors (no allocation of promises on
   * the hot path); a promise when the query is relayed; undefined to drop.
   */
  handle(msg: Buffer, client: string, network: string | undefined, tcp: boolean): Reply {
    // Too short to carry an ID, or a response (answering those invites loops): drop.
    if (msg.length < 12 || isResponse(msg)) return undefined;
    if (opcodeOf(msg) !== 0) return headerOnly(msg, NOTIMP);
    if (questionCount(msg) !== 1) return headerOnly(msg, FORMERR);
    const q = readQuestion(msg);
    if (q === undefined) return headerOnly(msg, FORMERR);
    let edns: Edns | undefined;
    if (hasRecords(msg)) {
      const parsed = readEdns(msg);
      if (parsed === 'bad') return headerOnly(msg, FORMERR);
      edns = parsed;
    }
    const udpLimit = edns === undefined ? CLASSIC_UDP_SIZE : edns.size;
    if (!tcp && msg.length > udpLimit) return headerOnly(msg, FORMERR);
    // Larger UDP replies would fragment on real links; past this, TC sends the client to TCP.
    const limit = tcp ? MAX_TCP_MESSAGE : Math.min(udpLimit, MAX_UDP_REPLY);
    if (edns !== undefined && edns.version !== 0) {
      return buildReply(msg, q, { rcode: NOERROR, answers: [], limit, edns, extendedRcode: BADVERS_HIGH });
    }
    const answers = this.#local(q, client, network);
    if (answers !== undefined) return buildReply(msg, q, { rcode: NOERROR, answers, ttl: this.#ttl, limit, edns });
    return this.#relay(msg, q, limit, edns, client);
  }

  /** Knit's own answer (possibly NODATA: an empty list), or undefined when the name is not Knit's. */
  #local(q: Question, client: string, network: string | undefined): readonly Answer[] | undefined {
    if (!q.plain || (q.qclass !== CLASS_IN && q.qclass !== CLASS_ANY)) return undefined;
    if (q.qtype === TYPE_PTR) {
      const ip = reverseNameToIP(q.name);
      if (ip === undefined) return undefined;
      const names = this.#records.reverse(client, network, ip);
      return names?.map((name) => ({ type: TYPE_PTR, rdata: encodeName(name) }));
    }
    const hit = this.#records.lookup(client, network, q.name);
    if (hit === undefined) return undefined;
    // The hit's own answer lists: an A or AAAA query for a known name allocates none.
    switch (q.qtype) {
      case TYPE_A:
        return hit.a;
      case TYPE_AAAA:
        return hit.aaaa;
      case TYPE_ANY:
        return [...hit.a, ...hit.aaaa];
      default:
        return NODATA;
    }
  }

  async #relay(msg: Buffer, q: Question, limit: number, edns: Edns | undefined, client: string): Promise<Buffer> {
    const r = await this.#forwarder.forward(msg, q.end, limit, client);
    if (r.ok) return r.reply.length > limit ? truncateReply(r.reply, msg, q) : r.reply;
    // REFUSED for overload makes stubs try their next server at once; SERVFAIL otherwise.
    const rcode = r.reason === 'busy' ? REFUSED : SERVFAIL;
    return buildReply(msg, q, { rcode, answers: [], limit, edns, authoritative: false });
  }
}

const NODATA: readonly Answer[] = [];

/**
 * Sends without a completion callback: dgram then skips a request object and
 * a tick per reply, and a lost reply is what UDP promises anyway (the client
 * retries).
 */
function sendTo(l: Listener, reply: Buffer, rinfo: dgram.RemoteInfo): void {
  try {
    l.udp.send(reply, rinfo.port, rinfo.address);
  } catch {
    // The listener closed while a relay was in flight.
  }
}

/**
 * dgram passes every send's address through dns.lookup, which answers even an
 * IP literal on the next tick; a reply's address is always the literal the
 * query came from, so this answers at once.
 */
function literalLookup(family: 4 | 6): NonNullable<dgram.SocketOptions['lookup']> {
  const lookup = (address: string, _opts: unknown, cb: (err: null, address: string, family: number) => void): void => cb(null, address, family);
  return lookup as unknown as NonNullable<dgram.SocketOptions['lookup']>;
}

/** UDP and TCP fds on the same ip:port; port 0 takes UDP's pick for TCP too. */
function bindPair(ip: string, port: number): { udp: number; tcp: number; port: number } {
  for (let attempt = 0; ; attempt++) {
    let udp: number;
    try {
      udp = bindSocket('udp', ip, port, { freebind: true });
    } catch (err) {
      throw bindError(err);
    }
    const actual = port === 0 ? boundPort(udp) : port;
    try {
      const tcp = bindSocket('tcp', ip, actual, { freebind: true });
      return { udp, tcp, port: actual };
    } catch (err) {
      closeFd(udp);
      // A random UDP port may be taken on TCP; pick again. A fixed port is the caller's to fix.
      if (port !== 0 || attempt >= 8) throw bindError(err);
    }
  }
}

/** The query's EDNS parameters via a full decode; 'bad' when the message does not parse. */
function readEdns(msg: Buffer): Edns | undefined | 'bad' {
  let decoded: packet.Packet;
  try {
    decoded = packet.decode(msg);
  } catch {
    return 'bad';
  }
  let edns: Edns | undefined;
  for (const rr of decoded.additionals ?? []) {
    if (rr.type !== 'OPT') continue;
    if (edns !== undefined) return 'bad'; // RFC 6891: more than one OPT is FORMERR
    const opt = rr as packet.OptAnswer;
    edns = {
      size: Math.max(CLASSIC_UDP_SIZE, opt.udpPayloadSize ?? CLASSIC_UDP_SIZE),
      version: opt.ednsVersion ?? 0,
      dnssecOk: opt.flag_do ?? false,
    };
  }
  return edns;
}
