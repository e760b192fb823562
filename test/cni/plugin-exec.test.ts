// The compiled plugin executables' own IO (Bun's stdin/stdout, not Node's
// streams): exact bytes of VERSION and of an error object, the about text,
// stdin read to the end, the own-netns check; none of it needs a daemon.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from '../helpers/daemon.ts';
import { ALL_VERSIONS } from '../../src/cni/version.ts';

const DIR = join(ROOT, 'dist/cni');
const skip = existsSync(join(DIR, 'knit')) && existsSync(join(DIR, 'knit-ipam')) ? false : 'dist/cni not built (npm run build)';

function exec(bin: string, env: Record<string, string>, input = ''): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(join(DIR, bin), [], { env: { PATH: '/usr/bin:/bin', ...env }, input, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

const base = { CNI_PATH: '/usr/lib/cni', CNI_IFNAME: 'eth0', CNI_CONTAINERID: 'c1' };

describe('plugin executables: IO', { skip }, () => {
  for (const bin of ['knit', 'knit-ipam']) {
    it(`${bin}: VERSION is one compact line`, () => {
      const r = exec(bin, { CNI_COMMAND: 'VERSION' });
      assert.equal(r.code, 0);
      assert.equal(r.stdout, `${JSON.stringify({ cniVersion: '1.1.0', supportedVersions: ALL_VERSIONS })}\n`);
    });

    it(`${bin}: run by hand, says what it is on stderr and exits 0`, () => {
      const r = exec(bin, {});
      assert.equal(r.code, 0);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, new RegExp(`^${bin}: .*\\nCNI protocol versions supported: ${ALL_VERSIONS.join(', ')}\\n$`));
    });
  }

  it('an error object is printed indented, without a trailing newline, exit 1', () => {
    const r = exec('knit', { ...base, CNI_COMMAND: 'ADD', CNI_NETNS: '/run/netns/x' }, '{not json');
    assert.equal(r.code, 1);
    assert.ok(!r.stdout.endsWith('\n'));
    assert.equal(r.stdout, JSON.stringify(JSON.parse(r.stdout), null, 4));
    assert.equal(JSON.parse(r.stdout).code, 6);
  });

  it('reads a large stdin to its end', () => {
    const big = JSON.stringify({ cniVersion: '9.9.9', name: 'n', type: 'knit', pad: 'x'.repeat(1 << 20) });
    const r = exec('knit', { ...base, CNI_COMMAND: 'ADD', CNI_NETNS: '/run/netns/x' }, big);
    // Parsed whole: the version gate speaks, not the JSON decoder.
    assert.equal(JSON.parse(r.stdout).code, 1, r.stdout);
  });

  it("refuses the plugin's own network namespace (code 8)", () => {
    const r = exec('knit', { ...base, CNI_COMMAND: 'ADD', CNI_NETNS: '/proc/self/ns/net', KNIT_SOCKET: '/nonexistent.sock' }, JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'knit' }));
    assert.equal(JSON.parse(r.stdout).code, 8, r.stdout);
  });

  it('no daemon is code 11 naming the socket', () => {
    const r = exec('knit', { ...base, CNI_COMMAND: 'DEL', CNI_NETNS: '/run/netns/x', KNIT_SOCKET: '/nonexistent.sock' }, JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'knit' }));
    const e = JSON.parse(r.stdout) as { code: number; msg: string; details: string };
    assert.equal(e.code, 11);
    assert.match(e.msg, /not reachable at \/nonexistent\.sock/);
    assert.match(e.details, /knit daemon/);
  });
});
