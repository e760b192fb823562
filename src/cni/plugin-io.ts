// A CNI plugin process's IO: CNI_* from its environment, the configuration
// on stdin, the result or error on stdout. skel.ts runs the protocol over a
// PluginIO; the executables use processIO(), the daemon one built from a
// forwarded call (plugin-call.ts).
//
// Nothing here is imported at the top level of a module the compiled plugins
// load unless they need it: each builtin a Bun executable touches costs its start.

export interface PluginIO {
  env: Readonly<Record<string, string | undefined>>;
  readStdin: () => Promise<Buffer>;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** True when `path` is the plugin's own network namespace (skel's ns.CheckNetNS). */
  isOwnNetns: (path: string) => boolean | Promise<boolean>;
  /** Resolves once everything written has left (IO whose writes are asynchronous). */
  flush?: () => Promise<void>;
}

/** A network namespace as the kernel names it: the nsfs device and inode. */
export interface NetnsId {
  dev: number;
  ino: number;
}

/** The slice of Bun's API the compiled plugins use (no bun-types here). */
interface BunFile {
  arrayBuffer(): Promise<ArrayBuffer>;
  stat(): Promise<{ dev: number; ino: number }>;
}
interface BunRuntime {
  stdin: BunFile;
  stdout: BunFile;
  stderr: BunFile;
  file(path: string): BunFile;
  write(dest: BunFile, data: string): Promise<number>;
}

const bun = (globalThis as { Bun?: BunRuntime }).Bun;

/** The namespace `path` names; undefined when it cannot be read. */
export async function netnsIdOf(path: string): Promise<NetnsId | undefined> {
  try {
    if (bun !== undefined) {
      const s = await bun.file(path).stat();
      return { dev: s.dev, ino: s.ino };
    }
    // Not a top-level import: the compiled plugin never loads node:fs (~1 ms of its start).
    const s = process.getBuiltinModule('node:fs').statSync(path);
    return { dev: s.dev, ino: s.ino };
  } catch {
    return undefined;
  }
}

/** This process's own network namespace. */
export function ownNetnsId(): Promise<NetnsId | undefined> {
  return netnsIdOf('/proc/self/ns/net');
}

/** Whether `path` is the namespace `own`; unreadable paths are not. */
export async function isNetnsOf(path: string, own: NetnsId | undefined): Promise<boolean> {
  if (own === undefined) return false;
  const id = await netnsIdOf(path);
  return id !== undefined && id.dev === own.dev && id.ino === own.ino;
}

function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer | string) => chunks.push(typeof c === 'string' ? Buffer.from(c) : c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

/**
 * The plugin's IO on Bun (the compiled executables). process.stdin and
 * process.stdout there are Node streams built on first touch: each costs
 * ~5 ms of CPU and ~650 page faults, more than the rest of a call's client side.
 */
function bunIO(b: BunRuntime): PluginIO {
  let pending: Promise<unknown> = Promise.resolve();
  const writer = (dest: BunFile) => (s: string) => {
    pending = pending.then(() => b.write(dest, s));
  };
  return {
    env: process.env,
    readStdin: async () => Buffer.from(await b.stdin.arrayBuffer()),
    stdout: writer(b.stdout),
    stderr: writer(b.stderr),
    isOwnNetns: async (path) => isNetnsOf(path, await ownNetnsId()),
    // A reader that went away (EPIPE) must not turn a finished call into a crash.
    flush: () => pending.then(() => undefined, () => undefined),
  };
}

/** The IO of this process: its environment, stdin, stdout and stderr. */
export function processIO(): PluginIO {
  if (bun !== undefined) return bunIO(bun);
  return {
    env: process.env,
    readStdin: () => readAll(process.stdin),
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    isOwnNetns: async (path) => isNetnsOf(path, await ownNetnsId()),
  };
}
