// Knit's own names over real UDP/TCP sockets on 127.0.0.0/8. Sandboxes are
// played by loopback source addresses, so scoping by source works as in a netns.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import packet from 'dns-packet';
import { DnsRecords } from '../../src/services/dns/records.ts';
import { DnsServer } from '../../src/services/dns/server.ts';
import { ask, askRaw, data, decodeReply, encodeQuery, loopback } from './client.ts';

const records = new DnsRecords();
const server = new DnsServer({ records, upstreams: () => [] , timeoutMs: 500 });
const gw1 = loopback();
const gw2 = loopback();
let port1 = 0;
let port2 = 0;
// Sandbox addresses (also their query source addresses).
const a = loopback(); // on n1
const b = loopback(); // on n2
const c1 = loopback(); // c on n1
const c2 = loopback(); // c on n2
const host = loopback(); // unknown to Knit

before(async () => {
  port1 = (await server.listen({ ip: gw1, port: 0, network: 'n1' })).port;
  port2 = (await server.listen({ ip: gw2, port: 0, network: 'n2' })).port;
  records.addEndpoint({ id: 'a@n1', sandbox: 'a', network: 'n1', names: ['alpha', 'alpha-host', 'web'], ipv4: a, ipv6: 'fd01::a' });
  records.addEndpoint({ id: 'b@n2', sandbox: 'b', network: 'n2', names: ['bravo', 'bravo-host'], ipv4: b });
  records.addEndpoint({ id: 'c@n1', sandbox: 'c', network: 'n1', names: ['charlie'], ipv4: c1 });
  records.addEndpoint({ id: 'c@n2', sandbox: 'c', network: 'n2', names: ['charlie'], ipv4: c2 });
});
after(() => server.close());

const on1 = (from: string, extra: object = {}) => ({ server: gw1, port: port1, from, ...extra });
const on2 = (from: string, extra: object = {}) => ({ server: gw2, port: port2, from, ...extra });

test('sandbox name, hostname, alias and NAME.NETWORK resolve (A, case-insensitive, trailing dot)', async () => {
  for (const name of ['alpha', 'ALPHA-host', 'web', 'alpha.n1', 'Web.N1.']) {
    const r = await ask(name, 'A', on1(c1));
    assert.equal(r.rcode, 'NOERROR', name);
    assert.ok(r.flag_aa, `${name} answered authoritatively`);
    assert.deepEqual(data(r, 'A'), [a], name);
    assert.equal((r.answers?.[0] as packet.StringAnswer | undefined)?.ttl, 5);
  }
});

test('AAAA on a dual-stack endpoint; NODATA for a missing family or other type', async () => {
  assert.deepEqual(data(await ask('alpha', 'AAAA', on1(c1)), 'AAAA'), ['fd01::a']);
  for (const [name, type] of [['charlie', 'AAAA'], ['alpha', 'MX'], ['alpha', 'TXT']] as const) {
    const r = await ask(name, type, on1(a));
    assert.equal(r.rcode, 'NOERROR', `${name} ${type}`);
    assert.equal(r.answers?.length, 0, `${name} ${type}`);
  }
});

test('PTR for IPv4 and IPv6 addresses names NAME.NETWORK', async () => {
  const rev4 = `${a.split('.').reverse().join('.')}.in-addr.arpa`;
  assert.deepEqual(data(await ask(rev4, 'PTR', on1(c1)), 'PTR'), ['alpha.n1', 'alpha-host.n1', 'web.n1']);
  const rev6 = `a.${'0.'.repeat(27)}1.0.d.f.ip6.arpa`;
  assert.deepEqual(data(await ask(rev6, 'PTR', on1(c1)), 'PTR'), ['alpha.n1', 'alpha-host.n1', 'web.n1']);
});

test('scoping: a sandbox on one network does not see the other; one on both sees both', async () => {
  // a (n1 only) cannot see bravo: not Knit's for a, so relayed; no upstream → SERVFAIL, no address.
  const hidden = await ask('bravo', 'A', on1(a));
  assert.deepEqual(data(hidden, 'A'), []);
  assert.notEqual(hidden.rcode, 'NOERROR');
  const hiddenPtr = await ask(`${b.split('.').reverse().join('.')}.in-addr.arpa`, 'PTR', on1(a));
  assert.deepEqual(data(hiddenPtr, 'PTR'), []);
  // c (n1 and n2) sees both, asking either gateway.
  assert.deepEqual(data(await ask('bravo', 'A', on1(c1)), 'A'), [b]);
  assert.deepEqual(data(await ask('alpha', 'A', on2(c2)), 'A'), [a]);
  // b sees charlie only by its n2 address.
  assert.deepEqual(data(await ask('charlie', 'A', on2(b)), 'A'), [c2]);
  // An unknown source (the host) sees the names of the network it asked.
  assert.deepEqual(data(await ask('bravo.n2', 'A', on2(host)), 'A'), [b]);
  assert.deepEqual(data(await ask('bravo', 'A', on1(host)), 'A'), []);
});

test('alias round robin: three sandboxes, all addresses, order rotating', async () => {
  const ips = [loopback(), loopback(), loopback()];
  ips.forEach((ip, i) => records.addEndpoint({ id: `rr${i}`, network: 'n1', names: [`rr${i}`, 'pool'], ipv4: ip }));
  try {
    const firsts = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const got = data(await ask('pool', 'A', on1(a)), 'A');
      assert.deepEqual([...got].sort(), [...ips].sort());
      firsts.add(got[0]!);
    }
    assert.equal(firsts.size, 3, 'each of the three addresses came first once');
  } finally {
    for (let i = 0; i < 3; i++) records.removeEndpoint(`rr${i}`);
  }
});

test('attach, query, detach, query: the name appears and disappears at once', async () => {
  const ip = loopback();
  assert.deepEqual(data(await ask('late', 'A', on1(a)), 'A'), []);
  records.addEndpoint({ id: 'late', network: 'n1', names: ['late'], ipv4: ip });
  assert.deepEqual(data(await ask('late', 'A', on1(a)), 'A'), [ip]);
  records.removeEndpoint('late');
  const gone = await ask('late', 'A', on1(a));
  assert.deepEqual(data(gone, 'A'), []);
});

test('TCP queries, pipelined on one connection too', async () => {
  assert.deepEqual(data(await ask('alpha', 'A', on1(c1, { tcp: true })), 'A'), [a]);
  const net = await import('node:net');
  const sock = net.connect({ host: gw1, port: port1 });
  const ids = [11, 22, 33];
  const frames = ids.map((id) => {
    const q = encodeQuery('alpha', 'A');
    q.writeUInt16BE(id, 0);
    const f = Buffer.alloc(q.length + 2);
    f.writeUInt16BE(q.length, 0);
    q.copy(f, 2);
    return f;
  });
  const got = await new Promise<number[]>((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const seen: number[] = [];
    sock.on('error', reject);
    // One write split mid-frame, to exercise reassembly.
    const all = Buffer.concat(frames);
    sock.on('connect', () => {
      sock.write(all.subarray(0, 7));
      setImmediate(() => sock.write(all.subarray(7)));
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
        seen.push(packet.decode(m).id ?? -1);
        buf = buf.subarray(2 + m.length);
      }
      if (seen.length === 3) resolve(seen);
    });
  });
  sock.destroy();
  assert.deepEqual(got.sort(), ids);
});

test('EDNS: the reply carries OPT; version 1 gets BADVERS', async () => {
  const r = await ask('alpha', 'A', on1(c1, { edns: 4096 }));
  assert.deepEqual(data(r, 'A'), [a]);
  assert.equal(r.additionals?.filter((x) => x.type === 'OPT').length, 1);
  const q = packet.encode({
    type: 'query', id: 7, flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name: 'alpha', class: 'IN' }],
    additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, ednsVersion: 1, flags: 0 } as packet.OptAnswer],
  });
  const raw = await askRaw(q, on1(c1));
  assert.ok(raw);
  const p = packet.decode(raw);
  const opt = p.additionals?.find((x) => x.type === 'OPT') as packet.OptAnswer | undefined;
  assert.equal(opt?.extendedRcode, 1, 'BADVERS is extended rcode 16 = OPT high bits 1, header 0');
  assert.equal(p.answers?.length, 0);
});

test('many addresses: UDP without EDNS truncates (TC), TCP and EDNS get them all', async () => {
  const ips: string[] = [];
  for (let i = 0; i < 40; i++) {
    const ip = loopback();
    ips.push(ip);
    records.addEndpoint({ id: `big${i}`, network: 'n1', names: [`big${i}`, 'crowd'], ipv4: ip });
  }
  try {
    const udp = await ask('crowd', 'A', on1(a));
    assert.ok(udp.flag_tc, 'TC set');
    assert.ok(data(udp, 'A').length < 40);
    const tcp = await ask('crowd', 'A', on1(a, { tcp: true }));
    assert.equal(tcp.flag_tc, false);
    assert.deepEqual(data(tcp, 'A').sort(), [...new Set(ips)].sort());
    const edns = await ask('crowd', 'A', on1(a, { edns: 1232 }));
    assert.equal(data(edns, 'A').length, new Set(ips).size);
  } finally {
    for (let i = 0; i < 40; i++) records.removeEndpoint(`big${i}`);
  }
});

test('malformed, unknown opcode, several questions, responses: answered with an error or dropped', async () => {
  const good = encodeQuery('alpha', 'A');
  // Opcode 2 (STATUS) → NOTIMP.
  const status = Buffer.from(good);
  status[2] = (status[2]! & 0x87) | (2 << 3);
  assert.equal(decodeReply((await askRaw(status, on1(a)))!).rcode, 'NOTIMP');
  // Two questions → FORMERR.
  const two = packet.encode({ type: 'query', id: 9, questions: [{ type: 'A', name: 'alpha' }, { type: 'A', name: 'web' }] });
  assert.equal(decodeReply((await askRaw(two, on1(a)))!).rcode, 'FORMERR');
  // Question cut short → FORMERR.
  assert.equal(decodeReply((await askRaw(good.subarray(0, good.length - 3), on1(a)))!).rcode, 'FORMERR');
  // Over 512 bytes without EDNS → FORMERR.
  const fat = Buffer.concat([good, Buffer.alloc(600)]);
  fat.writeUInt16BE(0, 10);
  assert.equal(decodeReply((await askRaw(fat, on1(a)))!).rcode, 'FORMERR');
  // A response, and a runt: dropped (no reply within a short wait).
  const resp = Buffer.from(good);
  resp[2] = resp[2]! | 0x80;
  assert.equal(await askRaw(resp, on1(a, { timeoutMs: 300 })), undefined);
  assert.equal(await askRaw(Buffer.from([1, 2, 3]), on1(a, { timeoutMs: 300 })), undefined);
  // Still answering.
  assert.deepEqual(data(await ask('alpha', 'A', on1(c1)), 'A'), [a]);
});

test('unlisten stops one address; the other keeps answering', async () => {
  const gw3 = loopback();
  const { port } = await server.listen({ ip: gw3, port: 0, network: 'n1' });
  assert.deepEqual(data(await ask('alpha', 'A', { server: gw3, port, from: c1 }), 'A'), [a]);
  await assert.rejects(server.listen({ ip: gw3, port: 0 }), /already listening/);
  await server.unlisten(gw3);
  assert.equal(await askRaw(encodeQuery('alpha', 'A'), { server: gw3, port, from: c1, timeoutMs: 300 }), undefined);
  assert.deepEqual(data(await ask('alpha', 'A', on1(c1)), 'A'), [a]);
});
