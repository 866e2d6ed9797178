/** SQLSTATE of a pg error, if it is one. */
export function sqlState(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** The violated constraint's name, if the error names one. */
export function constraintName(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const c = (err as { constraint?: unknown }).constraint;
  return typeof c === 'string' ? c : undefined;
}

/** Unique violation (23505), optionally of a named constraint. */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  return sqlState(err) === '23505' && (constraint === undefined || constraintName(err) === constraint);
}

/** Foreign-key violation (23503). */
export function isForeignKeyViolation(err: unknown): boolean {
  return sqlState(err) === '23503';
}
