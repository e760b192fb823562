import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CniError } from '../../src/cni/errors.ts';
import { runPlugin, type CmdArgs, type PluginHandlers, type PluginIO } from '../../src/cni/skel.ts';
import { ALL_VERSIONS } from '../../src/cni/version.ts';

const baseEnv = { CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };

async function run(
  env: Record<string, string>,
  stdin: unknown,
  handlers: Partial<PluginHandlers> = {},
  own = false,
): Promise<{ code: number; out: string; err: string; json: Record<string, unknown> | undefined; calls: string[] }> {
  let out = '';
  let err = '';
  const calls: string[] = [];
  const io: PluginIO = {
    env,
    readStdin: async () => Buffer.from(typeof stdin === 'string' ? stdin : JSON.stringify(stdin)),
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
    },
    isOwnNetns: () => own,
  };
  const h: PluginHandlers = {
    versions: ALL_VERSIONS,
    add: async (a: CmdArgs) => {
      calls.push(`add ${a.cniVersion}`);
      return { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', mtu: 1400, sandbox: a.netns }], ips: [{ address: '10.0.0.2/24', gateway: '10.0.0.1', interface: 0 }] };
    },
    del: async () => void calls.push('del'),
    check: async () => void calls.push('check'),
    status: async () => void calls.push('status'),
    gc: async () => void calls.push('gc'),
    ...handlers,
  };
  const code = await runPlugin(h, io);
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(out);
  } catch {
    json = undefined;
  }
  return { code, out, err, json, calls };
}

const conf = (v: string | undefined, extra: Record<string, unknown> = {}) => ({ ...(v === undefined ? {} : { cniVersion: v }), name: 'net1', type: 'knit', ...extra });

describe('skel: environment', () => {
  it('reports every missing variable, not just the first (code 4)', async () => {
    const r = await run({ CNI_COMMAND: 'ADD' }, conf('1.0.0'));
    assert.equal(r.code, 1);
    assert.equal(r.json?.code, 4);
    assert.equal(r.json?.msg, 'required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing');
  });

  it('requires per command what skel requires', async () => {
    const del = await run({ CNI_COMMAND: 'DEL', CNI_PATH: '/x' }, conf('1.0.0'));
    assert.equal(del.json?.msg, 'required env variables [CNI_CONTAINERID,CNI_IFNAME] missing');
    const delOk = await run({ CNI_COMMAND: 'DEL', CNI_PATH: '/x', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0' }, conf('1.0.0'));
    assert.equal(delOk.code, 0, 'CNI_NETNS is optional for DEL');
    const gc = await run({ CNI_COMMAND: 'GC' }, conf('1.1.0'));
    assert.equal(gc.json?.msg, 'required env variables [CNI_PATH] missing');
    const none = await run({}, conf('1.0.0'));
    assert.equal(none.json?.msg, 'required env variables [CNI_COMMAND] missing');
  });

  it('validates container id and interface name (code 4, naming the field)', async () => {
    const id = await run({ ...baseEnv, CNI_COMMAND: 'ADD', CNI_CONTAINERID: '-bad' }, conf('1.0.0'));
    assert.deepEqual([id.json?.code, id.json?.msg, id.json?.details], [4, 'invalid characters in containerID', '-bad']);
    for (const [name, msg] of [
      ['averyveryverylongname', 'interface name is too long'],
      ['..', 'interface name is . or ..'],
      ['eth0:1', 'interface name contains / or : or whitespace characters'],
      ['a b', 'interface name contains / or : or whitespace characters'],
    ] as const) {
      const r = await run({ ...baseEnv, CNI_COMMAND: 'ADD', CNI_IFNAME: name }, conf('1.0.0'));
      assert.equal(r.json?.code, 4, name);
      assert.equal(r.json?.msg, msg);
    }
  });

  it('unknown command (code 4)', async () => {
    const r = await run({ ...baseEnv, CNI_COMMAND: 'FOO' }, conf('1.0.0'));
    assert.deepEqual([r.json?.code, r.json?.msg], [4, 'unknown CNI_COMMAND: FOO']);
  });

  it('refuses the plugin own netns (code 8) unless overridden', async () => {
    const r = await run({ ...baseEnv, CNI_COMMAND: 'ADD' }, conf('1.0.0'), {}, true);
    assert.equal(r.json?.code, 8);
    assert.deepEqual(r.calls, []);
    const o = await run({ ...baseEnv, CNI_COMMAND: 'ADD', CNI_NETNS_OVERRIDE: 'true' }, conf('1.0.0'), {}, true);
    assert.equal(o.code, 0);
  });

  it('prints about and versions when run by hand', async () => {
    const r = await run({}, '', { about: 'knit CNI plugin' });
    assert.equal(r.code, 0);
    assert.equal(r.out, '');
    assert.match(r.err, /knit CNI plugin\nCNI protocol versions supported: 0.1.0, 0.2.0/);
  });
});

describe('skel: stdin', () => {
  it('bad JSON is code 6, a missing or bad name code 7', async () => {
    const bad = await run({ ...baseEnv, CNI_COMMAND: 'ADD' }, '{nope');
    assert.equal(bad.json?.code, 6);
    assert.match(String(bad.json?.msg), /^error unmarshall network config: /);
    const noName = await run({ ...baseEnv, CNI_COMMAND: 'ADD' }, { cniVersion: '1.0.0', type: 'knit' });
    assert.deepEqual([noName.json?.code, noName.json?.msg], [7, 'missing network name']);
    const badName = await run({ ...baseEnv, CNI_COMMAND: 'ADD' }, conf('1.0.0', { name: 'a/b' }));
    assert.deepEqual([badName.json?.code, badName.json?.msg, badName.json?.details], [7, 'invalid characters found in network name', 'a/b']);
  });

  it('stdin read failure is code 5', async () => {
    let out = '';
    const code = await runPlugin(
      { versions: ALL_VERSIONS },
      {
        env: { ...baseEnv, CNI_COMMAND: 'ADD' },
        readStdin: async () => {
          throw new Error('EIO');
        },
        stdout: (s) => {
          out += s;
        },
        stderr: () => {},
        isOwnNetns: () => false,
      },
    );
    assert.equal(code, 1);
    assert.equal(JSON.parse(out).code, 5);
  });
});

describe('skel: versions', () => {
  it('VERSION prints compact JSON and a newline, without reading stdin', async () => {
    const r = await run({ CNI_COMMAND: 'VERSION' }, '{not json', { versions: ['0.4.0', '1.0.0'] });
    assert.equal(r.code, 0);
    assert.equal(r.out, '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0"]}\n');
  });

  it('a version the plugin does not speak is code 1', async () => {
    const r = await run({ ...baseEnv, CNI_COMMAND: 'ADD' }, conf('1.1.0'), { versions: ['0.4.0', '1.0.0'] });
    assert.deepEqual([r.json?.code, r.json?.msg, r.json?.details], [1, 'incompatible CNI versions', 'config is "1.1.0", plugin supports ["0.4.0" "1.0.0"]']);
    const bad = await run({ ...baseEnv, CNI_COMMAND: 'ADD' }, conf('1.x'));
    assert.equal(bad.json?.code, 1);
  });

  it('a config without cniVersion is 0.1.0', async () => {
    const r = await run({ ...baseEnv, CNI_COMMAND: 'ADD' }, conf(undefined));
    assert.equal(r.code, 0);
    assert.deepEqual(r.calls, ['add 0.1.0']);
    assert.deepEqual(r.json, { cniVersion: '0.1.0', ip4: { ip: '10.0.0.2/24', gateway: '10.0.0.1' }, dns: {} });
  });

  it('prints the result in every requested version', async () => {
    for (const v of ALL_VERSIONS) {
      const r = await run({ ...baseEnv, CNI_COMMAND: 'ADD' }, conf(v));
      assert.equal(r.code, 0, v);
      assert.equal(r.json?.cniVersion, v);
      if (v.startsWith('0.3') || v === '0.4.0') assert.deepEqual(r.json?.interfaces, [{ name: 'eth0', sandbox: '/run/netns/x' }]);
      if (v === '1.0.0') assert.deepEqual(r.json?.interfaces, [{ mtu: 1400, name: 'eth0', sandbox: '/run/netns/x' }]);
      assert.match(r.out, /^\{\n {4}"/, 'indented like Go');
    }
  });

  it('gates CHECK before 0.4.0 and GC/STATUS before 1.1.0', async () => {
    const check = await run({ ...baseEnv, CNI_COMMAND: 'CHECK' }, conf('0.3.1'));
    assert.deepEqual([check.json?.code, check.json?.msg], [1, 'config version does not allow CHECK']);
    const gc = await run({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, conf('1.0.0'));
    assert.deepEqual([gc.json?.code, gc.json?.msg], [1, 'config version does not allow GC']);
    const st = await run({ CNI_COMMAND: 'STATUS', CNI_PATH: '/x' }, conf('1.0.0'));
    assert.deepEqual([st.json?.code, st.json?.msg], [1, 'config version does not allow STATUS']);
    const old = await run({ ...baseEnv, CNI_COMMAND: 'CHECK' }, conf('1.0.0'), { versions: ['0.4.0'] });
    assert.deepEqual([old.json?.code, old.json?.msg], [1, 'plugin version does not allow CHECK']);
    const ok = await run({ ...baseEnv, CNI_COMMAND: 'CHECK' }, conf('0.4.0'));
    assert.deepEqual([ok.code, ok.out, ok.calls], [0, '', ['check']]);
    const okGc = await run({ CNI_COMMAND: 'GC', CNI_PATH: '/x' }, conf('1.1.0'));
    assert.deepEqual([okGc.code, okGc.calls], [0, ['gc']]);
  });
});

describe('skel: handler errors', () => {
  it('typed errors keep their code; others are 999; output is the error object', async () => {
    const typed = await run({ CNI_COMMAND: 'STATUS', CNI_PATH: '/x' }, conf('1.1.0'), {
      status: async () => {
        throw new CniError(50, 'knit daemon is not running', 'start it with: knit daemon');
      },
    });
    assert.equal(typed.code, 1);
    assert.deepEqual(typed.json, { cniVersion: '1.1.0', code: 50, msg: 'knit daemon is not running', details: 'start it with: knit daemon' });
    const plain = await run({ ...baseEnv, CNI_COMMAND: 'DEL' }, conf('1.0.0'), {
      del: async () => {
        throw new Error('boom');
      },
    });
    assert.deepEqual(plain.json, { cniVersion: '1.0.0', code: 999, msg: 'boom' });
  });
});
