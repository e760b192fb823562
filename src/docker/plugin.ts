// Knit as Docker's remote NetworkDriver and IpamDriver: the route table, one
// lock for every call (dockerd calls concurrently; each call's checks and
// writes must not interleave with another's), restore after a restart, and
// the DOCKER-USER rules that let Knit's bridges forward beside dockerd.
import type { Server } from 'node:http';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../engine/engine.ts';
import { Mutex } from '../engine/mutex.ts';
import { Nft } from '../kernel/nft.ts';
import { bridgeName } from '../drivers/common.ts';
import { DockerRecords } from './records.ts';
import { DockerIpamDriver } from './ipam-driver.ts';
import { DockerNetworkDriver } from './network-driver.ts';
import { DockerUserRules } from './docker-user.ts';
import { listenPlugin, pluginHandler, type Handler, type Route } from './server.ts';
import { ipamError, networkError } from './translate.ts';
import type { Timings } from '../agent/metrics.ts';

export const DEFAULT_PLUGIN_DIR = '/run/docker/plugins';
export const PLUGIN_NAME = 'knit';

export interface DockerPlugin {
  socket: string;
  server: Server;
  dockerUser: DockerUserRules;
  close(): Promise<void>;
}

export function dockerUserRules(engine: Engine, log: (m: string) => void): DockerUserRules {
  return new DockerUserRules({
    nft: Nft.open(),
    bridges: async () => (await engine.state.networks()).filter((n) => n.driver === 'bridge').map(bridgeName),
    log,
  });
}

export async function startDockerPlugin(engine: Engine, opts: { dir: string; log: (m: string) => void; dockerUser: DockerUserRules; timings?: Timings }): Promise<DockerPlugin> {
  const records = new DockerRecords(engine.state.store);
  const ipam = new DockerIpamDriver(engine, records);
  const net = new DockerNetworkDriver(engine, records);
  net.onNetworksChanged = () => void opts.dockerUser.check();
  await ipam.restore(opts.log);
  await net.restore(opts.log);

  const lock = new Mutex();
  const routes = new Map<string, Route>();
  const add = (path: string, handle: Handler, error: Route['error'], locked = true) =>
    routes.set(path, { handle: locked ? (b) => lock.run(async () => handle(b)) : handle, error });
  const nd = (m: string, h: Handler, locked = true) => add(`/NetworkDriver.${m}`, h, networkError, locked);
  const id = (m: string, h: Handler, locked = true) => add(`/IpamDriver.${m}`, h, ipamError, locked);

  add(
    '/Plugin.Activate',
    () => {
      // dockerd activates plugins when it starts: its rules may have been rewritten.
      void opts.dockerUser.check();
      return { Implements: ['NetworkDriver', 'IpamDriver'] };
    },
    networkError,
    false,
  );
  nd('GetCapabilities', () => net.capabilities(), false);
  nd('CreateNetwork', (b) => net.createNetwork(b));
  nd('DeleteNetwork', (b) => net.deleteNetwork(b));
  // Swarm-only calls (global-scope allocation, node discovery): nothing to do on one host.
  nd('AllocateNetwork', () => ({ Options: {} }), false);
  nd('FreeNetwork', () => ({}), false);
  nd('DiscoverNew', () => ({}), false);
  nd('DiscoverDelete', () => ({}), false);
  nd('CreateEndpoint', (b) => net.createEndpoint(b));
  nd('EndpointOperInfo', (b) => net.endpointOperInfo(b), false);
  nd('DeleteEndpoint', (b) => net.deleteEndpoint(b));
  nd('Join', (b) => net.join(b));
  nd('Leave', (b) => net.leave(b), false);
  nd('ProgramExternalConnectivity', (b) => net.programExternalConnectivity(b));
  nd('RevokeExternalConnectivity', (b) => net.revokeExternalConnectivity(b));
  id('GetCapabilities', () => ipam.capabilities(), false);
  id('GetDefaultAddressSpaces', () => ipam.defaultAddressSpaces(), false);
  id('RequestPool', (b) => ipam.requestPool(b));
  id('ReleasePool', (b) => ipam.releasePool(b));
  id('RequestAddress', (b) => ipam.requestAddress(b));
  id('ReleaseAddress', (b) => ipam.releaseAddress(b));

  const socket = join(opts.dir, `${PLUGIN_NAME}.sock`);
  const server = await listenPlugin(pluginHandler(routes, opts.log, opts.timings), socket);
  opts.log(`docker plugin '${PLUGIN_NAME}' (NetworkDriver, IpamDriver) on ${socket}`);
  return {
    socket,
    server,
    dockerUser: opts.dockerUser,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      rmSync(socket, { force: true });
    },
  };
}
