// Reports as text: an aligned table for the terminal, Markdown for bench/results.
import type { Report, Stat, Table, Target } from './types.ts';

export function fmt(x: number): string {
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

function cell(s: Stat | undefined): string {
  if (s === undefined) return '—';
  if (s.n <= 1 || s.min === s.max) return fmt(s.median);
  return `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`;
}

function ratio(knit: Stat | undefined, other: Stat | undefined): string {
  if (knit === undefined || other === undefined || other.median === 0) return '—';
  return `${(knit.median / other.median).toFixed(2)}×`;
}

/** Header and rows as strings: value columns, then one Knit/peer ratio column per other subject. */
function grid(t: Table): string[][] {
  const [knit, ...others] = t.subjects;
  const head = [`${t.unit}: median (min–max)`, ...t.subjects, ...others.map((o) => `${knit}/${o}`)];
  const rows = t.rows.map((r) => [r.label, ...t.subjects.map((_, i) => cell(r.values[i])), ...others.map((_, i) => ratio(r.values[0], r.values[i + 1]))]);
  return [head, ...rows];
}

function verdict(t: Target): string {
  return t.met === undefined ? 'not judged' : t.met ? 'met' : 'NOT met';
}

export function toText(r: Report): string {
  const out: string[] = [`== ${r.title}`];
  for (const t of r.tables) {
    const g = grid(t);
    const widths = g[0]!.map((_, c) => Math.max(...g.map((row) => row[c]!.length)));
    out.push('', t.title);
    g.forEach((row, i) => {
      out.push(row.map((v, c) => (c === 0 ? v.padEnd(widths[c]!) : v.padStart(widths[c]!))).join('  '));
      if (i === 0) out.push(widths.map((w) => '-'.repeat(w)).join('  '));
    });
  }
  if (r.targets.length > 0) {
    out.push('', 'Targets');
    for (const t of r.targets) out.push(`  [${verdict(t)}] ${t.target}: ${t.measured}`);
  }
  if (r.notes.length > 0) out.push('', ...r.notes.map((n) => `  note: ${n}`));
  return out.join('\n') + '\n';
}

export function toMarkdown(r: Report, header: string[]): string {
  const out: string[] = [`# ${r.title}`, '', ...header, ''];
  for (const t of r.tables) {
    const g = grid(t);
    out.push(`## ${t.title}`, '', `| ${g[0]!.join(' | ')} |`, `|${g[0]!.map((_, c) => (c === 0 ? '---' : '---:')).join('|')}|`);
    for (const row of g.slice(1)) out.push(`| ${row.join(' | ')} |`);
    out.push('');
  }
  if (r.targets.length > 0) {
    out.push('## Targets', '', '| target | measured | verdict |', '|---|---|---|');
    for (const t of r.targets) out.push(`| ${t.target} | ${t.measured} | ${t.met === undefined ? 'not judged' : t.met ? '**met**' : '**not met**'} |`);
    out.push('');
  }
  if (r.notes.length > 0) out.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '');
  return out.join('\n');
}
