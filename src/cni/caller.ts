// What the daemon reads of a plugin executable that forwarded its call
// (plugin-call.ts), through the connection the call came on: the process
// (SO_PEERCRED), its stdin (/proc/PID/fd/0) and its network namespace
// (/proc/PID/ns/net).
//
// Why: a compiled Bun executable that reads its own stdin, or stats a file,
// starts Bun's thread pool; one that only connects, sends its CNI_* variables
// and prints the answer took ~1.5 ms less CPU per call here (forward.ts).
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import type { Socket } from 'node:net';
import { peerCred } from '../kernel/socket.ts';
import { netnsIdOf, type NetnsId } from './plugin-io.ts';

/** The process at the other end of a call's connection. */
export interface Caller {
  pid: number;
  /** True once the connection has closed: the caller is gone, stop reading for it. */
  gone: () => boolean;
}

/**
 * The caller on `conn`; undefined when the kernel cannot name it in this pid
 * namespace, or it is not root: the daemon opens a caller's files only for
 * a caller that could open anything itself.
 */
export function callerOf(conn: Socket): Caller | undefined {
  // Node keeps the fd of a unix socket connection on its libuv handle.
  const fd = (conn as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const cred = peerCred(fd);
  if (cred?.pid === undefined || cred.uid !== 0) return undefined;
  const pid = cred.pid;
  return { pid, gone: () => conn.closed };
}

/**
 * The caller's stdin, read to its end as the plugin itself would have: a pipe
 * (how every runtime passes the configuration) or a regular file. Undefined
 * when it is neither (a terminal, a socket) or cannot be opened from here:
 * the executable then sends its stdin itself.
 */
export async function readCallerStdin(c: Caller): Promise<Buffer | undefined> {
  let fd: number;
  try {
    // Non-blocking (Node adds O_CLOEXEC itself): opening a pipe whose writer has closed would otherwise wait for one forever.
    fd = openSync(`/proc/${c.pid}/fd/0`, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  const st = fstatSync(fd);
  if (st.isFile()) {
    try {
      return readFileSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  if (!st.isFIFO()) {
    closeSync(fd);
    return undefined;
  }
  return readPipe(fd, c.gone);
}

/**
 * A pipe read until its writers are gone, by non-blocking reads: epoll never
 * reports the end of a pipe opened through /proc (the kernel raises POLLHUP
 * only for readers that saw a writer come), so waiting is a short backoff.
 * Runtimes close the configuration's pipe once written, so the first read
 * usually finds it all.
 */
async function readPipe(fd: number, gone: () => boolean): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(64 * 1024);
  let wait = 1;
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        if (gone()) throw new Error('the plugin process went away before its stdin ended');
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(wait * 2, 50);
        continue;
      }
      if (n === 0) return Buffer.concat(chunks);
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    closeSync(fd);
  }
}

/** The caller's network namespace; undefined when it cannot be read. */
export function callerNetns(c: Caller): Promise<NetnsId | undefined> {
  return netnsIdOf(`/proc/${c.pid}/ns/net`);
}
