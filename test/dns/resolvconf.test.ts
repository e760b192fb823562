import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatResolvConf, hostUpstreams, parseResolvConf, writeResolvConf } from '../../src/services/dns/resolvconf.ts';
import { KnitError } from '../../src/lib/errors.ts';

test('parse: comments, last search wins, domain, options accumulate, bad nameservers skipped', () => {
  const c = parseResolvConf(
    '# hi\nnameserver 10.0.0.1 ; trailing\nnameserver bogus\nnameserver fe80::1%eth0\nsearch a b\ndomain c\noptions ndots:2\noptions edns0\n',
  );
  assert.deepEqual(c, { nameservers: ['10.0.0.1', 'fe80::1%eth0'], search: ['c'], options: ['ndots:2', 'edns0'] });
});

test('hostUpstreams: a loopback stub is replaced by the systemd-resolved upstreams when listed', () => {
  const dir = mkdtempSync(join(tmpdir(), 'knit-resolv-'));
  try {
    const main = join(dir, 'resolv.conf');
    const sd = join(dir, 'sd.conf');
    writeFileSync(main, 'nameserver 127.0.0.53\noptions edns0 trust-ad\n');
    writeFileSync(sd, 'nameserver 192.0.2.53\nnameserver 2001:db8::53\n');
    assert.deepEqual(hostUpstreams(main, sd), ['192.0.2.53', '2001:db8::53']);
    // No systemd file: the stub stays (the daemon runs in the host netns and can reach it).
    assert.deepEqual(hostUpstreams(main, join(dir, 'absent')), ['127.0.0.53']);
    writeFileSync(main, 'nameserver 192.0.2.1\n');
    assert.deepEqual(hostUpstreams(main, sd), ['192.0.2.1']);
    assert.deepEqual(hostUpstreams(join(dir, 'absent'), sd), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('write: a sandbox resolv.conf with nameserver, search and options, in a new directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'knit-resolv-'));
  try {
    const path = join(dir, 'netns', 'sb1', 'resolv.conf');
    writeResolvConf(path, { nameservers: ['10.89.0.1'], search: ['n1'], options: ['ndots:1'] });
    const text = readFileSync(path, 'utf8');
    assert.match(text, /^nameserver 10\.89\.0\.1$/m);
    assert.match(text, /^search n1$/m);
    assert.match(text, /^options ndots:1$/m);
    assert.deepEqual(parseResolvConf(text), { nameservers: ['10.89.0.1'], search: ['n1'], options: ['ndots:1'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('format refuses values that would break the file, naming the field', () => {
  const bad = (conf: Parameters<typeof formatResolvConf>[0], field: string): void => {
    assert.throws(() => formatResolvConf(conf), (e: unknown) => e instanceof KnitError && e.field === field);
  };
  bad({ nameservers: ['dns.example'], search: [], options: [] }, 'nameservers[0]');
  bad({ nameservers: [], search: ['a b'], options: [] }, 'search[0]');
  bad({ nameservers: [], search: [], options: ['ndots:1\nnameserver 6.6.6.6'] }, 'options[0]');
});
