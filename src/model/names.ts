// Naming rules shared by every front-end.
import { invalid } from '../lib/errors.ts';

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

/** Network and sandbox names: Docker's rule, up to 64 characters. */
export function checkName(field: string, name: string): string {
  if (!NAME_RE.test(name)) {
    throw invalid(field, `'${name}' is not a valid name: use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit`);
  }
  return name;
}

/** Linux interface names: at most 15 bytes, no '/', ':' or whitespace. */
export function checkIfname(field: string, name: string): string {
  if (name.length === 0 || Buffer.byteLength(name) > 15) {
    throw invalid(field, `interface name '${name}' must be 1 to 15 characters (Linux IFNAMSIZ), it has ${Buffer.byteLength(name)}`);
  }
  if (/[/:\s]/.test(name) || name === '.' || name === '..') {
    throw invalid(field, `interface name '${name}' must not contain '/', ':' or spaces`);
  }
  return name;
}

/** `k=v` pairs from repeated CLI flags into a record. */
export function parseKeyValues(field: string, items: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw invalid(field, `'${item}' is not key=value`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}
