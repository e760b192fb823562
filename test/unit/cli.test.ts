// The `knit` CLI against a fake daemon: argument parsing, request bodies,
// tables and JSON, error lines and exit codes.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseResponse } from '../../src/cli/client.ts';
import { main } from '../../src/cli/main.ts';
import { parseExecArgs } from '../../src/cli/exec.ts';
import type { NetworkView, SandboxView } from '../../src/model/api.ts';
import { captureIo, startFakeApi, type FakeApi } from './cli-fake-api.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

const NET: NetworkView = {
  id: '3f1c0a9e8b7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e3d',
  name: 'front',
  tenant: 'default',
  driver: 'bridge',
  scope: 'local',
  subnets: [{ subnet: '10.88.0.0/24', gateway: '10.88.0.1', auxAddresses: {} }],
  ipv6: false,
  internal: false,
  bridge: 'kn-3f1c0a9e8b7d',
  mtu: 1500,
  icc: true,
  masquerade: true,
  dns: true,
  fastpath: true,
  options: {},
  labels: {},
  origin: 'api',
  created: '2025-01-01T00:00:00.000Z',
  endpoints: [],
};

const NONE: NetworkView = { ...NET, id: 'aa11bb22cc33dd44', name: 'none', driver: 'null', subnets: [], origin: 'builtin' };

const BOX: SandboxView = {
  id: 'b0c1d2e3f4a5b6c7d8e9',
  name: 'web',
  netnsPath: '/run/knit/netns/web',
  ownsNetns: true,
  dns: { servers: [], search: [], options: [] },
  labels: {},
  origin: 'api',
  state: 'ready',
  created: '2025-01-01T00:00:00.000Z',
  endpoints: [
    {
      id: 'e1',
      network: 'front',
      networkId: NET.id,
      sandbox: 'web',
      sandboxId: 'b0c1d2e3f4a5b6c7d8e9',
      ifname: 'eth0',
      mac: '02:42:0a:58:00:02',
      ipv4: '10.88.0.2/24',
      aliases: [],
      ports: [{ proto: 'tcp', hostPort: 8080, containerPort: 80 }],
    },
  ],
};

let api: FakeApi;
before(async () => {
  api = await startFakeApi({
    'GET /v1/networks': { status: 200, body: [NET, NONE] },
    'GET /v1/networks/front': { status: 200, body: NET },
    'POST /v1/networks': { status: 201, body: NET },
    'DELETE /v1/networks/front': { status: 204 },
    'DELETE /v1/networks/ghost': { status: 404, body: { error: { code: 'not-found', message: "network 'ghost' not found" } } },
    'POST /v1/networks/front/connect': { status: 200, body: BOX.endpoints[0] },
    'POST /v1/networks/front/disconnect': { status: 204 },
    'GET /v1/sandboxes': { status: 200, body: [BOX] },
    'GET /v1/sandboxes/web': { status: 200, body: BOX },
    'POST /v1/sandboxes': { status: 201, body: BOX },
    'GET /v1/version': { status: 200, body: { version: '0.1.0', apiVersion: '1', node: 'v24.21.0' } },
    'GET /v1/status': {
      status: 200,
      body: {
        daemon: { pid: 42, socket: '/run/knit/knit.sock', stateDir: '/var/lib/knit', runDir: '/run/knit', uptimeSeconds: 3725, netns: 'host' },
        store: { backend: 'sqlite', path: '/var/lib/knit/knit.db', revision: 17 },
        counts: { networks: 3, sandboxes: 1, endpoints: 1 },
      },
    },
  });
});
after(() => api.close());

async function knit(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const c = captureIo();
  const code = await main(argv, c.io, {});
  return { code, out: c.out(), err: c.err() };
}

function lastBody(): unknown {
  return api.seen.at(-1)?.body;
}

describe('global options', () => {
  it('accepts --socket and --format before the subcommand', async () => {
    const r = await knit('--socket', api.socket, '--format', 'json', 'network', 'ls');
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(JSON.parse(r.out), [NET, NONE]);
  });

  it('accepts them after the subcommand, and in --opt=value form', async () => {
    const r = await knit('network', 'ls', `--socket=${api.socket}`, '--format=json');
    assert.equal(r.code, 0, r.err);
    assert.equal((JSON.parse(r.out) as NetworkView[]).length, 2);
  });

  it('takes the socket from KNIT_SOCKET', async () => {
    const c = captureIo();
    const code = await main(['network', 'ls'], c.io, { KNIT_SOCKET: api.socket });
    assert.equal(code, 0, c.err());
  });

  it('rejects an unknown --format with exit 2', async () => {
    const r = await knit('--socket', api.socket, 'network', 'ls', '--format', 'yaml');
    assert.equal(r.code, 2);
    assert.equal(r.err, "knit: --format must be 'table' or 'json', not 'yaml'\n");
  });
});

describe('tables', () => {
  it('network ls prints docker-like columns with short ids', async () => {
    const r = await knit('--socket', api.socket, 'network', 'ls');
    assert.equal(r.code, 0);
    assert.equal(
      r.out,
      'NETWORK ID     NAME    DRIVER   SCOPE\n' + '3f1c0a9e8b7d   front   bridge   local\n' + 'aa11bb22cc33   none    null     local\n',
    );
  });

  it('sandbox ls shows networks, addresses and ports', async () => {
    const r = await knit('--socket', api.socket, 'sandbox', 'ls');
    assert.equal(r.code, 0);
    const lines = r.out.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^SANDBOX ID\s+NAME\s+NETWORKS\s+ADDRESSES\s+PORTS$/);
    assert.match(lines[1] ?? '', /^b0c1d2e3f4a5\s+web\s+front\s+10\.88\.0\.2\/24\s+0\.0\.0\.0:8080->80\/tcp$/);
  });

  it('status and version print the daemon fields', async () => {
    const s = await knit('--socket', api.socket, 'status');
    assert.equal(s.code, 0);
    assert.match(s.out, /pid 42, up 1h2m/);
    assert.match(s.out, /Networks:\s+3/);
    const v = await knit('--socket', api.socket, 'version', '--format', 'json');
    const j = JSON.parse(v.out) as { client: { version: string }; server: { apiVersion: string } };
    assert.equal(j.server.apiVersion, '1');
    assert.match(j.client.version, /^\d+\.\d+\.\d+/);
  });

  it('inspect prints a JSON array, like docker', async () => {
    const r = await knit('--socket', api.socket, 'sandbox', 'inspect', 'web');
    assert.equal(r.code, 0);
    assert.deepEqual(JSON.parse(r.out), [BOX]);
  });
});

describe('request bodies', () => {
  it('network create pairs --gateway and --ip-range with --subnet in order', async () => {
    const r = await knit(
      'network', 'create', 'front', '--socket', api.socket,
      '--subnet', '10.88.0.0/24', '--gateway', '10.88.0.1', '--ip-range', '10.88.0.128/25',
      '--subnet', 'fd00:88::/64', '--gateway', 'fd00:88::1',
      '--ipv6', '--internal', '--opt', 'bridge=kn-front', '-o', 'mtu=1400', '--label', 'team=a=b', '--driver', 'bridge',
    );
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `${NET.id}\n`);
    assert.deepEqual(lastBody(), {
      name: 'front',
      driver: 'bridge',
      subnets: [
        { subnet: '10.88.0.0/24', gateway: '10.88.0.1', ipRange: '10.88.0.128/25' },
        { subnet: 'fd00:88::/64', gateway: 'fd00:88::1' },
      ],
      ipv6: true,
      internal: true,
      options: { bridge: 'kn-front', mtu: '1400' },
      labels: { team: 'a=b' },
    });
  });

  it('network create with only a name sends only the name', async () => {
    assert.equal((await knit('--socket', api.socket, 'network', 'create', 'front')).code, 0);
    assert.deepEqual(lastBody(), { name: 'front' });
  });

  it('network connect sends the sandbox, address and aliases', async () => {
    const r = await knit('--socket', api.socket, 'network', 'connect', 'front', 'web', '--ip', '10.88.0.9', '--alias', 'a', '--alias', 'b');
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, '');
    assert.deepEqual(lastBody(), { sandbox: 'web', ip: '10.88.0.9', aliases: ['a', 'b'] });
    await knit('--socket', api.socket, 'network', 'connect', 'front', 'web', '--ip', 'fd00:88::9');
    assert.deepEqual(lastBody(), { sandbox: 'web', ipv6: 'fd00:88::9' });
  });

  it('network disconnect posts the sandbox', async () => {
    assert.equal((await knit('--socket', api.socket, 'network', 'disconnect', 'front', 'web')).code, 0);
    assert.deepEqual(api.seen.at(-1), { method: 'POST', path: '/v1/networks/front/disconnect', body: { sandbox: 'web' } });
  });

  it('sandbox create gives --ip, --alias and --publish to the first --network', async () => {
    const r = await knit(
      'sandbox', 'create', 'web', '--socket', api.socket, '--network', 'front', '--network', 'back',
      '--ip', '10.88.0.2', '--alias', 'www', '-p', '8080:80', '--publish', '127.0.0.1:53:53/udp',
      '--hostname', 'web1', '--label', 'app=web',
    );
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `${BOX.id}\n`);
    assert.deepEqual(lastBody(), {
      name: 'web',
      networks: [
        { network: 'front', ip: '10.88.0.2', aliases: ['www'], publish: ['8080:80', '127.0.0.1:53:53/udp'] },
        { network: 'back' },
      ],
      hostname: 'web1',
      labels: { app: 'web' },
    });
  });

  it('sandbox create --join sends the sandbox to join', async () => {
    assert.equal((await knit('--socket', api.socket, 'sandbox', 'create', 'side', '--join', 'web')).code, 0);
    assert.deepEqual(lastBody(), { name: 'side', join: 'web' });
  });
});

describe('usage errors: one line, the right form, exit 2', () => {
  const cases: [string[], RegExp][] = [
    [['network', 'create'], /^knit: missing NAME; usage: knit network create NAME \[--driver D\]/],
    [['network', 'create', 'x', '--bogus'], /^knit: unknown option --bogus; usage: knit network create NAME/],
    [['network', 'create', 'x', '--subnet'], /^knit: --subnet needs a value; usage: /],
    [['network', 'create', 'x', '--ipv6=yes'], /^knit: --ipv6 takes no value; usage: /],
    [['network', 'create', 'x', '--gateway', '10.0.0.1'], /^knit: 1 --gateway for 0 --subnet: each gateway pairs with the --subnet in the same position; usage: /],
    [['network', 'create', 'x', '--opt', 'novalue'], /^knit: --opt: 'novalue' is not key=value; usage: /],
    [['network', 'create', 'x', 'y'], /^knit: unexpected argument 'y'; usage: /],
    [['network', 'connect', 'front'], /^knit: missing SANDBOX; usage: knit network connect NET SANDBOX/],
    [['network', 'rm'], /^knit: missing NAME; usage: knit network rm NAME\.\.\.$/m],
    [['network'], /^knit: 'knit network' needs a subcommand: create, ls, inspect, rm, connect, disconnect/],
    [['network', 'frobnicate'], /^knit: unknown command 'knit network frobnicate': use one of create, ls/],
    [['frobnicate'], /^knit: unknown command 'frobnicate'/],
    [['--bogus', 'network', 'ls'], /^knit: unknown option --bogus; usage: knit \[--socket PATH\]/],
    [['--socket'], /^knit: --socket needs a value/],
    [['sandbox', 'create', 'x', '--publish', '80:80'], /^knit: --publish apply to a network: add --network NET/],
    [['exec', 'web'], /^knit: missing CMD; usage: knit exec SANDBOX \[--\] CMD/],
    [['exec'], /^knit: missing SANDBOX; usage: knit exec/],
    [['exec', 'web', '--'], /^knit: missing CMD/],
    [['exec', 'web', '--user', 'x', 'ls'], /^knit: unknown option --user; usage: knit exec/],
    [['install', 'nothing'], /^knit: unknown install target 'nothing'; usage: knit install cni/],
  ];
  for (const [argv, want] of cases) {
    it(argv.join(' ') || '(nothing)', async () => {
      const r = await knit('--socket', api.socket, ...argv);
      assert.equal(r.code, 2, r.err);
      assert.match(r.err, want);
      assert.equal(r.err.split('\n').length, 2, `one line: ${r.err}`);
      assert.equal(r.out, '');
    });
  }
});

describe('help', () => {
  it('knit --help and knit CMD --help print usage with exit 0', async () => {
    const top = await knit('--help');
    assert.equal(top.code, 0);
    assert.match(top.out, /^Usage: knit /);
    const sub = await knit('network', 'create', '--help');
    assert.equal(sub.code, 0);
    assert.match(sub.out, /^Usage: knit network create NAME/);
    const grp = await knit('sandbox', '--help');
    assert.match(grp.out, /knit sandbox rm NAME/);
    const ex = await knit('exec', '--help');
    assert.match(ex.out, /^Usage: knit exec SANDBOX/);
    assert.equal((await knit('help', 'status')).out.startsWith('Usage: knit status'), true);
  });
});

describe('daemon errors', () => {
  it('an ErrorBody becomes one line with exit 1', async () => {
    const r = await knit('--socket', api.socket, 'network', 'rm', 'ghost');
    assert.equal(r.code, 1);
    assert.equal(r.err, "knit: network 'ghost' not found\n");
  });

  it('rm of several names goes on past a failure and exits 1', async () => {
    const r = await knit('--socket', api.socket, 'network', 'rm', 'ghost', 'front');
    assert.equal(r.code, 1);
    assert.equal(r.out, 'front\n');
    const j = await knit('--socket', api.socket, '--format', 'json', 'network', 'rm', 'front');
    assert.deepEqual(JSON.parse(j.out), ['front']);
  });

  it('a reply that is not an ErrorBody is still one line', async () => {
    api.routes.set('GET /v1/status', { status: 502, raw: 'bad gateway\nmore' });
    const r = await knit('--socket', api.socket, 'status');
    assert.equal(r.code, 1);
    assert.equal(r.err, 'knit: the daemon answered 502 Bad Gateway to GET /v1/status: bad gateway\n');
  });

  it('no daemon: the line says where it looked and how to start it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'knit-cli-'));
    try {
      const r = await knit('--socket', join(dir, 'none.sock'), 'network', 'ls');
      assert.equal(r.code, 1);
      assert.equal(r.err, `knit: cannot reach the Knit daemon at ${join(dir, 'none.sock')}: is it running? start it with \`knit daemon\`\n`);
      // version still reports the client.
      const v = await knit('--socket', join(dir, 'none.sock'), 'version');
      assert.equal(v.code, 0);
      assert.match(v.out, /Server:\s+not reachable \(cannot reach the Knit daemon/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('exec arguments', () => {
  it('splits at -- and keeps the command whole', () => {
    const a = parseExecArgs(['--socket', '/s', 'web', '--format', 'json', '--', 'ls', '-la', '--', 'x']);
    assert.equal(a.sandbox, 'web');
    assert.deepEqual(a.command, ['ls', '-la', '--', 'x']);
    assert.equal(a.parsed.values.socket, '/s');
  });

  it('without --, the command starts at the first word after SANDBOX', () => {
    const a = parseExecArgs(['--socket=/s', 'web', '--format', 'json', 'ip', '-j', 'addr']);
    assert.equal(a.sandbox, 'web');
    assert.deepEqual(a.command, ['ip', '-j', 'addr']);
    assert.equal(a.parsed.values.format, 'json');
    // A later -- is the command's.
    assert.deepEqual(parseExecArgs(['web', 'sh', '-c', 'x', '--', 'y']).command, ['sh', '-c', 'x', '--', 'y']);
  });
});

describe('the launcher', () => {
  // Async: the fake API answers from this process, so its event loop must run.
  function run(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const child = spawn(join(root, 'bin/knit'), args, { env: { PATH: process.env.PATH, ...env } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('close', (status) => resolve({ status, stdout, stderr }));
    });
  }

  it('the bundle builds, and loads nothing at start but itself', () => {
    // Rebuilt here so the launcher tests below run the current source's bundle.
    const b = spawnSync(process.execPath, [join(root, 'scripts/build.ts')], { encoding: 'utf8' });
    assert.equal(b.status, 0, b.stderr);
    const bundle = readFileSync(join(root, 'dist/knit.mjs'), 'utf8');
    // Static imports of builtins evaluate all their lazy exports; koffi loads only for exec.
    assert.doesNotMatch(bundle, /(^|;)\s*import\s*[^(]*from\s*["']/);
    assert.doesNotMatch(bundle, /koffi/);
    assert.match(bundle, /import\("\.\/knit-chunks\/netns-[^"]+\.mjs"\)/);
  });

  for (const [how, env] of [['source', { KNIT_FROM_SOURCE: '1' }], ['the bundle', {}]] as const) {
    it(`runs the CLI from ${how} with output and exit codes intact`, async () => {
      const ok = await run(env, 'network', 'inspect', 'front', '--socket', api.socket);
      assert.equal(ok.status, 0, ok.stderr);
      assert.deepEqual(JSON.parse(ok.stdout), [NET]);
      const usage = await run(env, 'network', 'create');
      assert.equal(usage.status, 2);
      assert.match(usage.stderr, /^knit: missing NAME/);
      const down = await run({ ...env, KNIT_SOCKET: '/nonexistent/knit.sock' }, 'network', 'ls');
      assert.equal(down.status, 1);
      assert.equal(down.stderr, 'knit: cannot reach the Knit daemon at /nonexistent/knit.sock: is it running? start it with `knit daemon`\n');
    });
  }
});

describe('HTTP replies', () => {
  it('reads content-length and chunked bodies', () => {
    const plain = parseResponse(Buffer.from('HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-A: b\r\n\r\n{}'));
    assert.equal(plain.status, 201);
    assert.equal(plain.statusText, 'Created');
    assert.equal(plain.headers.get('x-a'), 'b');
    assert.equal(plain.body.toString(), '{}');
    const chunked = parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\na;ext=1\r\n2,3456789]\r\n0\r\n\r\n'));
    assert.equal(chunked.body.toString(), '[1,2,3456789]');
    assert.equal(parseResponse(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n')).body.length, 0);
  });

  it('rejects what is not a whole reply', () => {
    assert.throws(() => parseResponse(Buffer.alloc(0)), /closed without a reply/);
    assert.throws(() => parseResponse(Buffer.from('SSH-2.0\r\n\r\n')), /bad status line/);
    assert.throws(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}')), /content-length 9 but 2/);
    assert.throws(() => parseResponse(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab')), /cut off/);
  });

  it('a streamed (chunked) reply from node:http comes through whole', async () => {
    const big = Array.from({ length: 500 }, (_, i) => ({ ...NONE, name: `n${i}` }));
    api.routes.set('GET /v1/networks', { status: 200, body: big, chunked: true });
    try {
      const r = await knit('--socket', api.socket, '--format', 'json', 'network', 'ls');
      assert.equal(r.code, 0, r.err);
      assert.equal((JSON.parse(r.out) as NetworkView[]).length, 500);
    } finally {
      api.routes.set('GET /v1/networks', { status: 200, body: [NET, NONE] });
    }
  });
});
