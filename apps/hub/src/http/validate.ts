import { GraftError } from '@graft/protocol';
import type { z } from 'zod';

/** Validates one part of a request; a failure lists every problem with its path. */
export function validate<T extends z.ZodType>(schema: T, value: unknown, part: 'params' | 'query' | 'body'): z.output<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => ({ path: [part, ...i.path.map(String)].join('.'), message: i.message, code: i.code }));
  const summary = issues
    .slice(0, 5)
    .map((i) => `${i.path}: ${i.message}`)
    .join('; ');
  // A malformed id in the path is "no such thing" to the caller, but still a 400 with the reason.
  throw new GraftError('validation_error', `invalid ${part}: ${summary}${issues.length > 5 ? ` (and ${issues.length - 5} more)` : ''}`, { issues });
}
