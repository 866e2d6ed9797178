import { GraftError } from '@graft/protocol';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, isUuidKey, toPage } from './cursor.js';

describe('cursor', () => {
  it('round-trips a key and rejects garbage with a validation error', () => {
    const id = '01890a5d-ac96-774b-bcce-b302099a8057';
    expect(decodeCursor(encodeCursor(id), isUuidKey)).toBe(id);
    expect(decodeCursor(undefined, isUuidKey)).toBeUndefined();
    try {
      decodeCursor('not-a-cursor', isUuidKey);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(GraftError);
      expect((err as GraftError).code).toBe('validation_error');
    }
  });

  it('toPage returns a cursor only when a further row was fetched', () => {
    const rows = [{ id: 'a' }, { id: 'b' }, { id: 'c' }];
    expect(toPage(rows, 2, (r) => r.id, (r) => r.id)).toEqual({ items: ['a', 'b'], nextCursor: encodeCursor('b') });
    expect(toPage(rows, 3, (r) => r.id, (r) => r.id)).toEqual({ items: ['a', 'b', 'c'], nextCursor: null });
  });
});
