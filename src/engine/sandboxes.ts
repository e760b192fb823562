// Sandboxes: a network namespace (made by Knit, joined from another sandbox,
// the host's, or someone else's) and the endpoints in it. A create records
// the sandbox pending, attaches its networks and marks it ready; a delete
// forgets its endpoints and removes the namespace and its /etc/netns files.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { SandboxView } from '../model/api.ts';
import {
  type Endpoint,
  type Sandbox,
  type SandboxCreate,
  checkName,
  SandboxCreate as SandboxCreateSchema,
} from '../model/index.ts';
import { conflict, invalid } from '../lib/errors.ts';
import { createNetns, deleteNetns, isNetns, prepareNetnsTarget } from '../kernel/netns.ts';
import { newId } from './ids.ts';
import { checkDnsConfig, parseInput } from './checks.ts';
import { findNetwork, findSandbox, inspectSandbox } from './lookups.ts';
import { attach, forgetEndpoint, removeEndpointLocked } from './endpoints.ts';
import { type EngineContext, undo } from './context.ts';

export async function createSandbox(ctx: EngineContext, input: unknown): Promise<SandboxView> {
  const req = parseInput(SandboxCreateSchema, input, 'sandbox');
  return ctx.mutex.run(async () => {
    checkName('name', req.name);
    const existing = await ctx.state.sandbox(req.name);
    if (existing) {
      if (existing.state === 'ready' && sameSandboxRequest(existing, req)) return inspectSandbox(ctx.state, existing.name);
      throw conflict(`sandbox '${req.name}' already exists`, 'name');
    }
    const sb = await planSandbox(ctx, req);
    if (sb.ownsNetns && isNetns(sb.netnsPath)) {
      // Not recorded, so not Knit's: never adopt (or later delete) someone else's namespace.
      throw conflict(`a network namespace already exists at ${sb.netnsPath}; remove it (ip netns del ${sb.name}) or choose another sandbox name`, 'name');
    }
    const attaches = req.networks ?? [];
    // Nothing to make (a namespace made by someone else, no networks yet): one write, already ready.
    const nothingToMake = !sb.ownsNetns && attaches.length === 0;
    // An adopted namespace (CNI, Docker) needs nothing made before its first
    // attach's kernel work, so the sandbox is recorded in the write that
    // records that endpoint. A namespace Knit makes needs its mount point
    // file first, and that may only exist once the sandbox is recorded.
    const withFirstAttach = !sb.ownsNetns && attaches.length > 0;
    if (!withFirstAttach) await ctx.state.putSandbox(nothingToMake ? { ...sb, state: 'ready' } : sb, true);
    // A file create (the netns mount point) costs up to half a millisecond on
    // some filesystems: it runs on the libuv pool while the first attach
    // allocates and records, and is awaited before the kernel work needs it.
    const prepared = sb.ownsNetns ? prepareNetnsTarget(sb.netnsPath) : undefined;
    let netnsMade = !sb.ownsNetns;
    const makeNetns = async (): Promise<void> => {
      if (netnsMade) return;
      await prepared;
      createNetns(sb.netnsPath);
      netnsMade = true;
    };
    const made: Endpoint[] = [];
    try {
      const ready: Sandbox = { ...sb, state: 'ready' };
      for (const [i, a] of attaches.entries()) {
        const net = await findNetwork(ctx.state, a.network);
        // The last attach marks the sandbox ready in the write that marks its endpoint ready.
        const last = i === attaches.length - 1 ? ready : undefined;
        const steps = { beforeKernel: makeNetns, ...(i === 0 && withFirstAttach ? { newSandbox: sb } : {}), ...(last ? { readySandbox: last } : {}) };
        made.push(await attach(ctx, net, sb, { ...a, sandbox: sb.name }, i === 0 && a.defaultRoute !== false, steps));
      }
      await makeNetns();
      if (!nothingToMake && attaches.length === 0) await ctx.state.putSandbox(ready);
    } catch (err) {
      await undo(`sandbox ${sb.name}`, [
        ...made.reverse().map((ep) => () => removeEndpointLocked(ctx, ep, sb)),
        async () => {
          if (!sb.ownsNetns) return;
          await prepared?.catch(() => undefined); // a create still in flight would outlive the delete
          deleteNetns(sb.netnsPath);
          removeEtcDir(ctx, sb);
        },
        () => ctx.state.deleteSandbox(sb.name),
      ]);
      throw err;
    }
    const view = await inspectSandbox(ctx.state, sb.name);
    return view;
  });
}

async function planSandbox(ctx: EngineContext, req: SandboxCreate): Promise<Sandbox> {
  const now = new Date().toISOString();
  checkDnsConfig(req.dns);
  const base = {
    id: newId(),
    name: req.name,
    labels: req.labels ?? {},
    origin: req.origin ?? 'api',
    dns: { servers: req.dns?.servers ?? [], search: req.dns?.search ?? [], options: req.dns?.options ?? [] },
    state: 'pending' as const,
    created: now,
    ...(req.hostname ? { hostname: req.hostname } : {}),
  };
  if (req.join) {
    if (req.networks?.length) throw invalid('networks', `a sandbox that joins '${req.join}' shares its networks; give no --network`);
    const target = await findSandbox(ctx.state, req.join);
    return { ...base, netnsPath: target.netnsPath, ownsNetns: false, joined: target.name };
  }
  const hostNet = (req.networks ?? []).find((a) => a.network === 'host');
  if (hostNet) {
    if ((req.networks ?? []).length > 1) throw invalid('networks', `a sandbox on the host network cannot join other networks`);
    return { ...base, netnsPath: ctx.host.netnsPath, ownsNetns: false };
  }
  if (req.netnsPath) return { ...base, netnsPath: req.netnsPath, ownsNetns: false };
  return { ...base, netnsPath: join(ctx.host.netnsDir, req.name), ownsNetns: true };
}

export async function deleteSandbox(ctx: EngineContext, ref: string): Promise<void> {
  const slow: (() => Promise<void>)[] = [];
  await ctx.mutex.run(async () => {
    const sb = await findSandbox(ctx.state, ref);
    const members = (await ctx.state.sandboxes()).filter((s) => s.joined === sb.name);
    if (members.length > 0) {
      throw conflict(`sandbox '${sb.name}' is shared by ${members.map((m) => m.name).join(', ')}; remove them first`);
    }
    await removeSandbox(ctx, sb, slow);
  });
  // Link deletes wait for an RCU grace period; they run after the lock.
  await Promise.all(slow.map((f) => f().catch(() => undefined)));
}

/** Engine.removeSandboxLocked: the caller holds the mutex, so the slow deletes run here. */
export async function removeSandboxLocked(ctx: EngineContext, sb: Sandbox): Promise<void> {
  const slow: (() => Promise<void>)[] = [];
  await removeSandbox(ctx, sb, slow);
  await Promise.all(slow.map((f) => f().catch(() => undefined)));
}

/** Removes a sandbox and everything it holds; used by delete and by reconcile. */
async function removeSandbox(ctx: EngineContext, sb: Sandbox, slow: (() => Promise<void>)[]): Promise<void> {
  const eps = (await ctx.state.endpoints()).filter((e) => e.sandboxId === sb.id);
  const nets = new Map((await ctx.state.networks()).map((n) => [n.id, n]));
  for (const ep of eps) {
    const detach = await forgetEndpoint(ctx, ep, nets.get(ep.networkId), sb);
    // Deleting the namespace takes its veths with it, batched by the kernel.
    if (detach && !sb.ownsNetns) slow.push(detach);
  }
  if (sb.ownsNetns) deleteNetns(sb.netnsPath);
  removeEtcDir(ctx, sb);
  await ctx.state.deleteSandbox(sb.name);
}

/** The sandbox's /etc/netns dir goes back to the spares, or is deleted. */
function removeEtcDir(ctx: EngineContext, sb: Sandbox): void {
  const dir = join(ctx.etcNetnsDir, sb.name);
  if (ctx.etcDirs) ctx.etcDirs.retire(dir);
  else rmSync(dir, { recursive: true, force: true });
}

function sameSandboxRequest(sb: Sandbox, req: SandboxCreate): boolean {
  return (req.join ?? undefined) === (sb.joined ?? undefined) && (!req.netnsPath || req.netnsPath === sb.netnsPath);
}
