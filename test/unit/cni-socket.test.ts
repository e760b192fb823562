import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_SOCKET, socketPath } from '../../src/cni/daemon-socket.ts';
import { CniError } from '../../src/cni/errors.ts';

describe('CNI plugin: which daemon socket', () => {
  it("takes the config's socket before $KNIT_SOCKET, then the default", () => {
    assert.equal(socketPath({ KNIT_SOCKET: '/env.sock' }, { socket: '/conf.sock' }), '/conf.sock');
    assert.equal(socketPath({ KNIT_SOCKET: '/env.sock' }, {}), '/env.sock');
    assert.equal(socketPath({ KNIT_SOCKET: '' }, {}), DEFAULT_SOCKET);
    assert.equal(socketPath({}, { socket: null }), DEFAULT_SOCKET);
  });
  it('rejects a relative or non-string socket with code 7 naming the field', () => {
    for (const bad of ['knit.sock', 42, '']) {
      assert.throws(
        () => socketPath({}, { socket: bad }),
        (e: unknown) => e instanceof CniError && e.code === 7 && e.details === 'socket' && /absolute path/.test(e.msg),
      );
    }
  });
});
