// The daemon's DNS service: keeps DnsRecords in step with the engine and runs
// one DnsServer listening on the gateway addresses of every DNS-enabled bridge
// network. The bridges and their gateways live in the daemon's own namespace,
// so the sockets are made here, with no setns. Knit's own sandboxes are told
// about it through /etc/netns/NAME/resolv.conf (etc-netns.ts).
import type { Engine } from '../engine/engine.ts';
import type { Endpoint, Network, Sandbox } from '../model/index.ts';
import { DnsRecords } from '../services/dns/records.ts';
import { DnsServer } from '../services/dns/server.ts';
import { watchHostUpstreams } from '../services/dns/resolvconf.ts';
import { parseUpstream } from '../services/dns/forward.ts';
import { invalid, messageOf } from '../lib/errors.ts';
import { sandboxEtc, writeSandboxEtc, type Attachment } from './etc-netns.ts';
import { dnsAddresses, servesDns, type DnsService } from '../services/dns/resolver.ts';
import { canonicalIP } from '../lib/ip.ts';

export interface DaemonDnsOptions {
  /** Upstream resolvers ("ip", "ip:port", "[v6]:port"); empty or absent: the host's /etc/resolv.conf. */
  upstreams?: string[];
  /** Port to serve on (53; tests and side-by-side daemons may pick another). */
  port?: number;
  log: (msg: string) => void;
}

// Re-exported: callers and tests of the daemon's DNS know them from here.
export { dnsAddresses, servesDns };

export class DaemonDns implements DnsService {
  readonly records = new DnsRecords();
  readonly server: DnsServer;
  readonly #engine: Engine;
  readonly #port: number;
  readonly #log: (msg: string) => void;
  readonly #upstreams: () => string[];
  /** Per sandbox id, its attachments in attach order (the first DNS network names the resolver). */
  readonly #attached = new Map<string, Map<string, Attachment>>();
  /** Per network id, the addresses it listens on (or is about to). */
  readonly #listening = new Map<string, string[]>();
  #ops: Promise<void> = Promise.resolve();
  readonly #unsubscribe: (() => void)[] = [];

  constructor(engine: Engine, opts: DaemonDnsOptions) {
    this.#engine = engine;
    this.#port = opts.port ?? 53;
    this.#log = opts.log;
    const fixed = opts.upstreams ?? [];
    fixed.forEach((spec, i) => {
      if (parseUpstream(spec) === undefined) throw invalid(`dns[${i}]`, `'${spec}' is not a resolver address (IP, IP:PORT or [IPv6]:PORT)`);
    });
    this.#upstreams = fixed.length > 0 ? () => fixed : watchHostUpstreams();
    this.server = new DnsServer({
      records: this.records,
      upstreams: this.#upstreams,
      log: opts.log,
    });
  }

  /**
   * Loads every ready endpoint, then listens: a query arriving at the first
   * moment already sees every name. Runs under the engine's mutex so no
   * attach or detach slips between the snapshot and the subscription.
   */
  async start(): Promise<void> {
    const nets = await this.#engine.exclusive(async () => {
      const { state } = this.#engine;
      const [networks, sandboxes, endpoints] = await Promise.all([state.networks(), state.sandboxes(), state.endpoints()]);
      const netById = new Map(networks.map((n) => [n.id, n]));
      const sbById = new Map(sandboxes.map((s) => [s.id, s]));
      const ordered = endpoints.filter((e) => e.state === 'ready').sort((a, b) => a.created.localeCompare(b.created));
      for (const ep of ordered) {
        const net = netById.get(ep.networkId);
        const sb = sbById.get(ep.sandboxId);
        if (net !== undefined && sb !== undefined) this.#add(ep, net, sb);
      }
      // A reboot empties /etc/netns; a crash may have left a file behind. Rewrite them all.
      for (const sb of sandboxes) if (sb.state === 'ready') this.#writeEtc(sb);
      this.#subscribe();
      return networks;
    });
    await Promise.all(nets.filter(servesDns).map((n) => this.#listen(n)));
  }

  async stop(): Promise<void> {
    for (const off of this.#unsubscribe.splice(0)) off();
    this.#listening.clear();
    await this.#serially(() => this.server.close());
  }

  /**
   * The addresses of `net` its DNS server answers on, after any listen under
   * way has finished: a CNI ADD names only a server that is there when the
   * container's first query comes. Empty when the network has no DNS or
   * its address could not be bound (port 53 taken).
   */
  async nameserversFor(net: Network): Promise<string[]> {
    if (!servesDns(net)) return [];
    // network-up normally started it; a network made before the subscription did not.
    await this.#listen(net);
    await this.#ops;
    const up = new Set(this.server.listening().map((l) => l.ip));
    return dnsAddresses(net).filter((ip) => up.has(canonicalIP(ip)));
  }

  #subscribe(): void {
    const up = (ep: Endpoint, net: Network, sb: Sandbox): void => {
      this.#add(ep, net, sb);
      this.#writeEtc(sb);
      if (servesDns(net)) void this.#listen(net);
    };
    const down = (ep: Endpoint, _net: Network, sb: Sandbox): void => {
      this.records.removeEndpoint(ep.id);
      const mine = this.#attached.get(sb.id);
      mine?.delete(ep.id);
      if (mine?.size === 0) this.#attached.delete(sb.id);
      this.#writeEtc(sb);
    };
    const netUp = (net: Network): void => {
      if (servesDns(net)) void this.#listen(net);
    };
    const netDown = (net: Network): void => void this.#unlisten(net);
    const e = this.#engine;
    e.on('endpoint-up', up);
    e.on('endpoint-down', down);
    e.on('network-up', netUp);
    e.on('network-down', netDown);
    this.#unsubscribe.push(
      () => e.off('endpoint-up', up),
      () => e.off('endpoint-down', down),
      () => e.off('network-up', netUp),
      () => e.off('network-down', netDown),
    );
  }

  #add(ep: Endpoint, net: Network, sb: Sandbox): void {
    let mine = this.#attached.get(sb.id);
    if (mine === undefined) {
      mine = new Map();
      this.#attached.set(sb.id, mine);
    }
    mine.set(ep.id, { ep, net });
    if (!servesDns(net)) return;
    const names = [sb.name, ...(sb.hostname === undefined ? [] : [sb.hostname]), ...ep.aliases];
    try {
      this.records.addEndpoint({
        id: ep.id,
        sandbox: sb.id,
        network: net.name,
        names,
        ...(ep.ipv4 === undefined ? {} : { ipv4: ep.ipv4.split('/')[0] as string }),
        ...(ep.ipv6 === undefined ? {} : { ipv6: ep.ipv6.split('/')[0] as string }),
      });
    } catch (err) {
      // A name DNS cannot carry (an alias with a blank, say) must not fail the attach that has happened.
      this.#log(`dns: names of ${sb.name} on ${net.name} not served: ${messageOf(err)}`);
    }
  }

  /**
   * Synchronous: an attach's files are there when its answer is, and a
   * detach's are written before the sandbox's dir may be removed. A new
   * sandbox's dir is a spare put in place (no file create on the way).
   */
  #writeEtc(sb: Sandbox): void {
    if (!sb.ownsNetns) return;
    const attachments = [...(this.#attached.get(sb.id)?.values() ?? [])];
    try {
      writeSandboxEtc(sandboxEtc(this.#engine.etcNetnsDir, sb, attachments, { servesDns, upstreams: this.#upstreams }), this.#engine.etcDirs);
    } catch (err) {
      this.#log(`dns: /etc/netns files of ${sb.name}: ${messageOf(err)}`);
    }
  }

  /** Listens and unlistens one after another, so a network deleted and made again reuses its address cleanly. */
  #serially(fn: () => Promise<void>): Promise<void> {
    this.#ops = this.#ops.then(fn, fn);
    return this.#ops;
  }

  #listen(net: Network): Promise<void> {
    if (this.#listening.has(net.id)) return this.#ops;
    const addresses = dnsAddresses(net);
    this.#listening.set(net.id, addresses);
    return this.#serially(async () => {
      for (const ip of addresses) {
        try {
          await this.server.listen({ ip, port: this.#port, network: net.name });
        } catch (err) {
          // Port 53 taken on that address (a host resolver on 0.0.0.0): the network works, without names.
          this.#log(`dns: cannot serve network ${net.name} on ${ip}:${this.#port}: ${messageOf(err)}`);
        }
      }
    });
  }

  #unlisten(net: Network): Promise<void> {
    const addresses = this.#listening.get(net.id);
    if (addresses === undefined) return this.#ops;
    this.#listening.delete(net.id);
    return this.#serially(async () => {
      for (const ip of addresses) await this.server.unlisten(ip);
    });
  }
}
