import type { ListOptions } from '@graft/client';
import type { Page } from '@graft/protocol';
import type { Command } from 'commander';
import { type Io, printJson } from '../output/io.js';
import { parseLimit } from '../parse/options.js';

/** Flags every `ls` command takes. */
export interface ListFlags {
  limit?: number;
  cursor?: string;
  json?: boolean;
}

/** Adds `--limit`, `--cursor` and `--json` to an `ls` command. */
export function withListOptions(cmd: Command): Command {
  return cmd
    .option('--limit <n>', 'show at most N items (1-500; the hub defaults to 50)', parseLimit)
    .option('--cursor <cursor>', 'continue after a previous page (the cursor its output printed)')
    .option('--json', 'print the raw JSON page {items, nextCursor}');
}

/** The pagination part of the flags, as the client takes it. */
export function pageArgs(flags: ListFlags): ListOptions {
  return { ...(flags.limit !== undefined ? { limit: flags.limit } : {}), ...(flags.cursor !== undefined ? { cursor: flags.cursor } : {}) };
}

/** Prints a page: raw JSON, or a rendered table plus a hint with the next cursor when there is more. */
export function printPage<T>(io: Io, page: Page<T>, flags: ListFlags, render: (items: T[]) => string, noun: string): void {
  if (flags.json) {
    printJson(io, page);
    return;
  }
  io.out(page.items.length === 0 ? `No ${noun} found.` : render(page.items));
  if (page.nextCursor) io.out(`More ${noun}: add --cursor ${page.nextCursor}`);
}
