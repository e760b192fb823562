// The store interface: a key-value map with a global revision, compare-and-set
// transactions and prefix watches, shaped after etcd's v3 API so that the
// embedded SQLite backend and a later etcd backend are interchangeable.
//
// Every call returns a Promise even though SQLite answers synchronously: etcd
// is remote, and callers written against Promises need no change when the
// backend does. The cost for SQLite is one microtask per call.

export interface KV {
  key: string;
  value: string;
  /** Revision of the transaction that last wrote the key. */
  modRevision: number;
  /** Revision of the transaction that created the key (since its last delete). */
  createRevision: number;
}

/** Holds when the key's modRevision equals `modRevision`; 0 means "must not exist". */
export interface Compare {
  key: string;
  modRevision: number;
}

export type Op = { put: string; value: string } | { delete: string } | { deletePrefix: string };

export interface TxnResult {
  /** True when every compare held and the ops were applied. */
  ok: boolean;
  /** The store's revision after the transaction (unchanged when !ok or nothing changed). */
  revision: number;
}

export interface WatchEvent {
  type: 'put' | 'delete';
  /** For a delete: value is '' and modRevision is the revision of the delete. */
  kv: KV;
}

export interface RangeOptions {
  /** Return at most this many keys (in key order). */
  limit?: number;
}

export interface Store {
  get(key: string): Promise<KV | undefined>;
  /** All keys starting with `prefix`, in key order. */
  list(prefix: string): Promise<KV[]>;
  /** Keys in [start, end) in key order; end '' means no upper bound (etcd's range_end). */
  range(start: string, end: string, options?: RangeOptions): Promise<KV[]>;
  /**
   * Applies `ops` atomically, with one new revision, if every compare holds.
   * A key may appear in at most one op.
   */
  txn(compares: Compare[], ops: Op[]): Promise<TxnResult>;
  /**
   * Calls `onEvents` with the changes to keys under `prefix`, grouped by
   * revision, starting at `fromRevision` (0: from the next change). Events
   * arrive asynchronously, never inside txn(). `onError` gets failures (a
   * start revision that has been compacted away, or an exception thrown by
   * `onEvents`); the watch then stops.
   * Returns a function that cancels the watch.
   */
  watch(
    prefix: string,
    fromRevision: number,
    onEvents: (events: WatchEvent[]) => void,
    onError?: (err: Error) => void,
  ): () => void;
  revision(): Promise<number>;
  close(): Promise<void>;
}

/** The first key after every key that starts with `prefix` ('' = no bound), as etcd computes range_end. */
export function prefixEnd(prefix: string): string {
  for (let i = prefix.length - 1; i >= 0; i--) {
    const c = prefix.charCodeAt(i);
    if (c < 0xffff) return prefix.slice(0, i) + String.fromCharCode(c + 1);
  }
  return '';
}
