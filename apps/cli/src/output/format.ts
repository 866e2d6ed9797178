/** `-` for absent values, so empty cells stay visible in tables. */
export function orDash(value: string | number | null | undefined): string {
  return value === null || value === undefined || value === '' ? '-' : String(value);
}

/** `k=v,k2=v2`, sorted by key; `-` when empty. */
export function formatLabels(labels: Readonly<Record<string, string>> | undefined): string {
  const entries = Object.entries(labels ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return entries.length === 0 ? '-' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

function span(ms: number): string {
  const secs = Math.floor(Math.abs(ms) / 1000);
  if (secs < 60) return `${secs}s`;
  if (secs < 3600) return `${Math.floor(secs / 60)}m`;
  if (secs < 86400) return `${Math.floor(secs / 3600)}h`;
  return `${Math.floor(secs / 86400)}d`;
}

/** Compact age of a past timestamp: `42s`, `5m`, `3h`, `12d`; `-` when absent. */
export function formatAge(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return '-';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso;
  return span(Math.max(0, now - then));
}

/** A timestamp with its distance from now, for `show` output: `2025-01-02T03:04:05.000Z (3h ago)` or `(in 30d)`. */
export function formatTime(iso: string | null | undefined, now: number = Date.now()): string {
  if (!iso) return '-';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return iso;
  return then > now ? `${iso} (in ${span(then - now)})` : `${iso} (${span(now - then)} ago)`;
}
