import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsLogArchive } from './fs-log-archive.js';
import { logArchiveContract } from './log-archive-contract.js';

logArchiveContract('fs', async () => {
  const rootDir = await mkdtemp(join(tmpdir(), 'graft-fs-log-archive-'));
  const archive = new FsLogArchive({ rootDir: join(rootDir, 'archive') });
  return {
    archive,
    cleanup: async () => {
      await archive.close();
      await rm(rootDir, { recursive: true, force: true });
    },
  };
});

/** Every file and directory under `dir`, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map(String).sort();
}

describe('FsLogArchive', () => {
  let base: string;
  let rootDir: string;
  let archive: FsLogArchive;

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'graft-fs-log-archive-'));
    rootDir = join(base, 'archive');
    archive = new FsLogArchive({ rootDir });
  });

  afterEach(async () => {
    await archive.close();
    await rm(base, { recursive: true, force: true });
  });

  it('keeps each key as a plain file under rootDir and leaves no temp files behind', async () => {
    await archive.put('proj/agent/00000001.log', Buffer.from('one\n'));
    await archive.put('proj/agent/00000001.log', Buffer.from('uno\n'));
    await archive.put('proj/agent/00000002.log', Buffer.from('two\n'));
    expect(await readFile(join(rootDir, 'proj', 'agent', '00000001.log'), 'utf8')).toBe('uno\n');
    expect(await tree(rootDir)).toEqual(['proj', 'proj/agent', 'proj/agent/00000001.log', 'proj/agent/00000002.log']);
  });

  it('writes nothing outside rootDir for a key that tries to escape it', async () => {
    await expect(archive.put('../escape.log', Buffer.from('x'))).rejects.toMatchObject({ code: 'bad_request' });
    await expect(archive.put('a/../../escape.log', Buffer.from('x'))).rejects.toMatchObject({ code: 'bad_request' });
    await expect(archive.deletePrefix('..')).rejects.toMatchObject({ code: 'bad_request' });
    expect(existsSync(join(base, 'escape.log'))).toBe(false);
    expect(await readdir(base)).toEqual([]);
  });

  it('never shows a torn object: concurrent puts of one key leave exactly one whole version', async () => {
    const versions = Array.from({ length: 8 }, () => randomBytes(512 * 1024));
    const digests = versions.map((v) => createHash('sha256').update(v).digest('hex'));
    await Promise.all(versions.map((v) => archive.put('p/a/00000001.log', v)));
    const got = await archive.get('p/a/00000001.log');
    expect(digests).toContain(createHash('sha256').update(got ?? Buffer.alloc(0)).digest('hex'));
    expect(await tree(join(rootDir, 'p', 'a'))).toEqual(['00000001.log']);
  });

  it('hides leftovers of a crash (temp files, half-deleted prefixes) and deletes them with their prefix', async () => {
    await archive.put('p/a/00000001.log', Buffer.from('kept'));
    await writeFile(join(rootDir, 'p', 'a', '.tmp-crashed'), 'partial');
    await mkdir(join(rootDir, 'p', '.deleting-crashed'));
    await writeFile(join(rootDir, 'p', '.deleting-crashed', '00000001.log'), 'old');
    expect(await archive.list('')).toEqual(['p/a/00000001.log']);
    await archive.deletePrefix('p');
    expect(await readdir(rootDir)).toEqual([]);
  });

  it('finds what an earlier instance stored on the same rootDir', async () => {
    await archive.put('p/a/00000001.log', Buffer.from('durable'));
    await archive.close();
    archive = new FsLogArchive({ rootDir });
    expect((await archive.get('p/a/00000001.log'))?.toString()).toBe('durable');
    expect(await archive.list('p')).toEqual(['p/a/00000001.log']);
  });
});
