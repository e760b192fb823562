// The CNI error object and its well-known codes (SPEC.md "Error", libcni
// pkg/types). Plugins print it on stdout with exit code 1; runtimes parse it
// from a failed plugin's stdout.
import { KnitError } from '../lib/errors.ts';

export const ErrorCode = {
  Unknown: 0,
  IncompatibleCNIVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironmentVariables: 4,
  IOFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  InvalidNetNS: 8,
  TryAgainLater: 11,
  PluginNotAvailable: 50,
  LimitedConnectivity: 51,
  Internal: 999,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** What a plugin prints: `cniVersion` is optional because Go's type lacks it. */
export interface CniErrorJSON {
  cniVersion?: string;
  code: number;
  msg: string;
  details?: string;
}

export class CniError extends Error {
  readonly code: number;
  readonly msg: string;
  readonly details: string;

  constructor(code: number, msg: string, details = '', options?: { cause?: unknown }) {
    // Same text as Go's (*types.Error).Error(): "msg; details".
    super(details === '' ? msg : `${msg}; ${details}`, options);
    this.name = 'CniError';
    this.code = code;
    this.msg = msg;
    this.details = details;
  }

  toJSON(cniVersion?: string): CniErrorJSON {
    // Built in print order: cniVersion first when known.
    const out: CniErrorJSON =
      cniVersion !== undefined && cniVersion !== ''
        ? { cniVersion, code: this.code, msg: this.msg }
        : { code: this.code, msg: this.msg };
    if (this.details !== '') out.details = this.details;
    return out;
  }
}

/**
 * Turns anything thrown into a CniError, the way skel does: typed errors
 * keep their code, everything else becomes 999 with its message. Knit's own
 * errors map onto the nearest CNI code so callers see a useful one.
 */
export function toCniError(err: unknown): CniError {
  if (err instanceof CniError) return err;
  if (err instanceof KnitError) {
    switch (err.code) {
      case 'invalid':
        return new CniError(ErrorCode.InvalidNetworkConfig, err.message, err.field ?? '', { cause: err });
      case 'unavailable':
        return new CniError(ErrorCode.TryAgainLater, err.message, '', { cause: err });
      case 'unsupported':
        return new CniError(ErrorCode.UnsupportedField, err.message, err.field ?? '', { cause: err });
      default:
        return new CniError(ErrorCode.Internal, err.message, '', { cause: err });
    }
  }
  return new CniError(ErrorCode.Internal, err instanceof Error ? err.message : String(err), '', { cause: err });
}

/** Go's %q for a string (close enough: JSON string escaping). */
export function quote(s: string): string {
  return JSON.stringify(s);
}

/** Go's %q for a []string: ["a" "b"]. */
export function quoteList(list: readonly string[]): string {
  return `[${list.map(quote).join(' ')}]`;
}
