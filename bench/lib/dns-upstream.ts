// A minimal, fast upstream resolver for bench/dns.ts, run inside a throwaway
// namespace: `dns-upstream.ts IP ADDR`. Every A query gets one answer, ADDR;
// it echoes the question and drops EDNS, so it costs no more than a copy and
// does not limit what it serves (Knit or aardvark-dns relaying to it).
import dgram from 'node:dgram';

const [ip, addr] = process.argv.slice(2);
if (ip === undefined || addr === undefined) throw new Error('usage: dns-upstream.ts IP ADDR');
const rdata = Buffer.from(addr.split('.').map(Number));
// NAME (pointer to the question), TYPE A, CLASS IN, TTL 60, RDLENGTH 4, RDATA.
const answer = Buffer.concat([Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]), rdata]);

const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
sock.on('message', (m, r) => {
  if (m.length < 17 || (m[2]! & 0x80) !== 0) return;
  let i = 12;
  while (i < m.length && m[i] !== 0) i += m[i]! + 1;
  const qend = i + 5;
  if (qend > m.length) return;
  const out = Buffer.allocUnsafe(qend + answer.length);
  m.copy(out, 0, 0, qend);
  out[2] = 0x80 | (m[2]! & 0x01); // QR, RD copied
  out[3] = 0x80; // RA, NOERROR
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(1, 6);
  out.writeUInt32BE(0, 8);
  answer.copy(out, qend);
  sock.send(out, r.port, r.address);
});
sock.bind({ address: ip, port: 53 }, () => process.stdout.write('ready\n'));
