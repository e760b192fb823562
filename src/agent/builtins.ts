// Networks that exist from the start, as in Docker: `none`, `host`, and the
// default bridge network `bridge` on bridge knit0.
import type { Engine } from '../engine/engine.ts';
import type { Network } from '../model/index.ts';
import { newId } from '../engine/ids.ts';

export async function ensureBuiltinNetworks(engine: Engine, defaultBridge: boolean): Promise<void> {
  for (const [name, driver] of [['none', 'null'], ['host', 'host']] as const) {
    if (await engine.state.network(name)) continue;
    const net: Network = {
      id: newId(),
      name,
      tenant: 'default',
      driver,
      scope: 'local',
      subnets: [],
      ipv6: false,
      internal: false,
      mtu: 1500,
      icc: true,
      masquerade: false,
      dns: false,
      fastpath: false,
      options: {},
      labels: {},
      origin: 'builtin',
      created: new Date().toISOString(),
    };
    await engine.state.putNetwork(net, true).catch(() => undefined); // another start won the race
  }
  if (defaultBridge && !(await engine.state.network('bridge'))) {
    await engine.createNetwork({ name: 'bridge', driver: 'bridge', options: { bridge: 'knit0' } });
    const net = await engine.state.network('bridge');
    if (net) await engine.state.putNetwork({ ...net, origin: 'builtin' });
  }
}
