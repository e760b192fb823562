// Typed records over the Store: one kind per key space (/knit/v1/<kind>/<id>),
// JSON values checked against a zod schema on read and on write, and writes
// that only succeed if the record is still the one the caller read.
import type { z } from 'zod';
import { KnitError, conflict, messageOf } from '../lib/errors.ts';
import type { Compare, Op, Store } from './store.ts';

export const KEY_ROOT = '/knit/v1/';

export interface StoredRecord<T> {
  id: string;
  value: T;
  /** Pass back to put()/delete() to write only if nobody changed the record since. */
  modRevision: number;
}

export class Records<T> {
  readonly kind: string;
  readonly prefix: string;
  private readonly store: Store;
  private readonly schema: z.ZodType<T>;

  constructor(store: Store, kind: string, schema: z.ZodType<T>) {
    if (!/^[a-z][a-z0-9-]*$/.test(kind)) throw new KnitError('internal', `record kind '${kind}' must be lower-case letters, digits and '-'`);
    this.store = store;
    this.kind = kind;
    this.schema = schema;
    this.prefix = `${KEY_ROOT}${kind}/`;
  }

  key(id: string): string {
    if (id === '' || id.includes('/')) throw new KnitError('invalid', `${this.kind} id '${id}' must be non-empty and contain no '/'`, { field: 'id' });
    return this.prefix + id;
  }

  async get(id: string): Promise<StoredRecord<T> | undefined> {
    const kv = await this.store.get(this.key(id));
    return kv === undefined ? undefined : { id, value: this.decode(kv.key, kv.value), modRevision: kv.modRevision };
  }

  async list(): Promise<StoredRecord<T>[]> {
    const kvs = await this.store.list(this.prefix);
    return kvs.map((kv) => ({ id: kv.key.slice(this.prefix.length), value: this.decode(kv.key, kv.value), modRevision: kv.modRevision }));
  }

  /**
   * Writes the record if its modRevision is still `expected` (0: only if it
   * does not exist). Returns the new revision; throws 'conflict' otherwise.
   */
  async put(id: string, value: T, expected: number): Promise<number> {
    const res = await this.store.txn([this.compare(id, expected)], [this.putOp(id, value)]);
    if (!res.ok) throw this.changed(id, expected);
    return res.revision;
  }

  /** Deletes the record if its modRevision is still `expected`; a missing record is fine when expected is undefined. */
  async delete(id: string, expected?: number): Promise<void> {
    const compares = expected === undefined ? [] : [this.compare(id, expected)];
    const res = await this.store.txn(compares, [{ delete: this.key(id) }]);
    if (!res.ok) throw this.changed(id, expected ?? 0);
  }

  /** Building blocks for a caller's own multi-key transaction. */
  putOp(id: string, value: T): Op {
    const parsed = this.schema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const field = issue === undefined ? this.kind : [this.kind, ...issue.path.map(String)].join('.');
      throw new KnitError('invalid', `${field}: ${issue?.message ?? 'does not match the schema'}`, { field, cause: parsed.error });
    }
    return { put: this.key(id), value: JSON.stringify(parsed.data) };
  }

  deleteOp(id: string): Op {
    return { delete: this.key(id) };
  }

  compare(id: string, modRevision: number): Compare {
    return { key: this.key(id), modRevision };
  }

  decode(key: string, text: string): T {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (err) {
      throw new KnitError('internal', `record ${key} is not JSON: ${messageOf(err)}`, { cause: err });
    }
    const parsed = this.schema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue === undefined ? '' : ` at ${issue.path.join('.') || '(root)'}: ${issue.message}`;
      throw new KnitError('internal', `record ${key} does not match the ${this.kind} schema${where}`, { cause: parsed.error });
    }
    return parsed.data;
  }

  private changed(id: string, expected: number): KnitError {
    return expected === 0
      ? conflict(`${this.kind} ${id} already exists`)
      : conflict(`${this.kind} ${id} was changed by someone else (expected revision ${expected}); read it again and retry`);
  }
}
