import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Nft, NftError } from '../../src/kernel/nft.ts';
import { makeNetns, sh } from '../helpers/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root' : false;

test('Nft acts in the netns it was opened for', { skip }, () => {
  const a = makeNetns();
  const b = makeNetns();
  const na = Nft.open(a.path);
  const nb = Nft.open(b.path);
  try {
    na.run('add table inet knt_a');
    nb.run('add table inet knt_b');
    assert.match(sh('ip', ['netns', 'exec', a.name, 'nft', 'list', 'tables']), /^table inet knt_a$/m);
    assert.doesNotMatch(sh('ip', ['netns', 'exec', a.name, 'nft', 'list', 'tables']), /knt_b/);
    assert.match(sh('ip', ['netns', 'exec', b.name, 'nft', 'list', 'tables']), /^table inet knt_b$/m);
  } finally {
    na.close();
    nb.close();
  }
});

test('Nft: output is per call, errors carry nft message and command, JSON in and out', { skip }, () => {
  const ns = makeNetns();
  const nft = Nft.open(ns.path);
  try {
    nft.run('add table inet t { set s { type ipv4_addr; }; }');
    nft.run('add element inet t s { 10.0.0.1 }');
    assert.match(nft.run('list set inet t s'), /elements = \{ 10\.0\.0\.1 \}/);
    // The buffer does not accumulate: a command with no output returns ''.
    assert.equal(nft.run('add element inet t s { 10.0.0.2 }'), '');

    assert.throws(
      () => nft.run('add element inet t nosuchset { 10.0.0.3 }'),
      (err: unknown) =>
        err instanceof NftError &&
        err.code === 'internal' &&
        /No such file or directory/.test(err.nftMessage) &&
        err.message.includes('add element inet t nosuchset'),
    );

    const listed = nft.list('set inet t s') as { nftables: { set?: { elem?: string[] } }[] };
    const set = listed.nftables.find((x) => x.set !== undefined)?.set;
    assert.deepEqual(set?.elem, ['10.0.0.1', '10.0.0.2']);

    nft.runJson({ nftables: [{ add: { element: { family: 'inet', table: 't', name: 's', elem: ['10.0.0.9'] } } }] });
    // Text after JSON: the context switches back.
    assert.match(nft.run('list set inet t s'), /10\.0\.0\.9/);

    // A failed buffer is one transaction: nothing of it applies.
    assert.throws(() => nft.run('add element inet t s { 10.0.0.7 }\nadd element inet t nosuchset { 1.1.1.1 }'));
    assert.doesNotMatch(nft.run('list set inet t s'), /10\.0\.0\.7/);
  } finally {
    nft.close();
  }
  assert.throws(() => nft.run('list tables'), /closed/);
});

test('Nft: a signal arriving during a call does not fail it (libnftables alone returns EINTR)', { skip }, () => {
  // A CPU profiler interrupts the thread with SIGPROF every few microseconds here.
  const a = makeNetns();
  const dir = mkdtempSync(join(tmpdir(), 'knit-prof-'));
  const script = `
    import { Nft } from ${JSON.stringify(new URL('../../src/kernel/nft.ts', import.meta.url).href)};
    const nft = Nft.open(${JSON.stringify(a.path)});
    nft.run('add table inet knt_sig; add set inet knt_sig s { type inet_service; }');
    for (let i = 0; i < 1000; i++) {
      nft.run('add element inet knt_sig s { ' + (1000 + i) + ' }');
      nft.run('delete element inet knt_sig s { ' + (1000 + i) + ' }');
    }`;
  try {
    const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-interval', '10', '--cpu-prof-dir', dir, '--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
