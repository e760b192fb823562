// A zod failure as one KnitError naming the first bad field.
import type * as z from 'zod';
import { invalid } from '../lib/errors.ts';
import type { KnitError } from '../lib/errors.ts';

export function zodError(err: z.ZodError, what: string): KnitError {
  const issue = err.issues[0];
  const path = issue?.path.length ? issue.path.join('.') : what;
  return invalid(path, issue?.message ?? 'invalid request');
}
