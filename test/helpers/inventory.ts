// What a test host holds, read from the kernel and the store file directly,
// to prove that nothing is left behind and nothing is half-made.
import { join } from 'node:path';
import { readdirSync, existsSync } from 'node:fs';
import type { TestHost } from './daemon.ts';
import { openSqliteStore } from '../../src/store/sqlite.ts';
import { Ipam } from '../../src/ipam/ipam.ts';
import { State } from '../../src/engine/state.ts';

export interface Inventory {
  links: { name: string; alias?: string }[];
  /** Endpoint ids named by Knit-owned veth aliases. */
  endpointLinks: string[];
  publishElements: number;
  networks: string[];
  sandboxes: { name: string; state: string }[];
  endpoints: { id: string; state: string; sandboxId: string }[];
  allocations: { ip: string; owner: string; network: string }[];
  netnsWithPrefix: string[];
}

export async function inventory(h: TestHost, netnsPrefix: string): Promise<Inventory> {
  await h.settle();
  const links = JSON.parse(h.inHost('ip', '-j', '-d', 'link', 'show')) as { ifname: string; ifalias?: string }[];
  const nft = JSON.parse(h.inHost('nft', '-j', 'list', 'table', 'inet', 'knit')) as { nftables: Record<string, { name?: string; elem?: unknown[] }>[] };
  let publishElements = 0;
  for (const o of nft.nftables) if (o.map?.name?.startsWith('pub')) publishElements += o.map.elem?.length ?? 0;

  const store = openSqliteStore(join(h.stateDir, 'knit.db'));
  try {
    const state = new State(store);
    const ipam = new Ipam(store);
    const networks = await state.networks();
    const allocations = (await Promise.all(networks.map((n) => ipam.allocations(n.id)))).flat();
    return {
      links: links.map((l) => ({ name: l.ifname, ...(l.ifalias ? { alias: l.ifalias } : {}) })),
      endpointLinks: links.filter((l) => l.ifalias?.startsWith('knit:ep:')).map((l) => (l.ifalias as string).slice(8)),
      publishElements,
      networks: networks.map((n) => n.name),
      sandboxes: (await state.sandboxes()).map((s) => ({ name: s.name, state: s.state })),
      endpoints: (await state.endpoints()).map((e) => ({ id: e.id, state: e.state, sandboxId: e.sandboxId })),
      allocations: allocations.map((a) => ({ ip: a.ip, owner: a.owner, network: a.network })),
      netnsWithPrefix: existsSync('/run/netns') ? readdirSync('/run/netns').filter((n) => n.startsWith(netnsPrefix)) : [],
    };
  } finally {
    await store.close();
  }
}
