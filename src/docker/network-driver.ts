// Docker's remote NetworkDriver over Knit's Engine. A Docker network is a
// Knit bridge network (same id); a Docker sandbox key is a Knit sandbox that
// adopts dockerd's namespace; a Docker endpoint is a Knit endpoint whose
// veth peer stays in the host namespace for dockerd to move (Join contract).
import type { Engine } from '../engine/engine.ts';
import type { Network } from '../model/index.ts';
import { KnitError, notFound } from '../lib/errors.ts';
import { familyOf } from '../lib/ip.ts';
import { macFromIPv4, randomMac } from '../kernel/mac.ts';
import { DockerRecords, addressHolder, pendingOwner } from './records.ts';
import { isPending } from './ipam-driver.ts';
import {
  CreateEndpointRequest,
  CreateNetworkRequest,
  EndpointRef,
  JoinRequest,
  NetworkRef,
  ProgramRequest,
  macFromDocker,
  networkCreateFromDocker,
  parseRequest,
  peerNameFor,
  portMappingsFromDocker,
  sandboxNameFor,
  stripLen,
} from './translate.ts';

type Reply = Record<string, unknown>;

export class DockerNetworkDriver {
  readonly engine: Engine;
  readonly records: DockerRecords;
  /** Called after a network appears or goes (the DOCKER-USER rules follow the bridges). */
  onNetworksChanged: () => void = () => undefined;

  constructor(engine: Engine, records: DockerRecords) {
    this.engine = engine;
    this.records = records;
  }

  capabilities(): Reply {
    // Local until hosts form a cluster.
    return { Scope: 'local', ConnectivityScope: 'local' };
  }

  async createNetwork(body: unknown): Promise<Reply> {
    const req = parseRequest(CreateNetworkRequest, body, 'CreateNetwork');
    if (await this.networkById(req.NetworkID)) return {};
    const pools = (await this.records.allPools()).filter((p) => !p.networkId);
    const used: string[] = [];
    const input = networkCreateFromDocker(req, (subnet) => {
      const p = pools.find((q) => q.subnet === subnet);
      if (p) used.push(p.id);
      return p;
    });
    await this.engine.createNetwork(input, { adoptIpam: used.map((id) => `docker-pool-${id}`) });
    for (const id of used) {
      const p = await this.records.pool(id);
      if (p) await this.records.putPool({ ...p, networkId: req.NetworkID });
    }
    this.onNetworksChanged();
    return {};
  }

  async deleteNetwork(body: unknown): Promise<Reply> {
    const { NetworkID } = parseRequest(NetworkRef, body, 'DeleteNetwork');
    const net = await this.networkById(NetworkID);
    if (!net) return {};
    // Endpoints dockerd forgot (a container that died while Knit was down) must not block it.
    for (const ep of (await this.engine.state.endpoints()).filter((e) => e.networkId === NetworkID && e.hostPeer)) {
      await this.deleteEndpointNow(ep.id);
    }
    await this.engine.deleteNetwork(net.name);
    for (const p of await this.records.allPools()) if (p.networkId === NetworkID) await this.records.deletePool(p.id);
    this.onNetworksChanged();
    return {};
  }

  async createEndpoint(body: unknown): Promise<Reply> {
    const req = parseRequest(CreateEndpointRequest, body, 'CreateEndpoint');
    const net = await this.mustNetwork(req.NetworkID);
    const ipv4 = req.Interface.Address || undefined;
    const ipv6 = req.Interface.AddressIPv6 || undefined;
    for (const cidr of [ipv4, ipv6]) if (cidr) await this.hold(net, cidr);
    const given = macFromDocker(req.Interface.MacAddress, req.Options);
    const mac = given ?? (ipv4 ? macFromIPv4(stripLen(ipv4)) : randomMac());
    await this.records.putEndpoint({
      id: req.EndpointID,
      networkId: net.id,
      mac,
      created: new Date().toISOString(),
      ...(ipv4 ? { ipv4 } : {}),
      ...(ipv6 ? { ipv6 } : {}),
    });
    // Only fields dockerd left empty may be returned: setting one again rolls the endpoint back.
    return req.Interface.MacAddress ? {} : { Interface: { MacAddress: mac } };
  }

  async endpointOperInfo(body: unknown): Promise<Reply> {
    const { EndpointID } = parseRequest(EndpointRef, body, 'EndpointOperInfo');
    const ep = await this.engine.endpoint(EndpointID);
    const rec = ep ? undefined : await this.records.endpoint(EndpointID);
    if (!ep && !rec) return { Value: {} };
    const value: Record<string, unknown> = ep
      ? { id: ep.id, hostIfname: ep.hostIfname, mac: ep.mac, ipv4: ep.ipv4, ipv6: ep.ipv6, ports: ep.ports }
      : { id: rec?.id, mac: rec?.mac, ipv4: rec?.ipv4, ipv6: rec?.ipv6 };
    return { Value: value };
  }

  async join(body: unknown): Promise<Reply> {
    const req = parseRequest(JoinRequest, body, 'Join');
    const net = await this.mustNetwork(req.NetworkID);
    const rec = await this.records.endpoint(req.EndpointID);
    if (!rec) throw notFound(`endpoint ${req.EndpointID.slice(0, 12)} was not created through Knit (CreateEndpoint first)`);
    const sbName = sandboxNameFor(req.SandboxKey);
    const existed = await this.engine.state.sandbox(sbName);
    if (!existed) await this.engine.createSandbox({ name: sbName, netnsPath: req.SandboxKey, origin: 'docker' });
    const peer = peerNameFor(req.EndpointID);
    if (!(await this.engine.endpoint(req.EndpointID))) {
      // The addresses pass from their pending owner to the endpoint.
      const pending = await this.pendingOf(net.id, [rec.ipv4, rec.ipv6]);
      for (const ip of pending) await this.engine.ipam.release(net.id, ip);
      try {
        await this.engine.connect(net.name, {
          sandbox: sbName,
          endpointId: req.EndpointID,
          hostPeer: peer,
          mac: rec.mac,
          ...(rec.ipv4 ? { ip: stripLen(rec.ipv4) } : {}),
          ...(rec.ipv6 ? { ipv6: stripLen(rec.ipv6) } : {}),
        });
      } catch (err) {
        for (const ip of pending) {
          await this.engine.ipam.allocate(net.id, { family: familyOf(ip) ?? 4, ip, owner: pendingOwner('join', ip) }).catch(() => undefined);
        }
        if (!existed) await this.dropSandboxIfEmpty(sbName);
        throw err;
      }
    }
    const reply: Reply = {
      InterfaceName: { SrcName: peer, DstPrefix: net.options['com.docker.network.container_iface_prefix'] || 'eth' },
      StaticRoutes: [],
      DisableGatewayService: false,
    };
    // A gateway keeps dockerd from adding docker_gwbridge; internal networks have none and need none.
    if (!net.internal) {
      const gw4 = rec.ipv4 ? net.subnets.find((s) => s.gateway && !s.subnet.includes(':'))?.gateway : undefined;
      const gw6 = rec.ipv6 ? net.subnets.find((s) => s.gateway && s.subnet.includes(':'))?.gateway : undefined;
      if (gw4) reply.Gateway = gw4;
      if (gw6) reply.GatewayIPv6 = gw6;
    }
    return reply;
  }

  leave(body: unknown): Reply {
    // dockerd pulls the interface back itself; DeleteEndpoint removes the veth.
    parseRequest(EndpointRef, body, 'Leave');
    return {};
  }

  async deleteEndpoint(body: unknown): Promise<Reply> {
    const { EndpointID } = parseRequest(EndpointRef, body, 'DeleteEndpoint');
    await this.deleteEndpointNow(EndpointID);
    return {};
  }

  async programExternalConnectivity(body: unknown): Promise<Reply> {
    const req = parseRequest(ProgramRequest, body, 'ProgramExternalConnectivity');
    const ports = portMappingsFromDocker(req.Options);
    const ep = await this.engine.endpoint(req.EndpointID);
    if (!ep) throw notFound(`endpoint ${req.EndpointID.slice(0, 12)} has not joined a sandbox`);
    if (ports.length === 0 && ep.ports.length === 0) return {};
    await this.engine.setEndpointPorts(req.EndpointID, ports);
    return {};
  }

  async revokeExternalConnectivity(body: unknown): Promise<Reply> {
    const { EndpointID } = parseRequest(EndpointRef, body, 'RevokeExternalConnectivity');
    const ep = await this.engine.endpoint(EndpointID);
    if (ep && ep.ports.length) await this.engine.setEndpointPorts(EndpointID, []);
    return {};
  }

  /** After a restart: addresses of endpoints that had not joined yet are held again. */
  async restore(log: (m: string) => void): Promise<void> {
    for (const rec of await this.records.allEndpoints()) {
      if (await this.engine.endpoint(rec.id)) continue;
      const net = await this.networkById(rec.networkId);
      if (!net) continue;
      for (const cidr of [rec.ipv4, rec.ipv6]) {
        if (!cidr) continue;
        try {
          await this.hold(net, cidr);
        } catch (err) {
          log(`docker: cannot hold ${cidr} for endpoint ${rec.id.slice(0, 12)}: ${(err as Error).message}`);
        }
      }
    }
  }

  private async deleteEndpointNow(id: string): Promise<void> {
    const ep = await this.engine.endpoint(id);
    if (ep) {
      const sb = (await this.engine.state.sandboxes()).find((s) => s.id === ep.sandboxId);
      await this.engine.disconnectEndpoint(id);
      if (sb?.origin === 'docker') await this.dropSandboxIfEmpty(sb.name);
    }
    await this.records.deleteEndpoint(id);
  }

  private async dropSandboxIfEmpty(name: string): Promise<void> {
    const sb = await this.engine.state.sandbox(name);
    if (!sb) return;
    if ((await this.engine.state.endpoints()).some((e) => e.sandboxId === sb.id)) return;
    await this.engine.deleteSandbox(name);
  }

  /** Makes sure the address is allocated in Knit's Ipam (Docker's own IPAM may have chosen it). */
  private async hold(net: Network, cidr: string): Promise<void> {
    const ip = stripLen(cidr);
    if ((await addressHolder(this.engine.state.store, net.id, ip)) !== undefined) return;
    await this.engine.ipam.allocate(net.id, { family: familyOf(ip) ?? 4, ip, owner: pendingOwner('endpoint', ip) });
  }

  private async pendingOf(netId: string, cidrs: (string | undefined)[]): Promise<string[]> {
    const out: string[] = [];
    for (const cidr of cidrs) {
      if (!cidr) continue;
      const ip = stripLen(cidr);
      const owner = await addressHolder(this.engine.state.store, netId, ip);
      if (owner !== undefined && isPending(owner)) out.push(ip);
    }
    return out;
  }

  private async networkById(id: string): Promise<Network | undefined> {
    return (await this.engine.state.networks()).find((n) => n.id === id);
  }

  private async mustNetwork(id: string): Promise<Network> {
    const net = await this.networkById(id);
    if (!net) throw new KnitError('not-found', `network ${id.slice(0, 12)} is not a Knit network (was it removed from Knit directly?)`);
    return net;
  }
}
