// host: the sandbox is the host's own namespace; there is nothing to create.
// The engine points such a sandbox's netnsPath at the daemon's namespace.
import type { NetworkDriver } from './driver.ts';

export const hostDriver: NetworkDriver = {
  name: 'host',
  usesIpam: false,
  createNetwork() {},
  deleteNetwork() {},
  attach() {},
  detach() {},
  check() {
    return [];
  },
};
