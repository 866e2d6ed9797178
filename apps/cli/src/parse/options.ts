import { InvalidArgumentError } from 'commander';
import { splitCommand } from './split-command.js';

/** Parses `--limit`: an integer 1-500, as the hub accepts. */
export function parseLimit(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 500) throw new InvalidArgumentError('must be an integer from 1 to 500');
  return n;
}

/** Parses a positive integer (`--version`). */
export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** Collects repeated `--flag key=value` into a record; the value may contain `=`, the key may not be empty. */
export function collectKeyValue(value: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('expected key=value');
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** Collects repeated `--command` values, each split like a shell would, into one argv. */
export function collectCommand(value: string, previous: string[] | undefined): string[] {
  let words: string[];
  try {
    words = splitCommand(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return [...(previous ?? []), ...words];
}

/** A collector for a repeatable flag limited to some values (`--scope read --scope write`). */
export function collectChoice<T extends string>(choices: readonly T[]): (value: string, previous: T[] | undefined) => T[] {
  return (value, previous) => {
    if (!(choices as readonly string[]).includes(value)) throw new InvalidArgumentError(`allowed: ${choices.join(', ')}`);
    const list = previous ?? [];
    return list.includes(value as T) ? list : [...list, value as T];
  };
}

/** Parses a point in time (ISO 8601, e.g. 2030-01-31 or 2030-01-31T12:00:00+02:00) into UTC ISO. */
export function parseTimestamp(value: string): string {
  const ms = Date.parse(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(ms)) throw new InvalidArgumentError('expected an ISO 8601 date or time, e.g. 2030-01-31T00:00:00Z');
  return new Date(ms).toISOString();
}
