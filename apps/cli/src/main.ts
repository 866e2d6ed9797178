#!/usr/bin/env node
import { readCliEnv } from './config.js';
import { createContext } from './context.js';
import type { Io } from './output/io.js';
import { buildProgram } from './program.js';
import { reportError } from './report-error.js';

/** Composition root of `graft`: environment once, wire the commands, run, exit with their status. */
async function main(argv: string[]): Promise<number> {
  const io: Io = {
    out: (line) => process.stdout.write(`${line}\n`),
    err: (line) => process.stderr.write(`${line}\n`),
  };
  try {
    const program = buildProgram(createContext(readCliEnv(), io));
    // `pnpm graft -- <args>` hands the `--` on; it is not meant for us.
    const args = argv.slice(2);
    if (args[0] === '--') args.shift();
    await program.parseAsync(args, { from: 'user' });
    return 0;
  } catch (err) {
    return reportError(err, io);
  }
}

// Output piped into `head` closes early; that is not a failure worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
});

// Exit explicitly: keep-alive sockets and the like must not hold a finished command open.
main(process.argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`graft: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
