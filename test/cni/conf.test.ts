import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  buildOneConfig,
  confListFromBytes,
  injectRuntimeConfig,
  loadNetworkConfList,
  pluginConfFromBytes,
  type RuntimeConf,
} from '../../src/cni/conf.ts';

const dir = mkdtempSync(join(tmpdir(), 'knit-cni-conf-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const b = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

describe('configuration lists', () => {
  it('negotiates the version from cniVersion and cniVersions', () => {
    const l = confListFromBytes(b({ cniVersion: '0.4.0', cniVersions: ['1.0.0', '1.1.0', '9.9.9'], name: 'n', plugins: [{ type: 'x' }] }));
    assert.equal(l.cniVersion, '1.1.0');
  });

  it('reads boolean-or-string flags', () => {
    const l = confListFromBytes(b({ name: 'n', disableCheck: 'TRUE', disableGC: true, plugins: [{ type: 'x' }] }));
    assert.equal(l.disableCheck, true);
    assert.equal(l.disableGC, true);
    assert.throws(() => confListFromBytes(b({ name: 'n', disableCheck: 'yes', plugins: [{ type: 'x' }] })), {
      message: 'error parsing configuration list: invalid value "yes" for disableCheck',
    });
    assert.throws(() => confListFromBytes(b({ name: 'n', disableGC: 1, plugins: [{ type: 'x' }] })), /invalid type float64 for disableGC/);
  });

  it('names what is wrong', () => {
    assert.throws(() => confListFromBytes(b({ plugins: [] })), /no name/);
    assert.throws(() => confListFromBytes(b({ name: 3 })), /invalid name type float64/);
    assert.throws(() => confListFromBytes(b({ name: 'n', cniVersion: 1 })), /invalid cniVersion type float64/);
    assert.throws(() => confListFromBytes(b({ name: 'n', plugins: [] })), /no plugins in list/);
    assert.throws(() => confListFromBytes(b({ name: 'n', plugins: {} })), /invalid 'plugins' type/);
    assert.throws(() => confListFromBytes(b({ name: 'n', loadOnlyInlinedPlugins: true })), /loadOnlyInlinedPlugins/);
    assert.throws(() => confListFromBytes(b({ name: 'n', plugins: [{ type: 'a' }, { bridge: 'x' }] })), {
      message: "failed to parse plugin config 1: error parsing configuration: missing 'type'",
    });
    assert.throws(
      () => confListFromBytes(b({ name: 'n', plugins: [{ type: 'a', capabilities: { portMappings: 'yes' } }] })),
      /failed to parse plugin config 0: error parsing configuration: capabilities\.portMappings: /,
    );
    assert.throws(() => confListFromBytes(b('{"name": ')), /error parsing configuration list: /);
  });

  it('loads conflists first, in lexical order, then .conf/.json, and sibling plugins', () => {
    const d = join(dir, 'load');
    mkdirSync(join(d, 'net2'), { recursive: true });
    writeFileSync(join(d, '20-a.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'net1', plugins: [{ type: 'second' }] }));
    writeFileSync(join(d, '10-a.conflist'), JSON.stringify({ cniVersion: '1.0.0', name: 'net1', plugins: [{ type: 'first' }] }));
    writeFileSync(join(d, '30.conflist'), JSON.stringify({ cniVersion: '1.1.0', name: 'net2' }));
    writeFileSync(join(d, 'net2', '2.conf'), JSON.stringify({ type: 'p2' }));
    writeFileSync(join(d, 'net2', '1.conf'), JSON.stringify({ type: 'p1' }));
    writeFileSync(join(d, '05.conf'), JSON.stringify({ cniVersion: '0.4.0', name: 'legacy', type: 'bridge', bridge: 'br9' }));
    assert.equal(loadNetworkConfList(d, 'net1').plugins[0]?.network.type, 'first');
    assert.deepEqual(loadNetworkConfList(d, 'net2').plugins.map((p) => p.network.type), ['p1', 'p2']);
    const legacy = loadNetworkConfList(d, 'legacy');
    assert.equal(legacy.cniVersion, '0.4.0');
    assert.equal(legacy.plugins[0]?.raw.bridge, 'br9');
    assert.throws(() => loadNetworkConfList(d, 'nope'), { message: `no net configuration with name "nope" in ${d}` });
    assert.throws(() => loadNetworkConfList(join(dir, 'empty'), 'x'), /no net configurations found in/);
  });
});

describe('per-plugin request', () => {
  const rt: RuntimeConf = {
    containerID: 'c',
    netns: '/run/netns/x',
    ifName: 'eth0',
    args: [],
    capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], mac: 'c2:11:22:33:44:55' },
  };

  it('injects name, version and the declared capabilities only', () => {
    const p = pluginConfFromBytes(b({ type: 'portmap', cniVersion: '0.1.0', name: 'other', capabilities: { portMappings: true, mac: false } }));
    const out = buildOneConfig('net', '1.0.0', p, { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] }, rt);
    const stdin = JSON.parse(out.bytes.toString());
    assert.equal(stdin.name, 'net');
    assert.equal(stdin.cniVersion, '1.0.0');
    assert.deepEqual(stdin.runtimeConfig, { portMappings: rt.capabilityArgs.portMappings });
    assert.deepEqual(stdin.prevResult, { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] });
    // libcni marshals through a map: keys come out sorted.
    assert.deepEqual(Object.keys(stdin), [...Object.keys(stdin)].sort());
  });

  it('keeps a static runtimeConfig when no capability applies', () => {
    const p = pluginConfFromBytes(b({ type: 'x', runtimeConfig: { a: 1 } }));
    assert.deepEqual(injectRuntimeConfig(p, rt).raw.runtimeConfig, { a: 1 });
  });
});
