// Shared by `npm start` and `npm test`: make a fresh machine with only Node 20 and npm able to
// run the workspace: bring pnpm (no global install needed), install dependencies, build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PNPM_VERSION = '12.21.0';
const LOCAL_PNPM = join(ROOT, '.tools', 'node_modules', '.bin', 'pnpm');

export function step(message) {
  process.stderr.write(`\x1b[36m▸\x1b[0m ${message}\n`);
}

export function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', ...options });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  if (r.status !== 0) {
    const e = new Error(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
    e.exitCode = r.status ?? 1;
    throw e;
  }
}

function pnpmWorks(cmd) {
  const r = spawnSync(cmd, ['--version'], { cwd: ROOT, encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim().startsWith('12.');
}

/** Whether `pnpm` (12.x) is on PATH, so `pnpm graft` works for the user. */
export function pnpmOnPath() {
  return pnpmWorks('pnpm');
}

/**
 * Returns a pnpm 12 binary: one on PATH, else one installed into .tools/ with npm. In the latter
 * case .tools/node_modules/.bin goes first on this process's PATH, so package scripts that call
 * `pnpm` (and everything spawned from here) find it too.
 */
export function ensurePnpm() {
  if (pnpmWorks('pnpm')) return 'pnpm';
  if (!(existsSync(LOCAL_PNPM) && pnpmWorks(LOCAL_PNPM))) {
    step(`installing pnpm ${PNPM_VERSION} into .tools/ (one time)`);
    run('npm', ['install', '--prefix', join(ROOT, '.tools'), '--no-save', '--no-audit', '--no-fund', '--loglevel=error', `pnpm@${PNPM_VERSION}`]);
    if (!pnpmWorks(LOCAL_PNPM)) throw new Error('pnpm could not be installed into .tools/');
  }
  process.env.PATH = `${dirname(LOCAL_PNPM)}${delimiter}${process.env.PATH ?? ''}`;
  return LOCAL_PNPM;
}

/** pnpm install (frozen lockfile) and build every package. */
export function installAndBuild(pnpm) {
  step('installing dependencies (pnpm install)');
  run(pnpm, ['install', '--frozen-lockfile', '--reporter=append-only'], { env: { ...process.env, CI: process.env.CI ?? '' } });
  step('building the workspace (pnpm build)');
  run(pnpm, ['build']);
}
