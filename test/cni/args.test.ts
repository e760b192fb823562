import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseArgPairs, parseCniArgs, stringifyArgs } from '../../src/cni/args.ts';

describe('CNI_ARGS (plugin side, types.LoadArgs)', () => {
  it('reads the known keys', () => {
    assert.deepEqual(parseCniArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IP=10.0.0.5,fd00::5/64;MAC=C2-11-22-33-44-55'), {
      IgnoreUnknown: true,
      K8S_POD_NAMESPACE: 'default',
      K8S_POD_NAME: 'web-0',
      IP: ['10.0.0.5', 'fd00::5/64'],
      MAC: 'c2:11:22:33:44:55',
    });
    assert.deepEqual(parseCniArgs(''), {});
  });

  it('refuses unknown keys unless IgnoreUnknown', () => {
    assert.throws(() => parseCniArgs('FOO=1;BAR=2'), { message: 'ARGS: unknown args ["FOO=1" "BAR=2"]' });
    assert.deepEqual(parseCniArgs('FOO=1;IgnoreUnknown=TRUE'), { IgnoreUnknown: true });
    assert.throws(() => parseCniArgs('FOO=1;IgnoreUnknown=0'), /unknown args/);
  });

  it('refuses malformed pairs and values, naming the pair', () => {
    assert.throws(() => parseCniArgs('IP'), { message: 'ARGS: invalid pair "IP"' });
    assert.throws(() => parseCniArgs('IP=a=b'), { message: 'ARGS: invalid pair "IP=a=b"' });
    assert.throws(() => parseCniArgs('K8S_POD_NAME=x;'), { message: 'ARGS: invalid pair ""' });
    assert.throws(() => parseCniArgs('IP=10.0.0.300'), { message: 'ARGS: error parsing value of pair "IP=10.0.0.300": invalid IP address: 10.0.0.300' });
    assert.throws(() => parseCniArgs('MAC=zz'), /error parsing value of pair "MAC=zz"/);
    assert.throws(() => parseCniArgs('IgnoreUnknown=yes'), /boolean unmarshal error: invalid input yes/);
  });

  it('keys are case-sensitive', () => {
    assert.throws(() => parseCniArgs('ip=10.0.0.1'), /unknown args \["ip=10.0.0.1"\]/);
  });
});

describe('CNI_ARGS (runtime side)', () => {
  it('round-trips pairs', () => {
    const pairs = parseArgPairs('IgnoreUnknown=1;K8S_POD_NAME=x');
    assert.deepEqual(pairs, [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'x']]);
    assert.equal(stringifyArgs(pairs), 'IgnoreUnknown=1;K8S_POD_NAME=x');
    assert.throws(() => parseArgPairs('A='), /invalid CNI_ARGS pair "A="/);
  });
});
