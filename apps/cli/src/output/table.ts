import { sanitizeCell } from './sanitize.js';

/** One column of a table. */
export interface Column {
  header: string;
  /** Right-align (numbers). */
  align?: 'left' | 'right';
  /** Longer cells are cut and end in `…`. */
  maxWidth?: number;
}

const GAP = '  ';

function fitCell(cell: string, maxWidth: number | undefined): string {
  const clean = sanitizeCell(cell);
  if (maxWidth === undefined || clean.length <= maxWidth) return clean;
  return `${clean.slice(0, Math.max(0, maxWidth - 1))}…`;
}

/**
 * Renders rows under upper-case headers in columns aligned by padding, two spaces apart, with no
 * trailing whitespace. Cells are sanitised, so hub-supplied text cannot break the layout.
 */
export function formatTable(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>): string {
  const cells = [columns.map((c) => c.header.toUpperCase()), ...rows.map((r) => columns.map((c, i) => fitCell(r[i] ?? '', c.maxWidth)))];
  const widths = columns.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((cell, i) => {
          const width = widths[i] ?? 0;
          return columns[i]?.align === 'right' ? cell.padStart(width) : cell.padEnd(width);
        })
        .join(GAP)
        .trimEnd(),
    )
    .join('\n');
}
