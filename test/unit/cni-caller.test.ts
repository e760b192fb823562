import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, constants, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { callerNetns, callerOf, readCallerStdin, type Caller } from '../../src/cni/caller.ts';
import { runPluginCall } from '../../src/cni/plugin-call.ts';
import type { CniService } from '../../src/cni/service.ts';
import { KnitError } from '../../src/lib/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'knit-caller-'));
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill();
  rmSync(dir, { recursive: true, force: true });
});

/** A process whose stdin is `stdin`, as a plugin process waiting for the daemon's answer. */
function callerWith(stdin: number | 'pipe'): Caller {
  const c = spawn('sleep', ['30'], { stdio: [stdin, 'ignore', 'ignore'] });
  children.push(c);
  return { pid: c.pid as number, gone: () => false };
}

/** A caller whose stdin is a pipe, and the pipe's writer. */
function callerWithOpenPipe(): { caller: Caller; writer: number } {
  const fifo = join(dir, `fifo-${children.length}`);
  spawnSyncOk('mkfifo', [fifo]);
  const r = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(fifo, constants.O_WRONLY);
  const caller = callerWith(r);
  closeSync(r);
  return { caller, writer };
}

/** A caller whose stdin is a pipe holding `text`, its writer closed (what a Go runtime hands a plugin). */
function callerWithPipe(text: string): Caller {
  const { caller, writer } = callerWithOpenPipe();
  writeSync(writer, text);
  closeSync(writer);
  return caller;
}

function spawnSyncOk(cmd: string, args: string[]): void {
  const r = process.getBuiltinModule('node:child_process').spawnSync(cmd, args);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}`);
}

const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'knit', ...extra });

describe('CNI: what the daemon reads of a plugin process', () => {
  it('names the process on a unix socket connection (SO_PEERCRED)', async () => {
    const path = join(dir, 'peer.sock');
    const seen = await new Promise<Caller | undefined>((resolve) => {
      const srv = createServer((s) => {
        resolve(callerOf(s));
        s.end();
        srv.close();
      });
      srv.listen(path, () => connect(path).on('error', () => undefined));
    });
    assert.equal(seen?.pid, process.pid);
  });

  it('names no caller that is not root: the daemon opens files only for one that could itself', async () => {
    const path = join(dir, 'peer-nobody.sock');
    chmodSync(dir, 0o755);
    const seen = new Promise<Caller | undefined>((resolve) => {
      const srv = createServer((s) => {
        resolve(callerOf(s));
        s.end();
        srv.close();
      });
      srv.listen(path, () => {
        chmodSync(path, 0o777);
        const c = spawn(process.execPath, ['-e', `require('node:net').connect(${JSON.stringify(path)}).on('error', () => {}).on('end', () => process.exit(0))`], { uid: 65534, gid: 65534, stdio: 'ignore' });
        children.push(c);
      });
    });
    assert.equal(await seen, undefined);
  });

  it("reads its stdin from a pipe to the end, and from a regular file", async () => {
    assert.equal((await readCallerStdin(callerWithPipe(conf())))?.toString(), conf());
    const file = join(dir, 'conf.json');
    writeFileSync(file, conf({ a: 1 }));
    const fd = openSync(file, 'r');
    const c = callerWith(fd);
    closeSync(fd);
    assert.equal((await readCallerStdin(c))?.toString(), conf({ a: 1 }));
  });

  it('waits for a writer that has not finished', async () => {
    const { caller, writer } = callerWithOpenPipe();
    writeSync(writer, '{"cniVersion":');
    const reading = readCallerStdin(caller);
    await new Promise((r) => setTimeout(r, 20));
    writeSync(writer, '"1.0.0"}');
    closeSync(writer);
    assert.equal((await reading)?.toString(), '{"cniVersion":"1.0.0"}');
  });

  it('stops waiting once the plugin process has hung up', async () => {
    const { caller, writer } = callerWithOpenPipe();
    await assert.rejects(readCallerStdin({ ...caller, gone: () => true }), /went away/);
    closeSync(writer);
  });

  it('cannot read a socket (a Node runtime\'s stdio): the call must carry stdin, field "stdin"', async () => {
    const c = callerWith('pipe');
    assert.equal(await readCallerStdin(c), undefined);
    for (const caller of [c, undefined]) {
      await assert.rejects(
        runPluginCall({} as CniService, { plugin: 'knit', env: { CNI_COMMAND: 'ADD' } }, caller, { socket: '/run/knit/knit.sock' }),
        (e: unknown) => e instanceof KnitError && e.code === 'invalid' && e.field === 'stdin',
      );
    }
  });

  it('sends a call whose configuration names another daemon there, with the stdin it read', async () => {
    const text = conf({ socket: join(dir, 'other.sock') });
    const reply = await runPluginCall({} as CniService, { plugin: 'knit', env: { CNI_COMMAND: 'ADD' } }, callerWithPipe(text), { socket: join(dir, 'served.sock') });
    assert.deepEqual(reply, { socket: join(dir, 'other.sock'), stdin: text });
  });

  it('reads its network namespace', async () => {
    const own = statSync('/proc/self/ns/net');
    assert.deepEqual(await callerNetns(callerWith('pipe')), { dev: own.dev, ino: own.ino });
  });
});
