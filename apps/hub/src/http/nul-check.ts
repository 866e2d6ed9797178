/**
 * Finds the first string containing U+0000 in a parsed JSON value and returns its path. Postgres
 * text and jsonb cannot store NUL, so such input is refused at the boundary instead of failing
 * deep in a query.
 */
export function findNul(value: unknown, path: string): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? path : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = findNul(value[i], `${path}.${i}`);
      if (p) return p;
    }
    return undefined;
  }
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const p = k.includes('\u0000') ? `${path}.${k}` : findNul(v, `${path}.${k}`);
      if (p) return p;
    }
  }
  return undefined;
}
