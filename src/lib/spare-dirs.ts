// Directories made ahead. On some filesystems a new inode is expensive (on
// this VM's ext4 from 0.02 to 0.9 ms of CPU, by directory: worst in new ones,
// which ext4 spreads over block groups), and a sandbox's /etc/netns dir takes three. A
// spare holds the files such a dir has, empty, made off the request path;
// putting one in place writes into files that exist and renames the dir. A
// dir that goes away comes back as a spare instead of being unlinked, so a
// workload that removes and makes sandboxes allocates no inode at all; the
// spares beyond the few kept ready are deleted once things are quiet.
//
// The spares live in a staging dir beside the dirs they become (a rename
// cannot cross filesystems), named after the owning process, so several
// daemons can share the parent; a start removes the staging dirs of
// processes that are gone.
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';

const PREFIX = '.knit-spare-';

export interface SpareDirsOptions {
  /** Spares made ahead and kept ready. */
  keep: number;
  /** Removed dirs kept as spares at most (default 1024). */
  hold?: number;
  /** Spares beyond `keep` are deleted after this long without an install or a retire, in ms (default 30 s). */
  trimAfterMs?: number;
}

export class SpareDirs {
  readonly #staging: string;
  readonly #files: readonly string[];
  readonly #keep: number;
  readonly #hold: number;
  readonly #trimAfterMs: number;
  #trimTimer: NodeJS.Timeout | undefined;
  readonly #ready: string[] = [];
  #making = 0;
  #serial = 0;
  #closed = false;

  /** Spares for dirs in `parent` holding `files`. */
  constructor(parent: string, files: readonly string[], opts: SpareDirsOptions) {
    this.#staging = join(parent, `${PREFIX}${process.pid}`);
    this.#files = files;
    this.#keep = opts.keep;
    this.#hold = opts.hold ?? 1024;
    this.#trimAfterMs = opts.trimAfterMs ?? 30_000;
    sweepSpareDirs(parent);
    if (this.#keep > 0 || this.#hold > 0) mkdirSync(this.#staging, { recursive: true, mode: 0o700 });
    this.#refill();
  }

  /**
   * Makes `dir` (which must not exist) holding `contents`; a file whose text
   * is undefined is left out. The dir appears whole, by one rename. False
   * when no spare is ready or `dir` exists: the caller makes it itself.
   */
  install(dir: string, contents: Readonly<Record<string, string | undefined>>): boolean {
    if (this.#ready.length === 0 || existsSync(dir)) return false;
    const spare = this.#ready.pop() as string;
    try {
      for (const name of this.#files) {
        const text = contents[name];
        if (text === undefined) rmSync(join(spare, name), { force: true });
        else fill(join(spare, name), text);
      }
      renameSync(spare, dir);
      return true;
    } catch {
      rmSync(spare, { recursive: true, force: true });
      return false;
    } finally {
      this.#refill();
      this.#scheduleTrim();
    }
  }

  /**
   * Removes `dir`: kept as a spare (up to `hold`) when it holds only the
   * expected files, whose old text the next install rewrites or removes;
   * deleted otherwise.
   */
  retire(dir: string): void {
    if (!this.#closed && this.#ready.length < this.#hold) {
      try {
        const names = readdirSync(dir);
        if (names.length === this.#files.length && names.every((n) => this.#files.includes(n))) {
          const spare = join(this.#staging, `r${this.#serial++}`);
          renameSync(dir, spare);
          this.#ready.push(spare);
          this.#scheduleTrim();
          return;
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }

  /** How many spares are ready (tests). */
  get ready(): number {
    return this.#ready.length;
  }

  /** Removes the staging dir; later installs find no spare. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#trimTimer);
    this.#ready.length = 0;
    rmSync(this.#staging, { recursive: true, force: true });
  }

  #scheduleTrim(): void {
    if (this.#ready.length <= this.#keep) return;
    if (this.#trimTimer !== undefined) this.#trimTimer.refresh();
    else this.#trimTimer = setTimeout(() => this.#trim(), this.#trimAfterMs).unref();
  }

  /** Deletes the spares beyond `keep`, on the libuv pool. */
  #trim(): void {
    this.#trimTimer = undefined;
    for (const spare of this.#ready.splice(this.#keep)) void rm(spare, { recursive: true, force: true }).catch(() => undefined);
  }

  /** Makes spares on the libuv pool, after the current request. */
  #refill(): void {
    while (!this.#closed && this.#ready.length + this.#making < this.#keep) {
      this.#making += 1;
      const spare = join(this.#staging, `m${this.#serial++}`);
      void this.#make(spare).then(
        (ok) => {
          this.#making -= 1;
          if (ok && !this.#closed) this.#ready.push(spare);
          // A failure (staging dir removed, disk full) is not retried here: the next install or retire does.
        },
        () => (this.#making -= 1),
      );
    }
  }

  /**
   * The dir and its files are made side by side, in one round of the libuv
   * pool (each step of a chain waits for a turn of the main thread, which a
   * busy daemon gives rarely): the files beside the dir, moved in after.
   */
  async #make(spare: string): Promise<boolean> {
    const loose = this.#files.map((name) => `${spare}.${name}`);
    try {
      const made = await Promise.allSettled([mkdir(spare, { mode: 0o755 }), ...loose.map((f) => open(f, 'wx', 0o644))]);
      for (const r of made) if (r.status === 'fulfilled' && typeof r.value === 'object') void r.value.close().catch(() => undefined);
      if (made.some((r) => r.status === 'rejected')) throw new Error('a spare could not be made');
      this.#files.forEach((name, i) => renameSync(loose[i] as string, join(spare, name)));
      return true;
    } catch {
      for (const f of [spare, ...loose]) rmSync(f, { recursive: true, force: true });
      return false;
    }
  }
}

/**
 * Writes `text` over a spare's file. Not with O_TRUNC: on ext4 the truncate
 * of even an empty file is a journalled change (0.04 against 0.01 ms here);
 * a retired spare's longer old text is cut after the write.
 */
function fill(path: string, text: string): void {
  const fd = openSync(path, 'r+');
  try {
    const n = writeSync(fd, text);
    if (fstatSync(fd).size > n) ftruncateSync(fd, n);
  } finally {
    closeSync(fd);
  }
}

/** Removes the staging dirs in `parent` of processes that no longer run (a start does; so do the tests after a kill -9). */
export function sweepSpareDirs(parent: string): void {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.slice(PREFIX.length));
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) continue;
    rmSync(join(parent, name), { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
