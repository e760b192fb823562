// The spare-namespace maker: a worker thread that makes network namespaces
// ahead of time, so that their cost (unshare(CLONE_NEWNET), ~0.9 ms of kernel
// time) is paid on another core, not inside the request that needs one.
//
// Worker and main thread share one small Int32Array (the "shelf", layout
// below) and nothing else: the worker puts the fd of a new namespace into an
// empty slot; createNetns takes it with an atomic exchange. Fds are
// process-wide, so the fd is simply handed over: whoever exchanges it out of
// its slot owns it and closes it. Nothing is mounted and no file exists, so
// no one outside the process sees a spare, and a crash closes the fds and
// the kernel frees them.
//
// The worker runs plain JavaScript given as source (makeSpares.toString()):
// a .ts worker file would make the worker load Node's TypeScript stripper
// (~25 MiB) whenever the compile cache misses it. So makeSpares must be
// self-contained: no imports, no module-level names, only its argument and
// globals.
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';

/** Shelf layout: indices into the Int32Array. */
export const SHELF = {
  /** How many spares main wants kept (0 makes the worker exit). */
  wanted: 0,
  /** WORKER_STARTING, WORKER_READY or WORKER_FAILED. */
  state: 1,
  /** errno of the call that failed, with state WORKER_FAILED. */
  errno: 2,
  /** Bumped by main (and Atomics.notify'd) when a slot empties or `wanted` changes. */
  wake: 3,
  /** Namespaces the worker has made (tests, metrics). */
  made: 4,
  /** First slot: an fd, or -1 when empty. */
  slots: 8,
  /** Number of slots: the most spares one can ask for. */
  maxSpares: 8,
} as const;

export const WORKER_STARTING = 0;
export const WORKER_READY = 1;
export const WORKER_FAILED = 2;

export interface SpareMakerData {
  shelf: SharedArrayBuffer;
  layout: typeof SHELF;
  /** The fd of the netns the worker must stay in between unshares (the main thread's, held by netns.ts). */
  originFd: number;
  /** Absolute path of koffi's entry point. */
  koffiPath: string;
}

/**
 * The worker's body. Each round: unshare into a new netns, open it (the fd
 * keeps it alive), and setns straight back to the original netns. Going back
 * matters: a thread that stayed would pin the last namespace it made, which
 * by then is some sandbox's, and deleting that sandbox would not free it
 * (nor its veths). If going back fails the worker stops where it is: its
 * thread exits, which drops its hold on that namespace.
 */
export function makeSpares(data: SpareMakerData): void {
  const L = data.layout;
  const a = new Int32Array(data.shelf);
  const fail = (errno: number): void => {
    Atomics.store(a, L.errno, errno);
    Atomics.store(a, L.state, 2 /* WORKER_FAILED */);
  };
  type Koffi = typeof import('koffi');
  let k: Koffi;
  let unshare: (flags: number) => number;
  let setns: (fd: number, type: number) => number;
  let open: (path: string, flags: number, mode: number) => number;
  let close: (fd: number) => number;
  try {
    const req = process.getBuiltinModule('node:module').createRequire(data.koffiPath);
    k = req(data.koffiPath) as Koffi;
    const libc = k.load('libc.so.6');
    unshare = libc.func('int unshare(int flags)') as typeof unshare;
    setns = libc.func('int setns(int fd, int nstype)') as typeof setns;
    open = libc.func('int open(const char *path, int flags, int mode)') as typeof open;
    close = libc.func('int close(int fd)') as typeof close;
  } catch {
    fail(0);
    return;
  }
  const CLONE_NEWNET = 0x40000000;
  const O_RDONLY_CLOEXEC = 0o2000000;
  // Born in whatever netns the spawning thread was in: start from the origin.
  if (setns(data.originFd, CLONE_NEWNET) !== 0) return fail(k.errno());
  Atomics.store(a, L.state, 1 /* WORKER_READY */);
  for (;;) {
    const wake = Atomics.load(a, L.wake);
    const wanted = Atomics.load(a, L.wanted);
    if (wanted === 0) return; // asked to stop: the thread ends, main sees 'exit'
    for (let i = 0; i < wanted && i < L.maxSpares; i++) {
      if (Atomics.load(a, L.slots + i) !== -1) continue;
      if (unshare(CLONE_NEWNET) !== 0) return fail(k.errno());
      const fd = open('/proc/thread-self/ns/net', O_RDONLY_CLOEXEC, 0);
      const openErr = k.errno();
      if (setns(data.originFd, CLONE_NEWNET) !== 0) return fail(k.errno());
      if (fd < 0) return fail(openErr);
      Atomics.store(a, L.slots + i, fd);
      Atomics.add(a, L.made, 1);
      // Main may have lowered `wanted` (and emptied the slots above it)
      // while this one was being made: then the fd is not wanted. Both
      // sides exchange, so exactly one of them gets it and closes it.
      if (i >= Atomics.load(a, L.wanted)) {
        const back = Atomics.exchange(a, L.slots + i, -1);
        if (back !== -1) close(back);
      }
    }
    Atomics.wait(a, L.wake, wake);
  }
}

/**
 * Starts the worker on `shelf` (already initialised: slots -1, `wanted` set).
 * Unref'd: it never keeps the process alive, and at exit Node stops it even
 * while it waits on the shelf.
 */
export function startSpareMaker(shelf: SharedArrayBuffer, originFd: number): Worker {
  const data: SpareMakerData = {
    shelf,
    layout: SHELF,
    originFd,
    koffiPath: createRequire(import.meta.url).resolve('koffi'),
  };
  // No `require`: the source may run as a module (--input-type=module is inherited).
  const source = `(${makeSpares.toString()})(process.getBuiltinModule('node:worker_threads').workerData)`;
  const w = new Worker(source, {
    eval: true,
    workerData: data,
    // The worker allocates almost nothing after koffi's load; small heaps
    // cap what a fault could cost. RSS is mostly Node's per-isolate bootstrap.
    resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 1, stackSizeMb: 1 },
    env: {},
    // Not the process's flags: an inherited --import hook or --input-type would run here too.
    execArgv: [],
    stdout: false,
    stderr: false,
    trackUnmanagedFds: false,
  });
  w.unref();
  return w;
}
