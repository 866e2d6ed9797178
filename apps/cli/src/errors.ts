/** A failure the CLI detected itself (exit 1), with a code in the same spirit as the hub's. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The command line itself is wrong: bad flag value, missing argument (exit 2). */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}
