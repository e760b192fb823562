// The knit plugin's ADD result names Knit's DNS server (issue 5): the gateway
// it listens on, the network as search domain, the config's own values after
// them; a container asks that server and finds its peers. A network with DNS
// off names no Knit server.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canRunKernelTests, makeNetns, removeNetns, sh } from '../helpers/netns.ts';
import { ROOT, startTestHost, type TestHost } from '../helpers/daemon.ts';
import { sandboxNameFor } from '../../src/cni/service.ts';

const PLUGIN = join(ROOT, 'dist/cni/knit');
const skip = !canRunKernelTests() ? 'needs root' : !existsSync(PLUGIN) ? 'dist/cni/knit not built (npm run build)' : false;

interface Added {
  ips: { address: string }[];
  dns?: { nameservers?: string[]; search?: string[]; options?: string[]; domain?: string };
}

/** Runs the real plugin in the test host's namespace, as a runtime there would. */
function plugin(h: TestHost, cmd: 'ADD' | 'DEL', id: string, netns: string, conf: Record<string, unknown>): Added {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', KNIT_SOCKET: h.socket, CNI_COMMAND: cmd, CNI_PATH: '/usr/lib/cni', CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: 'eth0' };
  const r = spawnSync('nsenter', [`--net=${h.nsPath}`, PLUGIN], { env, input: JSON.stringify({ cniVersion: '1.1.0', type: 'knit', ...conf }), encoding: 'utf8' });
  assert.equal(r.status, 0, `${cmd} ${id}: ${r.stdout}${r.stderr}`);
  return (cmd === 'ADD' ? JSON.parse(r.stdout) : {}) as Added;
}

/** dig from inside a container's namespace: `+short` answers, one per line. */
function dig(ns: string, server: string, ...q: string[]): string[] {
  const out = sh('ip', ['netns', 'exec', ns, 'dig', '+short', '+time=5', '+tries=1', `@${server}`, ...q]).trim();
  return out === '' ? [] : out.split('\n');
}

describe('knit CNI plugin: the result names Knit\'s DNS', { skip }, () => {
  let h: TestHost;
  const made: string[] = [];
  const ns = (): { name: string; path: string } => {
    const n = makeNetns('kntc');
    made.push(n.name);
    return n;
  };
  before(async () => {
    // An upstream that refuses at once: names Knit does not own fail fast instead of timing out.
    h = await startTestHost({ defaultBridge: false, daemonArgs: ['--dns', '127.0.0.1:9'] });
  });
  after(() => {
    for (const n of made) removeNetns(n);
  });

  const net = {
    name: 'names',
    bridge: 'kn-names',
    isGateway: true,
    isDefaultGateway: true,
    subnet: '10.31.0.0/24',
    dns: { nameservers: ['192.0.2.53'], search: ['corp.test'], options: ['ndots:2'] },
  };

  it('names the gateway first, the network as search domain, then the config\'s values; peers resolve through it', () => {
    const [a, b] = [ns(), ns()];
    const addA = plugin(h, 'ADD', 'ctr-a', a.path, net);
    assert.deepEqual(addA.dns, {
      nameservers: ['10.31.0.1', '192.0.2.53'],
      search: ['names', 'corp.test'],
      options: ['ndots:2'],
    });
    const addB = plugin(h, 'ADD', 'ctr-b', b.path, { ...net, runtimeConfig: { aliases: { names: ['web'] }, dns: { nameservers: ['192.0.2.54'], search: ['pod.test'] } } });
    // The runtime's capability comes before the static config, both after Knit.
    assert.deepEqual(addB.dns?.nameservers, ['10.31.0.1', '192.0.2.54', '192.0.2.53']);
    assert.deepEqual(addB.dns?.search, ['names', 'pod.test', 'corp.test']);

    const ipB = addB.ips[0]?.address.split('/')[0] ?? '';
    const server = addA.dns?.nameservers?.[0] ?? '';
    assert.deepEqual(dig(a.name, server, 'web'), [ipB], 'a bare alias, from the first container');
    assert.deepEqual(dig(a.name, server, 'web.names'), [ipB], 'NAME.NETWORK');
    assert.ok(dig(a.name, server, '-x', ipB).includes('web.names.'), 'PTR');

    plugin(h, 'DEL', 'ctr-b', b.path, net);
    assert.deepEqual(dig(a.name, server, 'web'), [], 'gone with its DEL');
    plugin(h, 'DEL', 'ctr-a', a.path, net);
  });

  it('an IPv4 and IPv6 network names both gateways, IPv4 first', () => {
    const c = ns();
    const add = plugin(h, 'ADD', 'ctr-6', c.path, { name: 'dual', bridge: 'kn-dual', isDefaultGateway: true, ranges: [[{ subnet: 'fd31::/64' }], [{ subnet: '10.33.0.0/24' }]] });
    assert.deepEqual(add.dns?.nameservers, ['10.33.0.1', 'fd31::1']);
    const ip6 = add.ips.find((i) => i.address.includes(':'))?.address.split('/')[0];
    assert.deepEqual(dig(c.name, 'fd31::1', 'AAAA', `${sandboxNameFor('ctr-6', 'eth0')}.dual`), [ip6], 'the IPv6 address answers');
    plugin(h, 'DEL', 'ctr-6', c.path, { name: 'dual' });
  });

  it('a network with DNS off names no Knit server and has none listening', () => {
    const d = ns();
    const off = { name: 'quiet', bridge: 'kn-quiet', isDefaultGateway: true, subnet: '10.32.0.0/24', enableDns: false };
    const add = plugin(h, 'ADD', 'ctr-q', d.path, off);
    assert.equal(add.dns, undefined, JSON.stringify(add.dns));
    assert.equal(h.inHost('ss', '-Hlun', 'src', '10.32.0.1').trim(), '', 'nothing on the gateway');
    const withOwn = plugin(h, 'ADD', 'ctr-q2', ns().path, { ...off, dns: { nameservers: ['192.0.2.53'] } });
    assert.deepEqual(withOwn.dns, { nameservers: ['192.0.2.53'] }, 'only what the config says');
    plugin(h, 'DEL', 'ctr-q', d.path, off);
  });
});
