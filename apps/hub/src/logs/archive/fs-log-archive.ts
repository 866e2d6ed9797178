import { randomUUID } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { GraftError } from '@graft/protocol';
import type { LogArchive } from './log-archive.js';
import { assertLogArchiveKey, isLogArchiveKey, normalizeLogArchivePrefix } from './log-archive-key.js';

/** Where an FsLogArchive keeps its files; created on first put. */
export interface FsLogArchiveOptions {
  rootDir: string;
}

// A concurrent deletePrefix can remove the directory a put just created; the put then starts over.
const PUT_ATTEMPTS = 3;

function hasErrno(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' && codes.includes(err.code);
}

/** Makes a directory's entries (files created, renamed or removed in it) durable. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A LogArchive on the local file system: each key is a file under rootDir. Writes go to a
 * `.tmp-*` file that is fsynced and renamed into place (then the directory is fsynced), so a reader
 * or a crash sees the old object or the new one, never a torn one. Names starting with `.` are
 * never keys (see log-archive-key.ts), so temp files and half-deleted prefixes stay invisible.
 */
export class FsLogArchive implements LogArchive {
  readonly name = 'fs';
  readonly #root: string;

  constructor(options: FsLogArchiveOptions) {
    this.#root = resolve(options.rootDir);
  }

  async put(key: string, data: Buffer): Promise<void> {
    assertLogArchiveKey(key);
    const path = this.#pathOf(key);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#writeAtomically(path, data);
        return;
      } catch (err) {
        if (attempt >= PUT_ATTEMPTS || !hasErrno(err, 'ENOENT')) throw err;
      }
    }
  }

  async get(key: string): Promise<Buffer | null> {
    assertLogArchiveKey(key);
    try {
      return await readFile(this.#pathOf(key));
    } catch (err) {
      // ENOTDIR: a parent segment is an object; EISDIR: the key names a prefix. Neither is an object.
      if (hasErrno(err, 'ENOENT', 'ENOTDIR', 'EISDIR')) return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<string[]> {
    const normalized = normalizeLogArchivePrefix(prefix, { allowEmpty: true });
    const keys: string[] = [];
    await this.#collect(normalized === '' ? this.#root : this.#pathOf(normalized), normalized, keys);
    // Per-directory order is not key order (`a/b/c` vs `a/b-c`), so sort the whole set.
    return keys.sort(byCodeUnit);
  }

  async deletePrefix(prefix: string): Promise<void> {
    const path = this.#pathOf(normalizeLogArchivePrefix(prefix, { allowEmpty: false }));
    const stats = await lstat(path).catch((err: unknown) => {
      if (hasErrno(err, 'ENOENT', 'ENOTDIR')) return null;
      throw err;
    });
    // Prefixes are segment-aligned: an object with the prefix's name is not "under" it.
    if (!stats?.isDirectory()) return;
    // Renaming first makes the whole prefix vanish at once; a crash mid-way leaves only a hidden dir.
    const doomed = join(dirname(path), `.deleting-${randomUUID()}`);
    try {
      await rename(path, doomed);
    } catch (err) {
      if (hasErrno(err, 'ENOENT')) return; // a concurrent deletePrefix got there first
      throw err;
    }
    await syncDir(dirname(path));
    await rm(doomed, { recursive: true, force: true });
  }

  async close(): Promise<void> {}

  #pathOf(relativeKey: string): string {
    const path = join(this.#root, ...relativeKey.split('/'));
    // Validation already rules escapes out; this keeps it true should the rules ever loosen.
    if (!path.startsWith(this.#root + sep)) {
      throw new GraftError('internal_error', 'log archive path escapes its root', { key: relativeKey });
    }
    return path;
  }

  async #writeAtomically(path: string, data: Buffer): Promise<void> {
    const dir = dirname(path);
    const firstCreated = await mkdir(dir, { recursive: true });
    if (firstCreated !== undefined) await this.#syncNewDirs(firstCreated, dir);
    const temp = join(dir, `.tmp-${randomUUID()}`);
    try {
      const handle = await open(temp, 'wx', 0o644);
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, path);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    await syncDir(dir);
  }

  /** Makes the freshly made directories `firstCreated` … `dir` durable (`dir`'s own entries are synced after the rename). */
  async #syncNewDirs(firstCreated: string, dir: string): Promise<void> {
    const holders = [dirname(firstCreated)];
    for (let d = dirname(dir); d.length >= firstCreated.length; d = dirname(d)) holders.push(d);
    for (const holder of holders) await syncDir(holder);
  }

  async #collect(dir: string, keyPrefix: string, into: string[]): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (hasErrno(err, 'ENOENT', 'ENOTDIR')) return;
      throw err;
    }
    const subdirs: Promise<void>[] = [];
    for (const entry of entries) {
      const key = keyPrefix === '' ? entry.name : `${keyPrefix}/${entry.name}`;
      if (!isLogArchiveKey(key)) continue;
      if (entry.isDirectory()) subdirs.push(this.#collect(join(dir, entry.name), key, into));
      else if (entry.isFile()) into.push(key);
    }
    await Promise.all(subdirs);
  }
}
