// One error type for every layer: front-ends map `code` to their protocol
// (HTTP status, CNI error code, Docker's Err string) and show `message` as is.

export type ErrorCode =
  | 'invalid' // bad input: names the field and what would be right
  | 'not-found'
  | 'conflict' // exists already, overlaps, taken
  | 'exhausted' // a pool has no free address
  | 'unsupported' // a feature this kernel or build lacks
  | 'unavailable' // a dependency (daemon, store) cannot be reached: try again
  | 'internal';

export class KnitError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, options?: { field?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KnitError';
    this.code = code;
    this.field = options?.field;
  }
}

export function invalid(field: string, message: string): KnitError {
  return new KnitError('invalid', `${field}: ${message}`, { field });
}

export function notFound(message: string): KnitError {
  return new KnitError('not-found', message);
}

export function conflict(message: string, field?: string): KnitError {
  return new KnitError('conflict', message, field === undefined ? undefined : { field });
}

/** The message of anything thrown, for wrapping with context. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
