import { GraftError } from '@graft/protocol';

// S3's own limit; a file name's (255) is enforced per segment.
const MAX_KEY_LENGTH = 1024;
const MAX_SEGMENT_LENGTH = 255;
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

function segmentsAreValid(path: string): boolean {
  if (path.length === 0 || path.length > MAX_KEY_LENGTH) return false;
  // A leading dot is refused outright: it rules out `.`/`..` and keeps `.`-names free for adapters' temp files.
  return path.split('/').every((segment) => segment.length <= MAX_SEGMENT_LENGTH && SEGMENT.test(segment));
}

/** Whether `key` is a valid log archive key (see assertLogArchiveKey); for filtering what a backend lists. */
export function isLogArchiveKey(key: string): boolean {
  return segmentsAreValid(key);
}

function invalid(what: 'key' | 'prefix', value: string): GraftError {
  return new GraftError('bad_request', `invalid log archive ${what}`, { [what]: value });
}

/**
 * Checks a log archive key: `/`-separated segments of `[A-Za-z0-9._-]`, none empty and none starting
 * with `.` (so no `..`, no leading or trailing `/`). Throws a `bad_request` GraftError otherwise, so
 * a key can never escape the archive's root.
 */
export function assertLogArchiveKey(key: string): void {
  if (!segmentsAreValid(key)) throw invalid('key', key);
}

/**
 * Checks a prefix (a key, optionally with a trailing `/`; `''` when `allowEmpty`) and returns it
 * without the trailing `/`, which is how adapters want it: `''` or `a/b`.
 */
export function normalizeLogArchivePrefix(prefix: string, { allowEmpty }: { allowEmpty: boolean }): string {
  if (prefix === '') {
    if (allowEmpty) return '';
    throw invalid('prefix', prefix);
  }
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (!segmentsAreValid(trimmed)) throw invalid('prefix', prefix);
  return trimmed;
}
