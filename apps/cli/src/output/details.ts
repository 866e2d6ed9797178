import { sanitizeCell } from './sanitize.js';

/**
 * Renders `label: value` lines with the values aligned, for `show` commands. A value with several
 * lines (already sanitised by the caller, e.g. a list) is indented under its label.
 */
export function formatDetails(pairs: ReadonlyArray<readonly [string, string | readonly string[]]>): string {
  const width = Math.max(0, ...pairs.map(([label]) => label.length + 1));
  const lines: string[] = [];
  for (const [label, value] of pairs) {
    const head = `${label}:`.padEnd(width);
    if (typeof value === 'string') {
      lines.push(`${head}  ${sanitizeCell(value)}`.trimEnd());
    } else if (value.length === 0) {
      lines.push(`${head}  -`);
    } else {
      lines.push(head.trimEnd());
      for (const v of value) lines.push(`  ${sanitizeCell(v)}`);
    }
  }
  return lines.join('\n');
}
