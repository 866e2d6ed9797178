import { createHash, randomBytes } from 'node:crypto';
import { GraftError } from '@graft/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { LogArchive } from './log-archive.js';

/** What a contract factory hands the suite: an empty archive, and a cleanup that closes it and frees its storage. */
export interface LogArchiveUnderTest {
  archive: LogArchive;
  cleanup(): Promise<void>;
}

/** Past one ListObjectsV2 page (at most 1000 keys), so a listing that does not paginate comes up short. */
const MANY_KEYS = 1010;
const PUT_CONCURRENCY = 16;

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Runs `task` over `items` with at most `limit` in flight. */
async function inPool<T>(items: readonly T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) await task(items[i] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

async function expectInvalid(attempt: Promise<unknown>): Promise<void> {
  const err = await attempt.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(GraftError);
  expect(err).toMatchObject({ code: 'bad_request' });
}

const INVALID_KEYS = [
  '',
  '/abs/key.log',
  'trailing/',
  'double//slash',
  '..',
  '../escape.log',
  'p/../../escape.log',
  'p/..',
  '.',
  'p/./x.log',
  '.hidden',
  'p/.tmp-x',
  'space in/key',
  'back\\slash',
  'nul\0byte',
  'ümlaut',
  'p/new\nline',
  `p/${'x'.repeat(256)}`,
];

/**
 * The behaviour every LogArchive adapter must show: `make` is called before each test and must
 * return an empty archive. Everything is observed through the port only.
 */
export function logArchiveContract(name: string, make: () => Promise<LogArchiveUnderTest>): void {
  describe(`LogArchive contract: ${name}`, () => {
    let subject: LogArchiveUnderTest;
    let archive: LogArchive;

    beforeEach(async () => {
      subject = await make();
      archive = subject.archive;
    });

    afterEach(async () => {
      await subject.cleanup();
    });

    it('returns the exact bytes it stored, text, binary, empty and 5 MB alike', async () => {
      const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const objects: Record<string, Buffer> = {
        'p/a/00000001.log': Buffer.from('{"stream":"stdout","line":"héllo ✓"}\n'),
        'p/a/00000002.log': Buffer.concat([every, Buffer.from(every).reverse(), randomBytes(64 * 1024)]),
        'p/a/00000003.log': Buffer.alloc(0),
        'p/a/00000004.log': randomBytes(5 * 1024 * 1024),
      };
      for (const [key, data] of Object.entries(objects)) await archive.put(key, data);
      for (const [key, data] of Object.entries(objects)) {
        const got = await archive.get(key);
        expect(Buffer.isBuffer(got), key).toBe(true);
        expect(got?.length, key).toBe(data.length);
        expect(sha256(got ?? Buffer.alloc(1)), key).toBe(sha256(data));
      }
    });

    it('answers null for a key it does not hold, including one that names a prefix', async () => {
      expect(await archive.get('p/a/00000001.log')).toBeNull();
      await archive.put('p/a/00000001.log', Buffer.from('x'));
      expect(await archive.get('p/a/00000002.log')).toBeNull();
      expect(await archive.get('p/a')).toBeNull();
      expect(await archive.get('q/a/00000001.log')).toBeNull();
    });

    it('replaces an object with the same key, shorter content included', async () => {
      await archive.put('p/a/00000001.log', Buffer.from('the first, longer version\n'));
      await archive.put('p/a/00000001.log', Buffer.from('v2\n'));
      expect((await archive.get('p/a/00000001.log'))?.toString()).toBe('v2\n');
      expect(await archive.list('p')).toEqual(['p/a/00000001.log']);
    });

    it('lists keys in lexicographic order across directory boundaries', async () => {
      const keys = ['p/ab/c', 'p/Ab', 'p/ab-x', 'p/10.log', 'p/ab_x', 'p/9.log', 'p/ab.x', 'p/aa', 'p/b'];
      for (const key of keys) await archive.put(key, Buffer.from(key));
      // Code-unit order: '-' < '.' < '/' < digits < upper case < '_' < lower case.
      expect(await archive.list('p')).toEqual([
        'p/10.log',
        'p/9.log',
        'p/Ab',
        'p/aa',
        'p/ab-x',
        'p/ab.x',
        'p/ab/c',
        'p/ab_x',
        'p/b',
      ]);
    });

    it('lists only what lies under a prefix, segment by segment', async () => {
      for (const key of ['a/b/1.log', 'a/b/c/2.log', 'a/bc/1.log', 'a/b1.log', 'z/1.log']) {
        await archive.put(key, Buffer.from(key));
      }
      expect(await archive.list('a/b')).toEqual(['a/b/1.log', 'a/b/c/2.log']);
      expect(await archive.list('a/b/')).toEqual(['a/b/1.log', 'a/b/c/2.log']);
      expect(await archive.list('a/bc')).toEqual(['a/bc/1.log']);
      expect(await archive.list('a')).toEqual(['a/b/1.log', 'a/b/c/2.log', 'a/b1.log', 'a/bc/1.log']);
      expect(await archive.list('a/b/1.log')).toEqual([]);
      expect(await archive.list('nothing/here')).toEqual([]);
      expect(await archive.list('')).toEqual(['a/b/1.log', 'a/b/c/2.log', 'a/b1.log', 'a/bc/1.log', 'z/1.log']);
    });

    it(`lists all of ${MANY_KEYS} keys under one prefix, then deletes them all`, async () => {
      const keys = Array.from({ length: MANY_KEYS }, (_, i) => `big/agent/${String(i).padStart(8, '0')}.log`);
      // Stored out of order, so neither the listing's order nor its completeness comes for free.
      const scrambled = keys.map((_, i) => keys[(i * 7919) % MANY_KEYS] as string);
      await inPool(scrambled, PUT_CONCURRENCY, (key) => archive.put(key, Buffer.from(key)));
      await archive.put('big/agentx/00000001.log', Buffer.from('neighbour'));

      const listed = await archive.list('big/agent');
      expect(listed.length).toBe(MANY_KEYS);
      expect(listed).toEqual(keys);

      await archive.deletePrefix('big/agent');
      expect(await archive.list('big/agent')).toEqual([]);
      expect(await archive.list('big')).toEqual(['big/agentx/00000001.log']);
    });

    it('deletes only the given prefix, idempotently', async () => {
      for (const key of ['d/a/1.log', 'd/a/x/2.log', 'd/ab/1.log', 'd/b/1.log', 'e/a/1.log']) {
        await archive.put(key, Buffer.from(key));
      }
      await archive.deletePrefix('d/a');
      expect(await archive.list('')).toEqual(['d/ab/1.log', 'd/b/1.log', 'e/a/1.log']);
      expect(await archive.get('d/a/1.log')).toBeNull();
      expect(await archive.get('d/a/x/2.log')).toBeNull();

      await archive.deletePrefix('d/a');
      await archive.deletePrefix('d/a/');
      await archive.deletePrefix('never/there');
      // An object is not a prefix: deleting "under" it removes nothing.
      await archive.deletePrefix('d/ab/1.log');
      expect(await archive.list('')).toEqual(['d/ab/1.log', 'd/b/1.log', 'e/a/1.log']);

      await archive.put('d/a/1.log', Buffer.from('again'));
      expect((await archive.get('d/a/1.log'))?.toString()).toBe('again');
    });

    it('rejects invalid keys and prefixes with bad_request, storing nothing', async () => {
      for (const key of INVALID_KEYS) {
        await expectInvalid(archive.put(key, Buffer.from('x')));
        await expectInvalid(archive.get(key));
      }
      for (const prefix of INVALID_KEYS.filter((k) => k !== '' && k !== 'trailing/')) {
        await expectInvalid(archive.list(prefix));
        await expectInvalid(archive.deletePrefix(prefix));
      }
      // The whole archive is never one deletePrefix away.
      await expectInvalid(archive.deletePrefix(''));
      expect(await archive.list('')).toEqual([]);

      const odd = 'A-z_0.9/x.y-z/a...log';
      await archive.put(odd, Buffer.from('fine'));
      expect((await archive.get(odd))?.toString()).toBe('fine');
    });

    it('lands every one of many concurrent puts of different keys', async () => {
      const objects = Array.from({ length: 48 }, (_, i) => ({
        key: `c/${i % 3}/${String(i).padStart(8, '0')}.log`,
        data: randomBytes(16 * 1024 + i),
      }));
      await Promise.all(objects.map(({ key, data }) => archive.put(key, data)));
      expect((await archive.list('c')).length).toBe(objects.length);
      for (const { key, data } of objects) expect(sha256((await archive.get(key)) ?? Buffer.alloc(1)), key).toBe(sha256(data));
    });
  });
}
