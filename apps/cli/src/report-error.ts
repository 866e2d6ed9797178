import { GraftApiError } from '@graft/client';
import { CommanderError } from 'commander';
import { CliError, UsageError } from './errors.js';
import type { Io } from './output/io.js';
import { oneLine } from './output/one-line.js';

/** Exit status of a failed command: 1 when the work failed, 2 when the command line was wrong. */
export const EXIT_FAILURE = 1;
/** Exit status of a usage error. */
export const EXIT_USAGE = 2;

/** Prints one `graft: ...` line for an error (unless commander already did) and returns the exit code. */
export function reportError(err: unknown, io: Io): number {
  if (err instanceof CommanderError) {
    // Commander printed help, the version or its own error line already; help asked for exits 0.
    return err.exitCode === 0 ? 0 : EXIT_USAGE;
  }
  if (err instanceof UsageError) {
    io.err(`graft: ${oneLine(err.message)}`);
    return EXIT_USAGE;
  }
  if (err instanceof GraftApiError) {
    const where = err.requestId ? `, request ${err.requestId}` : '';
    io.err(`graft: ${oneLine(err.message)} (code ${err.code}${where})`);
    return EXIT_FAILURE;
  }
  if (err instanceof CliError) {
    io.err(`graft: ${oneLine(err.message)} (code ${err.code})`);
    return EXIT_FAILURE;
  }
  io.err(`graft: ${oneLine(err instanceof Error ? err.message : String(err))} (code internal_error)`);
  return EXIT_FAILURE;
}
