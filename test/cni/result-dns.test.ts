// The CNI result's dns section: Knit's server first, the config's values appended.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resultDns } from '../../src/cni/result-dns.ts';

const knit = { nameservers: ['10.1.0.1', 'fd00::1'], search: ['net1'] };

test("Knit's server and domain first, the runtime's then the config's values after, no repeats", () => {
  assert.deepEqual(
    resultDns(knit, { nameservers: ['9.9.9.9', '10.1.0.1'], search: ['pod.test'], options: ['ndots:2'] }, { nameservers: ['1.1.1.1'], domain: 'corp.test', search: ['corp.test'], options: ['ndots:2', 'edns0'] }),
    { nameservers: ['10.1.0.1', 'fd00::1', '9.9.9.9', '1.1.1.1'], domain: 'corp.test', search: ['net1', 'pod.test', 'corp.test'], options: ['ndots:2', 'edns0'] },
  );
});

test('no Knit server: only the configured values; nothing at all: no section', () => {
  const none = { nameservers: [], search: [] };
  assert.deepEqual(resultDns(none, undefined, { nameservers: ['1.1.1.1'] }), { nameservers: ['1.1.1.1'] });
  assert.equal(resultDns(none, undefined, undefined), undefined);
  assert.deepEqual(resultDns(knit, undefined, undefined), { nameservers: ['10.1.0.1', 'fd00::1'], search: ['net1'] });
});
