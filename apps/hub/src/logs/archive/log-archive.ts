/**
 * Where finished agents' logs are kept (DESIGN §6). Keys are relative paths like
 * `<projectId>/<agentId>/00000001.log` (see log-archive-key.ts for the rules). Prefixes are
 * segment-aligned: `a/b` (or `a/b/`) means "everything under `a/b/`", never `a/bc/...`; `''` is the
 * whole archive (list only). A key must not also be the parent of other keys (`a/b` and `a/b/c`):
 * the file-system adapter cannot hold both.
 */
export interface LogArchive {
  readonly name: 'fs' | 's3';
  /** Stores an object (replacing one with the same key); resolves once durable. */
  put(key: string, data: Buffer): Promise<void>;
  /** The object's bytes, or null when absent. */
  get(key: string): Promise<Buffer | null>;
  /** Keys under a prefix, sorted ascending (lexicographic), complete (paginate internally for s3). */
  list(prefix: string): Promise<string[]>;
  /** Removes every object under a prefix (which must not be empty); idempotent. */
  deletePrefix(prefix: string): Promise<void>;
  close(): Promise<void>;
}
