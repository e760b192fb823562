// A minimal DNS client and a scriptable upstream server for the DNS tests.
// Both only ever talk to 127.0.0.0/8 addresses the tests choose.
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import packet from 'dns-packet';

export interface AskOptions {
  server: string;
  port: number;
  /** Source address to send from (scoping is by source address). */
  from?: string;
  tcp?: boolean;
  /** Advertise EDNS with this payload size. */
  edns?: number;
  timeoutMs?: number;
}

/** A random 127.x.y.z address, so parallel test files do not share listeners. */
export function loopback(): string {
  const r = (): number => 1 + Math.floor(Math.random() * 250);
  return `127.${r()}.${r()}.${r()}`;
}

export function encodeQuery(name: string, type: packet.RecordType, edns?: number): Buffer {
  return packet.encode({
    type: 'query',
    id: Math.floor(Math.random() * 65536),
    flags: packet.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
    additionals: edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: edns, flags: 0 } as packet.OptAnswer],
  });
}

/** Sends raw bytes and returns the raw reply (undefined on timeout). */
export async function askRaw(msg: Buffer, o: AskOptions): Promise<Buffer | undefined> {
  const timeoutMs = o.timeoutMs ?? 3000;
  if (o.tcp === true) {
    const sock = net.connect({ host: o.server, port: o.port, localAddress: o.from });
    const frame = Buffer.alloc(2 + msg.length);
    frame.writeUInt16BE(msg.length, 0);
    msg.copy(frame, 2);
    return await new Promise<Buffer | undefined>((resolve) => {
      let buf = Buffer.alloc(0);
      const timer = setTimeout(() => {
        sock.destroy();
        resolve(undefined);
      }, timeoutMs);
      sock.on('connect', () => sock.write(frame));
      sock.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          clearTimeout(timer);
          sock.destroy();
          resolve(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        }
      });
      sock.on('error', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
  }
  const sock = dgram.createSocket('udp4');
  sock.bind({ address: o.from ?? '127.0.0.1', port: 0 });
  await once(sock, 'listening');
  try {
    return await new Promise<Buffer | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      sock.on('message', (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      sock.send(msg, o.port, o.server);
    });
  } finally {
    sock.close();
  }
}

export async function ask(name: string, type: packet.RecordType, o: AskOptions): Promise<Reply> {
  const q = encodeQuery(name, type, o.edns);
  const raw = await askRaw(q, o);
  if (raw === undefined) throw new Error(`no reply for ${name} ${type} from ${o.server}:${o.port}`);
  const p = decodeReply(raw);
  if (p.id !== q.readUInt16BE(0)) throw new Error(`reply id ${p.id} does not match query id ${q.readUInt16BE(0)}`);
  return p;
}

/** A decoded reply; dns-packet decodes the RCODE but its types omit it. */
export type Reply = packet.DecodedPacket & { rcode: string };

export function decodeReply(raw: Buffer): Reply {
  return packet.decode(raw) as Reply;
}

/** The answer data of one type (addresses for A/AAAA, names for PTR). */
export function data(p: packet.Packet, type: string): string[] {
  return (p.answers ?? []).filter((a) => a.type === type).map((a) => String((a as packet.StringAnswer).data));
}

export type UpstreamBehaviour =
  | { kind: 'answer'; a: string[] }
  | { kind: 'nxdomain' }
  | { kind: 'servfail' }
  /** UDP replies are truncated (TC, no answers); TCP gives the addresses. */
  | { kind: 'truncate'; a: string[] }
  | { kind: 'silent' };

/** A scriptable upstream resolver on UDP and TCP (same port). */
export class TestUpstream {
  readonly udp = dgram.createSocket('udp4');
  readonly tcp = net.createServer();
  readonly names = new Map<string, UpstreamBehaviour>();
  fallback: UpstreamBehaviour = { kind: 'nxdomain' };
  readonly seen: { name: string; id: number; transport: 'udp' | 'tcp' }[] = [];
  port = 0;
  readonly ip: string;

  constructor(ip: string) {
    this.ip = ip;
  }

  async start(): Promise<this> {
    // Each test picks a random 127.x.y.z, so the UDP port is free on TCP there too.
    this.udp.bind({ address: this.ip, port: 0 });
    await once(this.udp, 'listening');
    this.port = this.udp.address().port;
    this.tcp.listen({ host: this.ip, port: this.port });
    await once(this.tcp, 'listening');
    this.udp.on('message', (m, r) => {
      const out = this.#answer(m, 'udp');
      if (out !== undefined) this.udp.send(out, r.port, r.address);
    });
    this.tcp.on('connection', (c) => {
      let buf = Buffer.alloc(0);
      c.on('error', () => {});
      c.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + m.length);
          const out = this.#answer(m, 'tcp');
          if (out === undefined) continue;
          const f = Buffer.alloc(2 + out.length);
          f.writeUInt16BE(out.length, 0);
          out.copy(f, 2);
          c.write(f);
        }
      });
    });
    return this;
  }

  get spec(): string {
    return `${this.ip}:${this.port}`;
  }

  #answer(m: Buffer, transport: 'udp' | 'tcp'): Buffer | undefined {
    let q: packet.DecodedPacket;
    try {
      q = packet.decode(m);
    } catch {
      return undefined; // the fuzz test relays junk here too
    }
    const question = q.questions?.[0];
    if (question === undefined) return undefined;
    const name = question.name.toLowerCase();
    this.seen.push({ name, id: q.id ?? 0, transport });
    const b = this.names.get(name) ?? this.fallback;
    if (b.kind === 'silent') return undefined;
    const base = { type: 'response' as const, id: q.id, questions: q.questions };
    const RA = 0x80;
    switch (b.kind) {
      case 'nxdomain':
        return packet.encode({ ...base, flags: packet.RECURSION_DESIRED | RA | 3 });
      case 'servfail':
        return packet.encode({ ...base, flags: packet.RECURSION_DESIRED | RA | 2 });
      case 'answer':
        return packet.encode({ ...base, flags: packet.RECURSION_DESIRED | RA, answers: b.a.map((data) => ({ type: 'A', name: question.name, ttl: 60, data })) });
      case 'truncate':
        if (transport === 'udp') return packet.encode({ ...base, flags: packet.RECURSION_DESIRED | RA | packet.TRUNCATED_RESPONSE });
        return packet.encode({ ...base, flags: packet.RECURSION_DESIRED | RA, answers: b.a.map((data) => ({ type: 'A', name: question.name, ttl: 60, data })) });
    }
  }

  async stop(): Promise<void> {
    this.udp.close();
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}
