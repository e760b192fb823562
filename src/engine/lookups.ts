// Finding records by name or id prefix, and the views the API lists and
// inspects. Reads only: no mutex, no kernel.
import type { Network, Sandbox } from '../model/index.ts';
import type { NetworkView, SandboxView } from '../model/api.ts';
import { invalid, notFound } from '../lib/errors.ts';
import type { State } from './state.ts';
import { networkView, sandboxView } from './views.ts';

/** A network by name, full id, or an id prefix of 3 or more characters that matches one network. */
export async function findNetwork(state: State, ref: string): Promise<Network> {
  const byName = await state.network(ref);
  if (byName) return byName;
  const all = await state.networks();
  const hits = all.filter((n) => n.id === ref || (ref.length >= 3 && n.id.startsWith(ref)));
  if (hits.length === 1) return hits[0] as Network;
  if (hits.length > 1) throw invalid('network', `'${ref}' matches ${hits.length} networks; give more of the id`);
  throw notFound(`network '${ref}' not found; list networks with 'knit network ls'`);
}

/** A sandbox by name, full id, or an id prefix of 3 or more characters that matches one sandbox. */
export async function findSandbox(state: State, ref: string): Promise<Sandbox> {
  const byName = await state.sandbox(ref);
  if (byName) return byName;
  const all = await state.sandboxes();
  const hits = all.filter((s) => s.id === ref || (ref.length >= 3 && s.id.startsWith(ref)));
  if (hits.length === 1) return hits[0] as Sandbox;
  if (hits.length > 1) throw invalid('sandbox', `'${ref}' matches ${hits.length} sandboxes; give more of the id`);
  throw notFound(`sandbox '${ref}' not found; list sandboxes with 'knit sandbox ls'`);
}

export async function listNetworks(state: State): Promise<NetworkView[]> {
  const [nets, eps, sbs] = await Promise.all([state.networks(), state.endpoints(), state.sandboxes()]);
  const byId = new Map(sbs.map((s) => [s.id, s]));
  return nets.map((n) => networkView(n, eps, byId));
}

export async function inspectNetwork(state: State, ref: string): Promise<NetworkView> {
  const net = await findNetwork(state, ref);
  const [eps, sbs] = await Promise.all([state.endpoints(), state.sandboxes()]);
  return networkView(net, eps, new Map(sbs.map((s) => [s.id, s])));
}

export async function listSandboxes(state: State): Promise<SandboxView[]> {
  const [nets, eps, sbs] = await Promise.all([state.networks(), state.endpoints(), state.sandboxes()]);
  const byId = new Map(nets.map((n) => [n.id, n]));
  return sbs.map((s) => sandboxView(s, eps, byId));
}

export async function inspectSandbox(state: State, ref: string): Promise<SandboxView> {
  const sb = await findSandbox(state, ref);
  const [nets, eps] = await Promise.all([state.networks(), state.endpoints()]);
  return sandboxView(sb, eps, new Map(nets.map((n) => [n.id, n])));
}

export async function counts(state: State): Promise<{ networks: number; sandboxes: number; endpoints: number }> {
  const [n, s, e] = await Promise.all([state.networks(), state.sandboxes(), state.endpoints()]);
  return { networks: n.length, sandboxes: s.length, endpoints: e.length };
}
