import { z } from 'zod';

/** `?limit=&cursor=` for every list endpoint (keyset pagination). */
export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().min(1).max(512).optional(),
});
/** `?limit=&cursor=` for every list endpoint. */
export type PageQuery = z.infer<typeof PageQuery>;

/** Wraps an item schema into the `{items, nextCursor}` list envelope. */
export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() });
}

/** The `{items, nextCursor}` list envelope. */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
