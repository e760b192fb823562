// Thousands of random and malformed messages, then the server must still
// answer. Seeded, so a failure can be replayed (the seed is in the test name).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import { DnsRecords } from '../../src/services/dns/records.ts';
import { DnsServer } from '../../src/services/dns/server.ts';
import { ask, data, encodeQuery, loopback, TestUpstream } from './client.ts';

const seed = Number(process.env.KNIT_FUZZ_SEED ?? Date.now() % 1_000_000);
let state = seed || 1;
/** mulberry32: small, seedable. */
function rand(): number {
  state = (state + 0x6d2b79f5) | 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n: number): number => Math.floor(rand() * n);

const seeds: Buffer[] = [
  encodeQuery('alpha', 'A'),
  encodeQuery('alpha.n', 'AAAA', 1232),
  encodeQuery('2.0.9.10.in-addr.arpa', 'PTR'),
  encodeQuery('elsewhere.test', 'MX', 4096),
];

/** One hostile message: random bytes, a mutated query, or a crafted trap. */
function hostile(): Buffer {
  const kind = int(6);
  if (kind === 0) return Buffer.from(Array.from({ length: int(700) }, () => int(256)));
  const base = Buffer.from(seeds[int(seeds.length)]!);
  if (kind === 1) {
    for (let i = 0, n = 1 + int(6); i < n; i++) base[int(base.length)] = int(256);
    return base;
  }
  if (kind === 2) return base.subarray(0, int(base.length));
  if (kind === 3) return Buffer.concat([base, Buffer.from(Array.from({ length: int(200) }, () => int(256)))]);
  const header = Buffer.from(base.subarray(0, 12));
  header[2] = 0x01;
  if (kind === 4) {
    // Compression pointer loops and forward pointers in the question.
    header.writeUInt16BE(1, 4);
    return Buffer.concat([header, Buffer.from([0xc0, 12, 0, 1, 0, 1]), Buffer.from([0xc0, 14 + int(20)])]);
  }
  // Huge section counts over a short body.
  header.writeUInt16BE(int(65536), 4);
  header.writeUInt16BE(int(65536), 6);
  header.writeUInt16BE(int(65536), 10);
  return Buffer.concat([header, base.subarray(12)]);
}

const records = new DnsRecords();
const up = new TestUpstream(loopback());
const server = new DnsServer({ records, upstreams: () => [up.spec], timeoutMs: 500 });
const gw = loopback();
let port = 0;

before(async () => {
  await up.start();
  port = (await server.listen({ ip: gw, port: 0, network: 'n' })).port;
  records.addEndpoint({ id: 'e', network: 'n', names: ['alpha'], ipv4: '10.9.0.2', ipv6: 'fd09::2' });
});
after(async () => {
  await server.close();
  await up.stop();
});

test(`handler: 20000 hostile messages never throw (seed ${seed})`, async () => {
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < 20000; i++) {
    const msg = hostile();
    const r = server.handle(msg, '127.0.0.1', 'n', i % 2 === 0);
    if (r instanceof Promise) pending.push(r);
    else if (r !== undefined) assert.ok(r.length >= 12 && r.readUInt16BE(0) === msg.readUInt16BE(0), 'replies carry the query id');
  }
  await Promise.all(pending);
});

test(`UDP and TCP: 4000 hostile packets, then the server still answers (seed ${seed})`, async () => {
  const sock = dgram.createSocket('udp4');
  sock.bind({ address: loopback(), port: 0 });
  await once(sock, 'listening');
  sock.on('message', () => {});
  for (let i = 0; i < 3000; i++) {
    sock.send(hostile(), port, gw);
    if (i % 200 === 0) await new Promise((r) => setImmediate(r));
  }
  // TCP: hostile frames, then a lying length prefix and an abrupt close.
  const c = net.connect({ host: gw, port });
  c.on('error', () => {});
  c.on('data', () => {});
  await once(c, 'connect');
  for (let i = 0; i < 1000; i++) {
    const m = hostile();
    const f = Buffer.alloc(2 + m.length);
    f.writeUInt16BE(m.length, 0);
    m.copy(f, 2);
    c.write(f);
  }
  c.write(Buffer.from([0xff, 0xff, 1, 2, 3]));
  c.destroy();
  sock.close();
  assert.deepEqual(data(await ask('alpha', 'A', { server: gw, port, from: loopback() }), 'A'), ['10.9.0.2']);
  assert.deepEqual(data(await ask('alpha', 'AAAA', { server: gw, port, from: loopback(), tcp: true }), 'AAAA'), ['fd09::2']);
});
