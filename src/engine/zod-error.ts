// A zod failure as one KnitError naming the first bad field.
import type * as z from 'zod';
import { invalid } from '../lib/errors.ts';
import type { KnitError } from '../lib/errors.ts';

export function zodError(err: z.ZodError, what: string): KnitError {
  const issue = err.issues[0];
  const path = issue?.path.length ? issue.path.join('.') : what;
  if (issue?.code === 'unrecognized_keys') {
    const [key] = issue.keys;
    const field = issue.path.length ? `${path}.${key ?? ''}` : (key ?? what);
    return invalid(field, `not a field of ${issue.path.length ? path : `a ${what}`} (check its spelling and where it goes)`);
  }
  return invalid(path, issue?.message ?? 'invalid request');
}
