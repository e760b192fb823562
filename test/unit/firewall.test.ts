import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KnitError } from '../../src/lib/errors.ts';
import { bridgeRulesetText, mapElement, networkElements, rulesetText } from '../../src/services/firewall/ruleset.ts';
import type { FirewallState } from '../../src/services/firewall/types.ts';

const state: FirewallState = {
  networks: [
    { bridge: 'kn0', subnets: ['10.1.0.0/24', 'fd00:1::/64'], internal: false, masquerade: true },
    { bridge: 'kn1', subnets: ['10.2.0.0/24'], internal: true, masquerade: true },
    { bridge: 'kn2', subnets: ['10.3.0.0/24'], internal: false, masquerade: false },
  ],
  ports: [
    { proto: 'tcp', hostPort: 8080, containerIP: '10.1.0.2', containerPort: 80 },
    { proto: 'udp', hostIP: '192.0.2.1', hostPort: 53, containerIP: '10.1.0.3', containerPort: 5353 },
    { proto: 'tcp', hostIP: '::', hostPort: 443, containerIP: 'FD00:1::0:2', containerPort: 443 },
    { proto: 'tcp', hostIP: '2001:db8::1', hostPort: 22, containerIP: 'fd00:1::2', containerPort: 22 },
  ],
};

function lines(text: string): string[] {
  return text.split('\n').map((l) => l.trim());
}

test('ruleset: replaces the table atomically in one buffer', () => {
  const l = lines(rulesetText(state));
  assert.deepEqual(l.slice(0, 3), ['table inet knit', 'delete table inet knit', 'table inet knit {']);
  assert.equal(lines(rulesetText(state, 'knit2'))[1], 'delete table inet knit2');
});

test('ruleset: sets carry networks', () => {
  const l = lines(rulesetText(state));
  assert.ok(l.includes('set bridges { type ifname; elements = { "kn0", "kn1", "kn2" }; }'));
  assert.ok(l.includes('set internal { type ifname; elements = { "kn1" }; }'));
  assert.ok(l.includes('set nat_bridges { type ifname; elements = { "kn0" }; }'));
  assert.ok(l.includes('set same_bridge { type ifname . ifname; elements = { "kn0" . "kn0", "kn1" . "kn1", "kn2" . "kn2" }; }'));
  // Internal and non-masquerading networks are not masqueraded.
  assert.ok(l.includes('set nat4 { type ipv4_addr . ifname; flags interval; elements = { 10.1.0.0/24 . "kn0" }; }'));
  assert.ok(l.includes('set nat6 { type ipv6_addr . ifname; flags interval; elements = { fd00:1::/64 . "kn0" }; }'));
  assert.ok(
    l.includes(
      'set local4 { type ipv4_addr . ifname; flags interval; elements = { 10.1.0.0/24 . "kn0", 10.2.0.0/24 . "kn1", 10.3.0.0/24 . "kn2" }; }',
    ),
  );
});

test('ruleset: networks of different tenants may share a subnet', () => {
  const t = rulesetText({
    networks: [
      { bridge: 'kn0', subnets: ['10.1.0.0/24'], internal: false, masquerade: true },
      { bridge: 'kn1', subnets: ['10.1.0.0/24'], internal: false, masquerade: true },
      { bridge: 'kn2', subnets: ['10.0.0.0/8'], internal: false, masquerade: true },
    ],
    ports: [],
  });
  assert.ok(t.includes('elements = { 10.1.0.0/24 . "kn0", 10.1.0.0/24 . "kn1", 10.0.0.0/8 . "kn2" }'));
});

test('ruleset: maps carry published ports, any-address ones apart', () => {
  const l = lines(rulesetText(state));
  assert.ok(l.some((x) => x.startsWith('map pub4any {') && x.includes('elements = { tcp . 8080 : 10.1.0.2 . 80 }')));
  assert.ok(l.some((x) => x.startsWith('map pub4 {') && x.includes('elements = { 192.0.2.1 . udp . 53 : 10.1.0.3 . 5353 }')));
  assert.ok(l.some((x) => x.startsWith('map pub6any {') && x.includes('elements = { tcp . 443 : fd00:1::2 . 443 }')));
  assert.ok(l.some((x) => x.startsWith('map pub6 {') && x.includes('2001:db8::1 . tcp . 22 : fd00:1::2 . 22')));
});

test('ruleset: the rules are fixed and never name a network or port', () => {
  const empty = rulesetText({ networks: [], ports: [] });
  const full = rulesetText(state);
  const rules = (t: string) => lines(t).filter((x) => !x.startsWith('set ') && !x.startsWith('map '));
  assert.deepEqual(rules(full), rules(empty));
  const l = lines(empty);
  for (const key of [
    'meta l4proto { tcp, udp } fib daddr type local dnat ip to meta l4proto . th dport map @pub4any',
    'ct status dnat ip saddr 127.0.0.0/8 oifname @bridges masquerade',
    'ct status dnat ip saddr . oifname @local4 masquerade',
    'ip saddr . iifname @nat4 iifname . oifname != @same_bridge masquerade',
    'iifname . oifname @same_bridge accept',
    'iifname @bridges oifname @bridges drop',
    'type nat hook output priority -100; policy accept;',
  ]) {
    assert.ok(l.includes(key), key);
  }
  // Same-bridge traffic (br_netfilter) is accepted before isolation drops it.
  assert.ok(l.indexOf('iifname . oifname @same_bridge accept') < l.indexOf('iifname @bridges oifname @bridges drop'));
});

test('ruleset: a host port mapped twice to different endpoints is refused', () => {
  assert.throws(
    () =>
      rulesetText({
        networks: [],
        ports: [
          { proto: 'tcp', hostPort: 80, containerIP: '10.1.0.2', containerPort: 80 },
          { proto: 'tcp', hostIP: '0.0.0.0', hostPort: 80, containerIP: '10.1.0.3', containerPort: 80 },
        ],
      }),
    /mapped twice/,
  );
  // The same mapping twice is just one element.
  const t = rulesetText({
    networks: [],
    ports: [
      { proto: 'tcp', hostPort: 80, containerIP: '10.1.0.2', containerPort: 80 },
      { proto: 'tcp', hostPort: 80, containerIP: '10.1.0.2', containerPort: 80 },
    ],
  });
  assert.ok(t.includes('elements = { tcp . 80 : 10.1.0.2 . 80 }'));
});

test('ruleset: bad input names the field', () => {
  const bad = (f: () => unknown, field: string) =>
    assert.throws(f, (e: unknown) => e instanceof KnitError && e.code === 'invalid' && e.field === field);
  bad(() => networkElements({ bridge: 'a"b', subnets: [], internal: false, masquerade: true }), 'bridge');
  bad(() => networkElements({ bridge: 'waytoolongbridgename', subnets: [], internal: false, masquerade: true }), 'bridge');
  bad(() => networkElements({ bridge: 'kn0', subnets: ['10.0.0.0'], internal: false, masquerade: true }), 'subnets');
  bad(() => mapElement({ proto: 'tcp', hostPort: 0, containerIP: '10.0.0.2', containerPort: 80 }), 'ports.hostPort');
  bad(() => mapElement({ proto: 'tcp', hostPort: 1, containerIP: '10.0.0.2', containerPort: 70000 }), 'ports.containerPort');
  bad(() => mapElement({ proto: 'tcp', hostIP: '::1', hostPort: 1, containerIP: '10.0.0.2', containerPort: 1 }), 'ports.hostIP');
  bad(() => mapElement({ proto: 'sctp' as 'tcp', hostPort: 1, containerIP: '10.0.0.2', containerPort: 1 }), 'ports.proto');
  // Host bits in a subnet are cleared, not refused (a gateway CIDR works too).
  assert.deepEqual(networkElements({ bridge: 'kn0', subnets: ['10.1.0.1/24'], internal: false, masquerade: true }).nat4, [
    '10.1.0.0/24 . "kn0"',
  ]);
});

test('ruleset: the bridge table untracks frames bridged between Knit ports only', () => {
  const l = lines(bridgeRulesetText());
  assert.deepEqual(l.slice(0, 3), ['table bridge knit', 'delete table bridge knit', 'table bridge knit {']);
  // Before br_netfilter (priority 0) hands the frame to the inet hooks and conntrack.
  assert.ok(l.includes('type filter hook prerouting priority -300; policy accept;'));
  assert.ok(l.includes('meta pkttype other iifname "kn*" notrack'));
  assert.equal(lines(bridgeRulesetText('knit2'))[1], 'delete table bridge knit2');
});
