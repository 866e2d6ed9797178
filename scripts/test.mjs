#!/usr/bin/env node
// `npm test`: install, build, lint, typecheck, then every test (unit, API and e2e) with vitest.
// Vitest's global setup starts the Postgres the tests need and stops it afterwards.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSystemPackages } from './lib/system-packages.mjs';
import { ensurePnpm, installAndBuild, ROOT, run, step } from './lib/workspace.mjs';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`Usage: npm test [-- <vitest filters>]

Installs dependencies, builds, lints, typechecks and runs the whole test suite against real
processes (an embedded Postgres and a private Podman service started for the run, real hub and
broker processes on ephemeral ports, bubblewrap sandboxes). As root on Debian it first installs
the system packages the tests drive (podman, runc, busybox-static, bubblewrap, git) if missing.
Extra arguments are passed to vitest, e.g. \`npm test -- apps/hub\`.
Set GRAFT_TEST_DATABASE_URL to use an existing Postgres (superuser) instead of the embedded one.
Set GRAFT_SKIP_BUILD=1 to skip install, build, lint and typecheck.
`);
  process.exit(0);
}

const extra = process.argv.slice(2);
const started = Date.now();
try {
  ensureSystemPackages();
  const pnpm = ensurePnpm();
  if (process.env.GRAFT_SKIP_BUILD !== '1') {
    installAndBuild(pnpm);
    step('lint (biome)');
    run(pnpm, ['lint']);
    step('typecheck (tsc --noEmit, every package)');
    run(pnpm, ['typecheck']);
  }
  step('tests (vitest)');
  const out = mkdtempSync(join(tmpdir(), 'graft-vitest-'));
  const report = join(out, 'report.json');
  const outcomeFile = join(out, 'outcome.json');
  let failed;
  try {
    run(pnpm, ['exec', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, `--reporter=${join(ROOT, 'scripts/lib/run-outcome-reporter.mjs')}`, ...extra], {
      env: { ...process.env, GRAFT_RUN_OUTCOME_FILE: outcomeFile },
    });
  } catch (err) {
    failed = err;
  }
  try {
    const r = JSON.parse(readFileSync(report, 'utf8'));
    const skipped = r.numPendingTests + r.numTodoTests;
    if (process.env.CI === 'true' && skipped > 0) {
      process.stderr.write(`npm test: ${skipped} test(s) skipped, which CI does not allow\n`);
      failed ??= Object.assign(new Error('skipped tests on CI'), { exitCode: 1 });
    }
    process.stdout.write(`\nvitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped\n`);
    // The report, not vitest's exit status alone, decides: a failed test fails the run whatever vitest exited with.
    if (r.numFailedTests > 0 || r.numFailedTestSuites > 0) failed ??= Object.assign(new Error(`${r.numFailedTests} test(s) and ${r.numFailedTestSuites} file(s) failed`), { exitCode: 1 });
    // An unhandled error can hide a broken test (or come from one), so it fails the run like a failed test.
    const outcome = JSON.parse(readFileSync(outcomeFile, 'utf8'));
    if (outcome.unhandledErrors > 0) {
      process.stderr.write(`npm test: ${outcome.unhandledErrors} unhandled error(s) during the run: ${outcome.messages.join('; ')}\n`);
      failed ??= Object.assign(new Error('unhandled errors during the test run'), { exitCode: 1 });
    }
  } catch {
    // no report: vitest failed before running; its own output says why
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  if (failed) throw failed;
  step(`all green in ${Math.round((Date.now() - started) / 1000)} s`);
} catch (err) {
  process.stderr.write(`npm test: ${err.message}\n`);
  process.exit(err.exitCode ?? 1);
}
