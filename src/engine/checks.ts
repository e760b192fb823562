// Checks on a request before anything is recorded: its shape (zod) and the
// fields whose rules the schema cannot say.
import type { ZodType } from 'zod';
import type { SandboxCreate } from '../model/index.ts';
import { invalid } from '../lib/errors.ts';
import { familyOf } from '../lib/ip.ts';
import { zodError } from './zod-error.ts';

export function parseInput<T>(schema: ZodType<T>, input: unknown, what: string): T {
  const r = schema.safeParse(input);
  if (!r.success) throw zodError(r.error, what);
  return r.data;
}

/** --dns servers go into resolv.conf, which takes bare addresses; search domains and options are single tokens. */
export function checkDnsConfig(dns: SandboxCreate['dns']): void {
  (dns?.servers ?? []).forEach((ip, i) => {
    if (familyOf(ip) === undefined) throw invalid(`dns.servers[${i}]`, `'${ip}' is not an IP address (e.g. 10.10.0.1; resolv.conf has no port)`);
  });
  for (const key of ['search', 'options'] as const) {
    (dns?.[key] ?? []).forEach((t, i) => {
      if (!/^[^\s#;]+$/.test(t)) throw invalid(`dns.${key}[${i}]`, `'${t}' must be one word without '#' or ';' (e.g. ${key === 'search' ? 'corp.example' : 'ndots:2'})`);
    });
  }
}
