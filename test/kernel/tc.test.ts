// tc over rtnetlink on the real kernel, in throwaway namespaces; `tc -j`
// reads back what the kernel holds.
import { describe, it, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { makeNetns, ipIn, sh, canRunKernelTests } from '../helpers/netns.ts';
import { NetlinkSocket } from '../../src/kernel/netlink/socket.ts';
import { createIfb, createVeth, linkIndex } from '../../src/kernel/link.ts';
import {
  INGRESS_HANDLE,
  deleteIngress,
  deleteRoot,
  ensureIngress,
  listFilters,
  listQdiscs,
  replaceIngressRedirect,
  replaceTbf,
  rootQdisc,
  tbfFor,
} from '../../src/kernel/tc.ts';

interface TcQdisc {
  kind: string;
  handle: string;
  root?: boolean;
  options?: { rate?: number; burst?: number; limit?: number };
}

const skip = canRunKernelTests() ? false : 'needs root';

describe('tc', { skip }, () => {
  let ns: { name: string; path: string };
  let s: NetlinkSocket;
  let v0: number;
  let ifb: number;

  before(() => {
    ns = makeNetns();
    s = NetlinkSocket.open(ns.path);
    createVeth(s, { name: 'v0', peerName: 'v1', up: true });
    createIfb(s, { name: 'ifb0', up: true });
    v0 = linkIndex(s, 'v0');
    ifb = linkIndex(s, 'ifb0');
  });
  after(() => s.close());

  const qdiscs = (dev: string): TcQdisc[] => JSON.parse(sh('tc', ['-n', ns.name, '-j', 'qdisc', 'show', 'dev', dev])) as TcQdisc[];

  it('sizes a tbf like the reference plugin: latency worth of rate plus the bucket', () => {
    assert.deepEqual(tbfFor(125000, 12500), { rate: 125000, burst: 12500, limit: 3125 + 12500 });
    assert.throws(() => tbfFor(0, 100), /rate/);
    assert.throws(() => tbfFor(100, 0), /burst/);
  });

  it('sets a tbf root qdisc that tc reads back with its rate and burst', () => {
    replaceTbf(s, v0, tbfFor(125000, 32768));
    const q = qdiscs('v0').find((x) => x.root === true);
    assert.equal(q?.kind, 'tbf');
    assert.equal(q?.options?.rate, 125000);
    assert.equal(q?.options?.burst, 32768);
    const mine = rootQdisc(s, v0);
    assert.equal(mine?.kind, 'tbf');
    assert.equal(mine?.tbf?.rate, 125000);
    assert.equal(mine?.tbf?.burst, 32768);
    assert.equal(mine?.tbf?.limit, tbfFor(125000, 32768).limit);
  });

  it('replaces the tbf in place (idempotent, and a new rate)', () => {
    replaceTbf(s, v0, tbfFor(125000, 32768));
    replaceTbf(s, v0, tbfFor(250000, 65536));
    const roots = qdiscs('v0').filter((x) => x.root === true);
    assert.equal(roots.length, 1);
    assert.equal(roots[0]?.options?.rate, 250000);
    assert.equal(roots[0]?.options?.burst, 65536);
  });

  it('takes rates above 4 GB/s (TCA_TBF_RATE64)', () => {
    replaceTbf(s, ifb, tbfFor(5_000_000_000, 1_000_000));
    assert.equal(rootQdisc(s, ifb)?.tbf?.rate, 5_000_000_000);
    deleteRoot(s, ifb);
  });

  it('redirects ingress to an ifb with a match-all u32 filter, idempotently', () => {
    ensureIngress(s, v0);
    ensureIngress(s, v0);
    replaceIngressRedirect(s, v0, ifb);
    replaceIngressRedirect(s, v0, ifb);
    replaceTbf(s, ifb, tbfFor(125000, 32768));
    assert.ok(qdiscs('v0').some((q) => q.kind === 'ingress' && q.handle === 'ffff:'));
    const shown = sh('tc', ['-n', ns.name, 'filter', 'show', 'dev', 'v0', 'ingress']);
    assert.match(shown, /u32/);
    assert.match(shown, /mirred \(Egress Redirect to device ifb0\)/);
    const filters = listFilters(s, v0, INGRESS_HANDLE).filter((f) => f.redirectTo !== undefined);
    assert.equal(filters.length, 1, 'one redirect after two replaces');
    assert.equal(filters[0]?.redirectTo, ifb);
    assert.equal(listQdiscs(s, ifb).find((q) => q.kind === 'tbf')?.tbf?.rate, 125000);
  });

  it('deletes root and ingress qdiscs; deleting again is fine', () => {
    deleteRoot(s, v0);
    deleteIngress(s, v0);
    deleteRoot(s, v0);
    deleteIngress(s, v0);
    assert.ok(!qdiscs('v0').some((q) => q.kind === 'tbf' || q.kind === 'ingress'));
    assert.equal(rootQdisc(s, v0), undefined);
    assert.equal(ipIn(ns.name, 'link', 'show', 'v0').includes('qdisc tbf'), false);
  });
});
