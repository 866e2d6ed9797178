import { describe, expect, it } from 'vitest';
import { contentHash } from './content-hash.js';

describe('contentHash', () => {
  it('ignores key order and undefined fields but not values', () => {
    const a = contentHash({ harness: 'command', command: ['a'], env: { X: '1', Y: '2' } });
    expect(contentHash({ env: { Y: '2', X: '1' }, command: ['a'], harness: 'command', image: undefined })).toBe(a);
    expect(contentHash({ harness: 'command', command: ['b'], env: { X: '1', Y: '2' } })).not.toBe(a);
    expect(a).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});
