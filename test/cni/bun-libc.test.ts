// The compiled plugins' blocking stdin read and daemon exchange (src/lib/bun-libc.ts), run on Bun itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { blockingIO } from '../../src/lib/bun-libc.ts';

const BUN = resolve(import.meta.dirname, '../../node_modules/.bin/bun');
const skip = existsSync(BUN) ? false : 'bun is not installed (npm ci brings it)';

test('on Node there is no blocking IO: callers keep the event loop', () => {
  assert.equal(blockingIO(), undefined);
});

test('on Bun: stdin read whole, a request answered over a unix socket, a missing socket is ENOENT', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'knit-bunlibc-'));
  const sock = join(dir, 's.sock');
  // Answers with one line and keeps the connection open: the reader must stop when the reply is complete.
  const server = createServer((s) => s.once('data', (d) => s.write(`pong ${d.toString('utf8')}\n`)));
  await new Promise<void>((r) => server.listen(sock, r));
  try {
    const out = await new Promise<string>((resolveOut, reject) => {
      const child = spawn(BUN, [join(import.meta.dirname, 'fixtures/bun-libc-probe.ts'), sock], { stdio: ['pipe', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString('utf8')));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolveOut(text) : reject(new Error(`probe exited ${code}: ${text}`))));
      child.stdin.end('hello');
    });
    assert.deepEqual(JSON.parse(out), { input: 'hello', reply: 'pong ping hello\n', missing: 'ENOENT' });
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
