// What the operations in networks.ts, sandboxes.ts, endpoints.ts and
// published-ports.ts reach of the Engine. The Engine builds one context and
// passes it as their first argument, so its mutex and its files are shared
// with them deliberately, not made part of its public surface.
import type { EventEmitter } from 'node:events';
import type { Host } from './host.ts';
import type { Ipam } from '../ipam/ipam.ts';
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import type { Mutex } from './mutex.ts';
import type { State } from './state.ts';
import { messageOf } from '../lib/errors.ts';
import type { SpareDirs } from '../lib/spare-dirs.ts';

export interface EngineEvents {
  'endpoint-up': [ep: Endpoint, net: Network, sb: Sandbox];
  'endpoint-down': [ep: Endpoint, net: Network, sb: Sandbox];
  /** A network was created (realized in the kernel) or removed; services such as DNS follow them. */
  'network-up': [net: Network];
  'network-down': [net: Network];
}

export interface EngineContext {
  readonly state: State;
  readonly host: Host;
  readonly ipam: Ipam;
  /** Mutations run one at a time under it (see mutex.ts). */
  readonly mutex: Mutex;
  /** Directory for /etc/netns-style per-sandbox files (resolv.conf, hosts). */
  readonly etcNetnsDir: string;
  /** Made-ahead dirs for it; a removed sandbox's dir goes back to them. */
  readonly etcDirs: SpareDirs | undefined;
  /** The Engine's own emit: listeners (DNS, the agent) follow endpoints and networks. */
  readonly emit: EventEmitter<EngineEvents>['emit'];
}

/** Runs undo steps, each even when an earlier one failed; keeps the first error's context in the log. */
export async function undo(what: string, steps: (() => unknown)[]): Promise<void> {
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      process.stderr.write(`knit: undoing ${what}: ${messageOf(err)}\n`);
    }
  }
}
