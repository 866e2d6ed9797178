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
the system packages the tests drive (podman, runc, busybox-static, bubblewrap, git, redis-server) if missing.
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
  // The report and the outcome file, not vitest's exit status alone, decide: vitest 4 has exited 0
  // with failed tests, and with a global setup that threw before any test ran.
  const readJson = (file) => {
    try {
      return JSON.parse(readFileSync(file, 'utf8'));
    } catch {
      return null;
    }
  };
  const r = readJson(report);
  const outcome = readJson(outcomeFile);
  rmSync(out, { recursive: true, force: true });
  const fail = (message) => {
    process.stderr.write(`npm test: ${message}\n`);
    failed ??= Object.assign(new Error(message), { exitCode: 1 });
  };
  if (r === null || outcome === null) {
    fail('vitest did not complete a run (no report); its output above says why');
  } else {
    const skipped = r.numPendingTests + r.numTodoTests;
    process.stdout.write(`\nvitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped\n`);
    if (r.numTotalTests === 0) fail('no test ran');
    if (r.numFailedTests > 0 || r.numFailedTestSuites > 0) fail(`${r.numFailedTests} test(s) and ${r.numFailedTestSuites} file(s) failed`);
    if (process.env.CI === 'true' && skipped > 0) fail(`${skipped} test(s) skipped, which CI does not allow`);
    // An unhandled error can hide a broken test (or come from one), so it fails the run like a failed test.
    if (outcome.unhandledErrors > 0) fail(`${outcome.unhandledErrors} unhandled error(s) during the run: ${outcome.messages.join('; ')}`);
  }
  if (failed) throw failed;
  step(`all green in ${Math.round((Date.now() - started) / 1000)} s`);
} catch (err) {
  process.stderr.write(`npm test: ${err.message}\n`);
  process.exit(err.exitCode ?? 1);
}
