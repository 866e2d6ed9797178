import { GraftError } from '@graft/protocol';
import { RawJson } from '../http/route.js';

/** Encodes the sort key of the last item of a page as an opaque cursor. */
export function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

/** Decodes a cursor and checks it with `valid`; a bad one is a validation error, never a 500. */
export function decodeCursor(cursor: string | undefined, valid: (key: string) => boolean): string | undefined {
  if (cursor === undefined) return undefined;
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!valid(key)) throw new GraftError('validation_error', 'invalid cursor: pass back the nextCursor of a previous page', { field: 'cursor' });
  return key;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Cursor validator for id-keyed lists. */
export const isUuidKey = (k: string): boolean => UUID_RE.test(k);

/** Builds `{items, nextCursor}` from `limit + 1` fetched rows. */
export function toPage<Row, Item>(rows: Row[], limit: number, key: (r: Row) => string, map: (r: Row) => Item) {
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  const last = page[page.length - 1];
  return { items: page.map(map), nextCursor: more && last !== undefined ? encodeCursor(key(last)) : null };
}

/** The `{items, nextCursor}` page as JSON text, from `limit + 1` rows that carry their item as JSON text. */
export function rawJsonPage(rows: Array<{ id: string; json: string }>, limit: number): RawJson {
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  const last = page[page.length - 1];
  const nextCursor = more && last !== undefined ? encodeCursor(last.id) : null;
  return new RawJson(`{"items":[${page.map((r) => r.json).join(',')}],"nextCursor":${JSON.stringify(nextCursor)}}`);
}
