import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ResultCache } from '../../src/cni/cache.ts';
import type { RuntimeConf } from '../../src/cni/conf.ts';

const dir = mkdtempSync(join(tmpdir(), 'knit-cni-cache-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const rt: RuntimeConf = {
  containerID: 'abc',
  netns: '/run/netns/blue',
  ifName: 'eth0',
  args: [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'x']],
  capabilityArgs: { portMappings: [{ hostPort: 80, containerPort: 8080, protocol: 'tcp' }] },
};
const config = Buffer.from('{"cniVersion":"1.0.0","name":"dbnet","plugins":[{"type":"bridge"}]}');

describe('result cache', () => {
  it('writes libcni’s exact layout', () => {
    const cache = new ResultCache(dir);
    cache.add({ cniVersion: '1.0.0', ips: [{ address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 2 }] }, config, 'dbnet', rt);
    const file = join(dir, 'results', 'dbnet-abc-eth0');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'results')).mode & 0o777, 0o700);
    assert.equal(
      readFileSync(file, 'utf8'),
      `{"kind":"cniCacheV1","containerId":"abc","config":"${config.toString('base64')}","ifName":"eth0","networkName":"dbnet",` +
        `"netns":"/run/netns/blue","cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","x"]],` +
        `"capabilityArgs":{"portMappings":[{"containerPort":8080,"hostPort":80,"protocol":"tcp"}]},` +
        `"result":{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.5/16","gateway":"10.1.0.1","interface":2}]}}`,
    );
    assert.deepEqual(cache.getResult('dbnet', '0.4.0', rt), {
      cniVersion: '0.4.0',
      ips: [{ version: '4', address: '10.1.0.5/16', gateway: '10.1.0.1', interface: 2 }],
      dns: {},
    });
    const cfg = cache.getConfig('dbnet', { ...rt, args: [], capabilityArgs: {} });
    assert.deepEqual(cfg?.config, config);
    assert.deepEqual(cfg?.rt.args, rt.args);
    assert.deepEqual(cfg?.rt.capabilityArgs, rt.capabilityArgs);
    const atts = cache.attachments('abc');
    assert.equal(atts.length, 1);
    assert.deepEqual([atts[0]?.network, atts[0]?.ifName, atts[0]?.netns], ['dbnet', 'eth0', '/run/netns/blue']);
    assert.deepEqual(cache.attachments('ab'), []);
    cache.del('dbnet', rt);
    cache.del('dbnet', rt);
    assert.equal(cache.getResult('dbnet', '1.0.0', rt), undefined);
  });

  it('reads the legacy bare-result format and skips junk when listing', () => {
    const cache = new ResultCache(dir);
    mkdirSync(cache.resultsDir, { recursive: true });
    writeFileSync(join(cache.resultsDir, 'old-abc-eth0'), JSON.stringify({ cniVersion: '0.3.1', ips: [{ version: '4', address: '10.0.0.9/24' }] }));
    writeFileSync(join(cache.resultsDir, 'junk-abc-eth0'), '');
    assert.equal(cache.getResult('old', '1.0.0', rt)?.cniVersion, '1.0.0');
    assert.deepEqual(cache.attachments(), []);
    assert.throws(() => cache.filePath('', rt), /cache file path requires network name/);
  });
});
