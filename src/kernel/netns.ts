// Network namespaces: create/delete them as bind-mounted files (as
// `ip netns add` does) and enter them for a synchronous window.
//
// setns(CLONE_NEWNET) switches only the calling OS thread, here Node's main
// thread. Anything created inside the window (netlink sockets, packet
// sockets, /proc/sys files) stays bound to the target netns afterwards; the
// window itself must never await. If switching back fails the process aborts:
// a main thread stuck in a container netns would corrupt everything after.
import { existsSync, mkdirSync, readFileSync, rmSync, stat } from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as libc from './libc.ts';

const NS_GET_NSTYPE = 0xb703; // _IO(0xb7, 0x3)

// libuv's pool threads are spawned on first use and inherit the netns of the
// thread that spawns them. Start them now, from the original netns, so that
// none is ever born inside a window, where it would pin that netns forever.
stat('/', () => {});

/** The netns the main thread had at load time, kept open for the process's life. */
const originFd = openOrThrow('/proc/thread-self/ns/net');
let depth = 0;

function openOrThrow(path: string, flags = libc.O_RDONLY | libc.O_CLOEXEC): number {
  const fd = libc.open(path, flags, 0);
  if (fd < 0) throw libc.sysError(`open ${path}`);
  return fd;
}

export function openNetnsFd(path: string): number {
  return openOrThrow(path);
}

export function closeFd(fd: number): void {
  libc.close(fd);
}

/**
 * A path that opens the process's own (original) netns, valid even inside a
 * withNetns window and when the process was started inside another netns
 * (nsenter): it names the fd held since load time.
 */
export function currentNetnsPath(): string {
  return `/proc/${process.pid}/fd/${originFd}`;
}

function switchTo(fd: number, what: string): void {
  if (libc.setns(fd, libc.CLONE_NEWNET) !== 0) throw libc.sysError(`setns ${what}`);
}

function switchBack(fd: number): void {
  if (libc.setns(fd, libc.CLONE_NEWNET) !== 0) {
    process.stderr.write(`knit: cannot return to the original network namespace (errno ${libc.errno()}); aborting\n`);
    process.abort();
  }
}

/** True inside a withNetns window (the main thread is not in its own netns). */
export function inNetnsWindow(): boolean {
  return depth > 0;
}

/** Runs fn with the main thread inside the netns at `path`; fn must be synchronous. */
export function withNetns<T>(path: string, fn: () => T): T {
  const target = openOrThrow(path);
  // Nested windows return to the enclosing netns, the outermost to the origin.
  const back = depth === 0 ? originFd : openOrThrow('/proc/thread-self/ns/net');
  try {
    switchTo(target, path);
  } catch (err) {
    libc.close(target);
    if (back !== originFd) libc.close(back);
    throw err;
  }
  depth++;
  try {
    const r = fn();
    if (r instanceof Promise) throw new Error('withNetns: fn must be synchronous (a Promise would run outside the netns)');
    return r;
  } finally {
    depth--;
    switchBack(back);
    libc.close(target);
    if (back !== originFd) libc.close(back);
  }
}

/** True when `path` is a network namespace file (a bind mount of an nsfs inode). */
export function isNetns(path: string): boolean {
  const fd = libc.open(path, libc.O_RDONLY | libc.O_CLOEXEC, 0);
  if (fd < 0) return false;
  try {
    return libc.ioctlInt(fd, NS_GET_NSTYPE, 0) === libc.CLONE_NEWNET;
  } finally {
    libc.close(fd);
  }
}

function isMountPoint(dir: string): boolean {
  // Mount points of this mount namespace, from the kernel's own table.
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  for (const line of mounts.split('\n')) {
    const mp = line.split(' ')[4];
    if (mp !== undefined && mp.replace(/\\040/g, ' ') === dir) return true;
  }
  return false;
}

/**
 * Makes the netns directory a shared mount point, as iproute2 does, so that
 * netns mounts made later propagate into mount namespaces that copied it
 * (containers, `ip netns exec`).
 */
function makeSharedDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  if (libc.mount('', dir, 'none', libc.MS_SHARED | libc.MS_REC, null) === 0) return;
  const err = libc.errno();
  if (err !== 22 /* EINVAL: not a mount point yet */ || isMountPoint(dir)) {
    throw libc.sysError(`mount --make-rshared ${dir}`, err);
  }
  if (libc.mount(dir, dir, 'none', libc.MS_BIND | libc.MS_REC, null) !== 0) {
    throw libc.sysError(`mount --bind ${dir} ${dir}`);
  }
  if (libc.mount('', dir, 'none', libc.MS_SHARED | libc.MS_REC, null) !== 0) {
    throw libc.sysError(`mount --make-rshared ${dir}`);
  }
}

/**
 * Directories made shared once per process: the propagation change
 * (MS_SHARED|MS_REC) walks every mount below the dir, one per sandbox, so
 * doing it per sandbox cost time that grew with their number.
 */
const sharedDirs = new Set<string>();

function ensureSharedDir(dir: string): void {
  if (sharedDirs.has(dir)) return;
  makeSharedDir(dir);
  sharedDirs.add(dir);
}

/**
 * Creates the empty file createNetns mounts onto, on the libuv pool: on some
 * filesystems a create costs most of a millisecond, which can overlap other
 * work of the same request. createNetns makes it itself when this was not
 * called; a caller that gives up must await this before deleteNetns, or the
 * file may appear after it was removed.
 */
export async function prepareNetnsTarget(path: string): Promise<void> {
  ensureSharedDir(dirname(path));
  const fh = await openAsync(path, libc.O_RDONLY | libc.O_CREAT | libc.O_CLOEXEC, 0);
  // The file is there once open returns; its close need not be waited for.
  void fh.close().catch(() => undefined);
}

// Spare namespaces: unshare(CLONE_NEWNET) costs most of a millisecond of
// kernel time, so a process that makes many keeps a few made ahead, held by
// fd only: no mount and no file, so nothing else sees them, and a crash
// closes the fds and the kernel frees them.
const spares: number[] = [];
let sparesWanted = 0;
let refillScheduled = false;

/**
 * Keeps `n` namespaces made ahead for createNetns (0 stops and frees them).
 * They are made after the current turn of the event loop, off the path of
 * the request that used one.
 */
export function keepSpareNetns(n: number): void {
  sparesWanted = Math.max(0, Math.floor(n));
  while (spares.length > sparesWanted) libc.close(spares.pop() as number);
  scheduleRefill();
}

/** How many made-ahead namespaces are held now (tests). */
export function spareNetnsCount(): number {
  return spares.length;
}

function scheduleRefill(): void {
  if (refillScheduled || spares.length >= sparesWanted) return;
  refillScheduled = true;
  setImmediate(() => {
    refillScheduled = false;
    // A window never spans an await, so none is open here; check all the same.
    if (depth !== 0) return scheduleRefill();
    while (spares.length < sparesWanted) {
      if (libc.unshare(libc.CLONE_NEWNET) !== 0) return; // createNetns will unshare itself and report it
      const fd = libc.open('/proc/thread-self/ns/net', libc.O_RDONLY | libc.O_CLOEXEC, 0);
      switchBack(originFd);
      if (fd < 0) return;
      spares.push(fd);
    }
  }).unref();
}

/** A new netns bind-mounted at `path`, like `ip netns add`. Keeps an existing one. */
export function createNetns(path: string): void {
  if (isNetns(path)) return;
  ensureSharedDir(dirname(path));
  // The mount target: an empty file, left over or new.
  const fd = libc.open(path, libc.O_RDONLY | libc.O_CREAT | libc.O_CLOEXEC, 0);
  if (fd < 0) throw libc.sysError(`create ${path}`);
  libc.close(fd);
  if (depth !== 0) throw new Error('createNetns: not allowed inside a withNetns window');
  const spare = spares.pop();
  if (spare !== undefined) {
    scheduleRefill();
    const ok = libc.mount(`/proc/self/fd/${spare}`, path, 'none', libc.MS_BIND, null) === 0;
    const err = ok ? undefined : libc.sysError(`mount --bind netns onto ${path}`);
    libc.close(spare);
    if (err === undefined) return;
    rmSync(path, { force: true });
    throw err;
  }
  if (libc.unshare(libc.CLONE_NEWNET) !== 0) {
    const err = libc.sysError('unshare(CLONE_NEWNET)');
    rmSync(path, { force: true });
    throw err;
  }
  let failure: Error | undefined;
  try {
    // thread-self: only this thread is in the new netns.
    if (libc.mount('/proc/thread-self/ns/net', path, 'none', libc.MS_BIND, null) !== 0) {
      failure = libc.sysError(`mount --bind netns onto ${path}`);
    }
  } finally {
    switchBack(originFd);
  }
  if (failure !== undefined) {
    rmSync(path, { force: true });
    throw failure;
  }
}

/** Unmounts and removes the netns file; the kernel frees the netns once unused. */
export function deleteNetns(path: string): void {
  if (libc.umount2(path, libc.MNT_DETACH) !== 0) {
    const err = libc.errno();
    // EINVAL: not mounted; ENOENT: gone already.
    if (err !== 22 && err !== 2) throw libc.sysError(`umount ${path}`, err);
  }
  if (existsSync(path)) rmSync(path, { force: true });
}

