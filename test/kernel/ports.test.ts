import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { KnitError } from '../../src/lib/errors.ts';
import { withNetns } from '../../src/kernel/netns.ts';
import { checkHostPortFree } from '../../src/services/ports.ts';
import { ipIn, makeNetns } from '../helpers/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root' : false;

function isCode(code: string) {
  return (err: unknown) => err instanceof KnitError && err.code === code && err.field === 'publish';
}

test('checkHostPortFree: a listening port is taken, in the netns asked', { skip }, async () => {
  const ns = makeNetns();
  ipIn(ns.name, 'addr', 'add', '192.0.2.1/24', 'dev', 'lo');
  // A server inside the netns: its fd is made inside the window (no host, so no lookup later).
  const srv = createServer();
  withNetns(ns.path, () => srv.listen({ port: 18080, ipv6Only: false }));
  await new Promise<void>((resolve) => srv.once('listening', () => resolve()));
  try {
    withNetns(ns.path, () => {
      assert.throws(() => checkHostPortFree('tcp', 18080), isCode('conflict'));
      assert.throws(() => checkHostPortFree('tcp', 18080, '192.0.2.1'), isCode('conflict'));
      assert.throws(() => checkHostPortFree('tcp', 18080, '127.0.0.1'), isCode('conflict'));
      checkHostPortFree('udp', 18080);
      checkHostPortFree('tcp', 18081);
      checkHostPortFree('tcp', 18081, '192.0.2.1');
      assert.throws(() => checkHostPortFree('tcp', 18081, '198.51.100.1'), isCode('invalid'));
    });
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
  withNetns(ns.path, () => checkHostPortFree('tcp', 18080));
});
