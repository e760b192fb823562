import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { getSysctl, setSysctl } from '../../src/kernel/sysctl.ts';
import { ipIn, makeNetns, sh } from '../helpers/netns.ts';

describe('sysctl', { skip: process.getuid?.() !== 0 }, () => {
  it('reads and writes net.* per netns, without touching the others', () => {
    const a = makeNetns();
    const b = makeNetns();
    const hostForward = getSysctl('net.ipv4.ip_forward');
    setSysctl('net.ipv4.ip_forward', '1', a.path);
    assert.equal(getSysctl('net.ipv4.ip_forward', a.path), '1');
    assert.equal(getSysctl('net/ipv4/ip_forward', b.path), '0');
    assert.equal(getSysctl('net.ipv4.ip_forward'), hostForward);
    assert.equal(sh('ip', ['netns', 'exec', a.name, 'sysctl', '-n', 'net.ipv4.ip_forward']).trim(), '1');
    // Per-interface keys resolve in the netns too (lo exists everywhere; a veth only in b).
    ipIn(b.name, 'link', 'add', 'knt.x', 'type', 'veth', 'peer', 'name', 'kntpeer');
    setSysctl('net/ipv4/conf/knt.x/arp_accept', '1', b.path);
    assert.equal(getSysctl('net/ipv4/conf/knt.x/arp_accept', b.path), '1');
    assert.throws(() => getSysctl('net/ipv4/conf/knt.x/arp_accept', a.path), /ENOENT/);
    assert.throws(() => getSysctl('net..ipv4'), /sysctl name/);
    assert.throws(() => getSysctl('../etc/passwd'), /sysctl name/);
  });
});
