// The embedded Store: one SQLite file (node:sqlite) in WAL mode.
//
// Durability: every write is one BEGIN IMMEDIATE ... COMMIT in WAL mode, so
// a kill -9 at any point leaves either the whole transaction or none of it.
// synchronous=NORMAL skips the fsync per commit (0.3 ms, paid several times
// per attach): a power loss may drop the last commits, but never corrupts,
// and after a reboot the kernel state those commits described is gone too,
// so reconcile rebuilds from what remains. The one fsync left is the WAL
// checkpoint's (~20 ms here); SQLite would run it inside whichever commit
// crosses 1000 pages, stalling that request, so it runs instead once writes
// pause (or inline, when the WAL grows past a bound under sustained load). Readers in other processes (the CLI) are never
// blocked under WAL; writers in other processes wait up to busy_timeout.
//
// Watch needs history (etcd's "watch from revision R"), so each change is
// also appended to an event log, trimmed to the last `historyRevisions`.
// Watchers in this process are woken right after a commit; changes made by
// other processes are noticed by polling the revision row.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { KnitError, messageOf } from '../lib/errors.ts';
import { prefixEnd, type Compare, type KV, type Op, type RangeOptions, type Store, type TxnResult, type WatchEvent } from './store.ts';

export interface SqliteStoreOptions {
  /** How long a writer waits for another process's write lock, in ms. */
  busyTimeoutMs?: number;
  /** How often watchers look for commits made by other processes, in ms. */
  pollIntervalMs?: number;
  /** How many revisions of history a watch can start from. */
  historyRevisions?: number;
  /** The checkpoint runs this long after the last commit, in ms. */
  checkpointIdleMs?: number;
}

/** WAL pages past which a commit checkpoints inline rather than waiting for a pause (~16 MiB). */
const WAL_PAGES_BOUND = 4000;

interface KVRow {
  key: string;
  value: string;
  create_rev: number;
  mod_rev: number;
}

interface EventRow {
  rev: number;
  key: string;
  value: string | null;
  create_rev: number;
}

interface Watcher {
  prefix: string;
  end: string;
  /** The first revision not yet delivered. */
  next: number;
  onEvents: (events: WatchEvent[]) => void;
  onError: ((err: Error) => void) | undefined;
  cancelled: boolean;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  create_rev INTEGER NOT NULL,
  mod_rev INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
-- value NULL marks a delete.
CREATE TABLE IF NOT EXISTS events (
  rev INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT,
  create_rev INTEGER NOT NULL,
  PRIMARY KEY (rev, key)
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compacted', 0);
`;

export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): SqliteStore {
  return new SqliteStore(path, options);
}

export class SqliteStore implements Store {
  readonly path: string;
  private readonly db: DatabaseSync;
  private readonly stmt: {
    get: StatementSync;
    rangeTo: StatementSync;
    rangeOpen: StatementSync;
    insert: StatementSync;
    update: StatementSync;
    del: StatementSync;
    event: StatementSync;
    revision: StatementSync;
    compacted: StatementSync;
    setMeta: StatementSync;
    eventsTo: StatementSync;
    eventsOpen: StatementSync;
    trim: StatementSync;
  };
  private readonly historyRevisions: number;
  private readonly pollIntervalMs: number;
  private readonly watchers = new Set<Watcher>();
  private pollTimer: NodeJS.Timeout | undefined;
  private deliveryScheduled = false;
  private closed = false;
  private readonly checkpointIdleMs: number;
  private checkpointTimer: NodeJS.Timeout | undefined;
  /** Commits since the last checkpoint; pages are ~4 per commit. */
  private uncheckpointed = 0;

  constructor(path: string, options: SqliteStoreOptions = {}) {
    this.path = path;
    this.historyRevisions = options.historyRevisions ?? 10_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 100;
    this.checkpointIdleMs = options.checkpointIdleMs ?? 200;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      this.db = new DatabaseSync(path, { timeout: options.busyTimeoutMs ?? 5000 });
      this.db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;');
      this.db.exec(`BEGIN IMMEDIATE; ${SCHEMA} COMMIT;`);
    } catch (err) {
      throw new KnitError('unavailable', `cannot open the store at ${path}: ${messageOf(err)}`, { cause: err });
    }
    const p = (sql: string): StatementSync => this.db.prepare(sql);
    this.stmt = {
      get: p('SELECT key, value, create_rev, mod_rev FROM kv WHERE key = ?'),
      rangeTo: p('SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ?'),
      rangeOpen: p('SELECT key, value, create_rev, mod_rev FROM kv WHERE key >= ? ORDER BY key LIMIT ?'),
      insert: p('INSERT INTO kv (key, value, create_rev, mod_rev) VALUES (?, ?, ?, ?)'),
      update: p('UPDATE kv SET value = ?, mod_rev = ? WHERE key = ?'),
      del: p('DELETE FROM kv WHERE key = ?'),
      event: p('INSERT OR REPLACE INTO events (rev, key, value, create_rev) VALUES (?, ?, ?, ?)'),
      revision: p("SELECT value FROM meta WHERE name = 'revision'"),
      compacted: p("SELECT value FROM meta WHERE name = 'compacted'"),
      setMeta: p('UPDATE meta SET value = ? WHERE name = ?'),
      eventsTo: p('SELECT rev, key, value, create_rev FROM events WHERE rev >= ? AND rev <= ? AND key >= ? AND key < ? ORDER BY rev, key'),
      eventsOpen: p('SELECT rev, key, value, create_rev FROM events WHERE rev >= ? AND rev <= ? AND key >= ? ORDER BY rev, key'),
      trim: p('DELETE FROM events WHERE rev <= ?'),
    };
  }

  async get(key: string): Promise<KV | undefined> {
    this.checkOpen();
    const row = this.stmt.get.get(key) as KVRow | undefined;
    return row === undefined ? undefined : toKV(row);
  }

  async list(prefix: string): Promise<KV[]> {
    return this.range(prefix, prefixEnd(prefix));
  }

  async range(start: string, end: string, options: RangeOptions = {}): Promise<KV[]> {
    this.checkOpen();
    return this.rangeSync(start, end, options.limit ?? -1).map(toKV);
  }

  async revision(): Promise<number> {
    this.checkOpen();
    return this.currentRevision();
  }

  async txn(compares: Compare[], ops: Op[]): Promise<TxnResult> {
    this.checkOpen();
    checkDistinctKeys(ops);
    let result: TxnResult;
    try {
      this.db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      throw new KnitError('unavailable', `the store at ${this.path} is busy: ${messageOf(err)}`, { cause: err });
    }
    try {
      result = this.applyTxn(compares, ops);
      this.db.exec('COMMIT');
    } catch (err) {
      if (this.db.isTransaction) this.db.exec('ROLLBACK');
      if (err instanceof KnitError) throw err;
      throw new KnitError('unavailable', `store transaction failed at ${this.path}: ${messageOf(err)}`, { cause: err });
    }
    if (result.ok) this.scheduleDelivery();
    this.afterCommit();
    return result;
  }

  /** Runs the WAL checkpoint now (the idle timer does it otherwise). */
  checkpoint(): void {
    if (this.checkpointTimer !== undefined) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    this.uncheckpointed = 0;
    if (this.closed) return;
    try {
      // PASSIVE: never waits for another process's reader or writer; what it cannot copy now, a later one does.
      this.db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    } catch {
      // Busy or failed: the WAL keeps the data, and the next checkpoint retries.
    }
  }

  private afterCommit(): void {
    this.uncheckpointed += 1;
    if (this.uncheckpointed * 4 >= WAL_PAGES_BOUND) {
      this.checkpoint();
      return;
    }
    if (this.checkpointTimer !== undefined) this.checkpointTimer.refresh();
    else {
      this.checkpointTimer = setTimeout(() => this.checkpoint(), this.checkpointIdleMs);
      this.checkpointTimer.unref();
    }
  }

  watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: WatchEvent[]) => void,
    onError?: (err: Error) => void,
  ): () => void {
    this.checkOpen();
    const w: Watcher = {
      prefix,
      end: prefixEnd(prefix),
      next: fromRevision > 0 ? fromRevision : this.currentRevision() + 1,
      onEvents,
      onError,
      cancelled: false,
    };
    this.watchers.add(w);
    if (this.pollTimer === undefined) {
      this.pollTimer = setInterval(() => this.deliver(), this.pollIntervalMs);
      this.pollTimer.unref();
    }
    this.scheduleDelivery();
    return () => this.unwatch(w);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watchers) w.cancelled = true;
    this.watchers.clear();
    if (this.pollTimer !== undefined) clearInterval(this.pollTimer);
    if (this.checkpointTimer !== undefined) clearTimeout(this.checkpointTimer);
    // The last connection's close checkpoints the WAL into the database.
    this.db.close();
  }

  /**
   * Runs inside the open write transaction. Kept separate (and overridable)
   * so the crash tests can kill the process between two ops.
   */
  protected applyOp(op: Op, rev: number): boolean {
    if ('put' in op) {
      const old = this.stmt.get.get(op.put) as KVRow | undefined;
      if (old === undefined) {
        this.stmt.insert.run(op.put, op.value, rev, rev);
        this.stmt.event.run(rev, op.put, op.value, rev);
      } else {
        this.stmt.update.run(op.value, rev, op.put);
        this.stmt.event.run(rev, op.put, op.value, old.create_rev);
      }
      return true;
    }
    if ('delete' in op) return this.deleteKey(op.delete, rev);
    let changed = false;
    for (const row of this.rangeSync(op.deletePrefix, prefixEnd(op.deletePrefix), -1)) {
      changed = this.deleteKey(row.key, rev) || changed;
    }
    return changed;
  }

  private applyTxn(compares: Compare[], ops: Op[]): TxnResult {
    const current = this.currentRevision();
    for (const c of compares) {
      const row = this.stmt.get.get(c.key) as KVRow | undefined;
      if ((row?.mod_rev ?? 0) !== c.modRevision) return { ok: false, revision: current };
    }
    const rev = current + 1;
    let changed = false;
    for (const op of ops) changed = this.applyOp(op, rev) || changed;
    if (!changed) return { ok: true, revision: current };
    this.stmt.setMeta.run(rev, 'revision');
    // Trim history in steps rather than on every commit.
    if (rev % 1000 === 0 && rev > this.historyRevisions) {
      const upTo = rev - this.historyRevisions;
      this.stmt.trim.run(upTo);
      this.stmt.setMeta.run(upTo, 'compacted');
    }
    return { ok: true, revision: rev };
  }

  private deleteKey(key: string, rev: number): boolean {
    const old = this.stmt.get.get(key) as KVRow | undefined;
    if (old === undefined) return false;
    this.stmt.del.run(key);
    this.stmt.event.run(rev, key, null, old.create_rev);
    return true;
  }

  private rangeSync(start: string, end: string, limit: number): KVRow[] {
    return (end === '' ? this.stmt.rangeOpen.all(start, limit) : this.stmt.rangeTo.all(start, end, limit)) as unknown as KVRow[];
  }

  private currentRevision(): number {
    return (this.stmt.revision.get() as { value: number }).value;
  }

  private scheduleDelivery(): void {
    if (this.deliveryScheduled || this.watchers.size === 0) return;
    this.deliveryScheduled = true;
    setImmediate(() => {
      this.deliveryScheduled = false;
      this.deliver();
    });
  }

  /** Hands every watcher the events from its next revision up to now. */
  private deliver(): void {
    if (this.closed) return;
    const current = this.currentRevision();
    const compacted = (this.stmt.compacted.get() as { value: number }).value;
    for (const w of this.watchers) {
      if (w.cancelled || w.next > current) continue;
      if (w.next <= compacted) {
        this.unwatch(w);
        w.onError?.(
          new KnitError('conflict', `watch of ${w.prefix} from revision ${w.next}: history up to revision ${compacted} has been compacted; list again and watch from ${current + 1}`),
        );
        continue;
      }
      const rows = (w.end === ''
        ? this.stmt.eventsOpen.all(w.next, current, w.prefix)
        : this.stmt.eventsTo.all(w.next, current, w.prefix, w.end)) as unknown as EventRow[];
      w.next = current + 1;
      if (rows.length === 0) continue;
      const events = rows.map(toEvent);
      try {
        w.onEvents(events);
      } catch (err) {
        this.unwatch(w);
        w.onError?.(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  private unwatch(w: Watcher): void {
    w.cancelled = true;
    this.watchers.delete(w);
    if (this.watchers.size === 0 && this.pollTimer !== undefined) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new KnitError('unavailable', `the store at ${this.path} is closed`);
  }
}

function toKV(row: KVRow): KV {
  return { key: row.key, value: row.value, createRevision: row.create_rev, modRevision: row.mod_rev };
}

function toEvent(row: EventRow): WatchEvent {
  if (row.value === null) {
    return { type: 'delete', kv: { key: row.key, value: '', createRevision: row.create_rev, modRevision: row.rev } };
  }
  return { type: 'put', kv: { key: row.key, value: row.value, createRevision: row.create_rev, modRevision: row.rev } };
}

function checkDistinctKeys(ops: Op[]): void {
  const seen = new Set<string>();
  for (const op of ops) {
    const key = 'put' in op ? op.put : 'delete' in op ? op.delete : undefined;
    if (key === undefined) continue;
    if (seen.has(key)) throw new KnitError('invalid', `txn: key ${key} appears in more than one op (one op per key, as etcd requires)`, { field: 'ops' });
    seen.add(key);
  }
}
