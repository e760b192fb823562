// Kernel test: the DNS server's sockets live inside a network namespace (the
// "gateway" side of a veth pair) while the daemon stays in its own, and a
// sandbox in a second namespace resolves through libc with the resolv.conf
// Knit writes for it. Everything is inside throwaway namespaces.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { rmSync } from 'node:fs';
import { canRunKernelTests, ipIn, makeNetns, uniqueName } from '../helpers/netns.ts';
import { DnsRecords } from '../../src/services/dns/records.ts';
import { DnsServer } from '../../src/services/dns/server.ts';
import { writeResolvConf } from '../../src/services/dns/resolvconf.ts';

const run = promisify(execFile);
const skip = canRunKernelTests() ? false : 'needs root for network namespaces';

// The commands below run asynchronously: the server answers on this process's event loop.
async function inNs(ns: string, cmd: string[]): Promise<string> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, 'timeout', '10', ...cmd], { encoding: 'utf8' });
  return stdout;
}

const records = new DnsRecords();
const server = new DnsServer({ records, upstreams: () => [] , timeoutMs: 500 });
let gwNs = '';
let sbNs = '';
const subnet = `10.${100 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 250)}`;

before(() => {
  if (skip !== false) return;
  const gw = makeNetns();
  const sb = makeNetns();
  gwNs = gw.name;
  sbNs = sb.name;
  const a = uniqueName('kv');
  const b = uniqueName('kv');
  ipIn(gwNs, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', sbNs);
  ipIn(gwNs, 'addr', 'add', `${subnet}.1/24`, 'dev', a);
  ipIn(gwNs, 'addr', 'add', 'fd77::1/64', 'dev', a);
  ipIn(gwNs, 'link', 'set', a, 'up');
  ipIn(sbNs, 'addr', 'add', `${subnet}.2/24`, 'dev', b);
  ipIn(sbNs, 'addr', 'add', 'fd77::2/64', 'dev', b, 'nodad');
  ipIn(sbNs, 'link', 'set', b, 'up');
  records.addEndpoint({ id: 'sb', network: 'n1', names: ['sandbox'], ipv4: `${subnet}.2`, ipv6: 'fd77::2' });
  records.addEndpoint({ id: 'peer', network: 'n1', names: ['peer', 'db'], ipv4: `${subnet}.3`, ipv6: 'fd77::3' });
});
after(async () => {
  await server.close();
  if (sbNs !== '') rmSync(`/etc/netns/${sbNs}`, { recursive: true, force: true });
});

test('listens inside a namespace (port 53, IPv4, and IPv6 while DAD is pending); a sandbox resolves through libc', { skip }, async () => {
  await server.listen({ ip: `${subnet}.1`, port: 53, netnsPath: `/run/netns/${gwNs}`, network: 'n1' });
  // fd77::1 was added moments ago and may still be tentative: FREEBIND lets the bind succeed.
  await server.listen({ ip: 'fd77::1', port: 53, netnsPath: `/run/netns/${gwNs}`, network: 'n1' });
  // The socket is in the gateway namespace, not the daemon's.
  const ss = await inNs(gwNs, ['ss', '-Hlun', 'sport', '=', '53']);
  assert.match(ss, new RegExp(`${subnet.replaceAll('.', '\\.')}\\.1:53`));
  assert.doesNotMatch((await run('ss', ['-Hlun'], { encoding: 'utf8' })).stdout, new RegExp(`${subnet.replaceAll('.', '\\.')}\\.1:53`));

  assert.equal((await inNs(sbNs, ['dig', `@${subnet}.1`, '+short', '+tries=1', 'peer'])).trim(), `${subnet}.3`);
  assert.equal((await inNs(sbNs, ['dig', `@${subnet}.1`, '+short', '+tcp', 'db.n1', 'AAAA'])).trim(), 'fd77::3');

  // Over IPv6 once the gateway address has finished DAD.
  for (let i = 0; i < 50 && ipIn(gwNs, '-6', 'addr', 'show', 'tentative').includes('fd77::1'); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await inNs(sbNs, ['dig', '@fd77::1', '+short', 'peer.n1', 'A'])).trim(), `${subnet}.3`);

  // The sandbox's resolv.conf as Knit writes it; `ip netns exec` bind-mounts it over /etc/resolv.conf.
  writeResolvConf(`/etc/netns/${sbNs}/resolv.conf`, { nameservers: [`${subnet}.1`], search: ['n1'], options: ['timeout:1', 'attempts:1'] });
  const hosts = await inNs(sbNs, ['getent', 'ahostsv4', 'db']);
  assert.match(hosts, new RegExp(`^${subnet.replaceAll('.', '\\.')}\\.3\\s`, 'm'));
});
