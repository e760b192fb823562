// Deleting a network device waits for an RCU grace period (~20 ms here),
// however it is asked; deleting many in one request waits once for all of
// them. So links are retired instead: taken down and moved into one interface
// group at once (no wait), and one background request deletes the group.
// Retirements that arrive while a delete runs go in the next one, so a burst
// of them costs about one grace period.
//
// A retired link still holds its name until the reap. Whoever is about to
// create an interface of that name in that namespace waits first (clear()).
import type { NetlinkSocket } from './netlink/socket.ts';
import { NetlinkError } from './netlink/socket.ts';
import { deleteLinksInGroupAsync, setLink } from './link.ts';

/** Where a retired link's other end lives, under which name (a veth's peer). */
export interface PeerName {
  netnsPath: string;
  ifname: string;
}

export class LinkReaper {
  readonly group: number;
  private readonly nl: NetlinkSocket;
  /** Retired, not yet deleted: link name -> its peer's namespace and name. */
  private readonly pending = new Map<string, string>();
  private running: Promise<void> | undefined;
  private onError: (err: unknown) => void;

  constructor(nl: NetlinkSocket, group: number, onError: (err: unknown) => void = () => undefined) {
    this.nl = nl;
    this.group = group;
    this.onError = onError;
  }

  /**
   * Takes the link down and out of the way now; it is deleted shortly, with
   * every other link retired by then. A link already gone is fine: false
   * says there was none of that name.
   */
  retire(name: string, peer?: PeerName): boolean {
    try {
      setLink(this.nl, name, { up: false, group: this.group });
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === 19) return false; // ENODEV: nothing to retire
      throw err;
    }
    this.pending.set(name, peer ? keyOf(peer) : '');
    this.running ??= this.reap();
    return true;
  }

  /** How many links wait for their delete. */
  get size(): number {
    return this.pending.size;
  }

  /** Resolves when no retired link holds this name in this namespace. */
  async clear(peer: PeerName): Promise<void> {
    const key = keyOf(peer);
    while (this.running && [...this.pending.values()].includes(key)) {
      await this.running;
    }
  }

  /** Resolves when every retired link is deleted (shutdown, tests). */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }

  private async reap(): Promise<void> {
    // Let the retirements of this turn of the event loop join the first delete.
    await new Promise((r) => setImmediate(r));
    while (this.pending.size > 0) {
      const batch = [...this.pending.keys()];
      try {
        await deleteLinksInGroupAsync(this.nl, this.group);
      } catch (err) {
        this.onError(err);
      }
      for (const name of batch) this.pending.delete(name);
    }
    this.running = undefined;
  }
}

function keyOf(p: PeerName): string {
  return `${p.netnsPath}\0${p.ifname}`;
}
