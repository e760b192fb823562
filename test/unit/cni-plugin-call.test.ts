import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodePluginCall } from '../../src/cni/plugin-call.ts';
import { KnitError } from '../../src/lib/errors.ts';

const good = { plugin: 'knit', env: { CNI_COMMAND: 'ADD' }, stdin: '{}', netns: { dev: 4, ino: 4026531840 } };

describe('CNI: a forwarded plugin call', () => {
  it('decodes what the executables send', () => {
    assert.deepEqual(decodePluginCall(good), good);
    const { netns: _, ...noNetns } = good;
    assert.deepEqual(decodePluginCall({ ...noNetns, plugin: 'knit-ipam' }), { ...noNetns, plugin: 'knit-ipam' });
  });

  it('refuses a malformed call naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [null, /^body: /],
      [[], /^body: /],
      [{ ...good, plugin: 'bridge' }, /^plugin: must be "knit" or "knit-ipam", got "bridge"/],
      [{ ...good, env: 'CNI_COMMAND=ADD' }, /^env: /],
      [{ ...good, env: { CNI_COMMAND: 1 } }, /^env\.CNI_COMMAND: must be a string, got number/],
      [{ ...good, stdin: { cniVersion: '1.0.0' } }, /^stdin: /],
      [{ ...good, netns: { dev: 4 } }, /^netns: /],
      [{ ...good, netns: '/proc/self/ns/net' }, /^netns: /],
    ];
    for (const [body, msg] of cases) {
      assert.throws(
        () => decodePluginCall(body),
        (e: unknown) => e instanceof KnitError && e.code === 'invalid' && msg.test(e.message),
        JSON.stringify(body),
      );
    }
  });
});
