// A vitest reporter that records how the run ended, including unhandled errors, which vitest
// prints but does not always turn into a failing exit code. `npm test` reads the file it writes
// (path in GRAFT_RUN_OUTCOME_FILE) and fails the run on any of them.
import { writeFileSync } from 'node:fs';

// biome-ignore lint/style/noDefaultExport: vitest loads custom reporters by their default export
export default class RunOutcomeReporter {
  onTestRunEnd(_modules, unhandledErrors, reason) {
    const file = process.env.GRAFT_RUN_OUTCOME_FILE;
    if (!file) return;
    writeFileSync(file, JSON.stringify({ reason, unhandledErrors: unhandledErrors.length, messages: unhandledErrors.map((e) => String(e?.message ?? e)).slice(0, 10) }));
  }
}
