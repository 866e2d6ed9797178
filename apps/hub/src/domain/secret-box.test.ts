import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseMasterKey, SecretBox } from './secret-box.js';

describe('SecretBox', () => {
  const box = new SecretBox(randomBytes(32));

  it('round-trips and never contains the plaintext', () => {
    const sealed = box.seal('hunter2-very-secret', 'project:p:secret:A');
    expect(sealed).not.toContain('hunter2');
    expect(box.open(sealed, 'project:p:secret:A')).toBe('hunter2-very-secret');
  });

  it('uses a fresh nonce per value', () => {
    expect(box.seal('same', 'aad')).not.toBe(box.seal('same', 'aad'));
  });

  it('fails on a different associated data, a tampered ciphertext or another key', () => {
    const sealed = box.seal('value', 'project:p:secret:A');
    expect(() => box.open(sealed, 'project:p:secret:B')).toThrow();
    const parts = sealed.split('.');
    const ct = Buffer.from(parts[3] ?? '', 'base64url');
    ct[0] = (ct[0] ?? 0) ^ 1;
    expect(() => box.open([parts[0], parts[1], parts[2], ct.toString('base64url')].join('.'), 'project:p:secret:A')).toThrow();
    expect(() => new SecretBox(randomBytes(32)).open(sealed, 'project:p:secret:A')).toThrow();
  });
});

describe('parseMasterKey', () => {
  it('accepts 64 hex chars or base64 of 32 bytes and nothing else', () => {
    const k = randomBytes(32);
    expect(parseMasterKey(k.toString('hex'))?.equals(k)).toBe(true);
    expect(parseMasterKey(k.toString('base64'))?.equals(k)).toBe(true);
    expect(parseMasterKey('short')).toBeNull();
    expect(parseMasterKey(randomBytes(16).toString('hex'))).toBeNull();
  });
});
