import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll } from 'vitest';

/** The built CLI, as `pnpm graft` runs it. */
export const CLI_MAIN = join(dirname(fileURLToPath(import.meta.url)), '../../dist/main.js');

/** How a CLI run ended. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

const tempDirs: string[] = [];
// Registered while the importing test file is collected (vitest isolates each file's modules), so
// it runs once that file's tests are done: whatever they made is removed.
afterAll(() => {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A fresh, empty temp directory, removed when the test process ends. */
export function tempDir(prefix = 'graft-cli-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** A fresh, empty config directory (what GRAFT_CONFIG_DIR points at). */
export function tempConfigDir(): string {
  return tempDir('graft-cli-test-');
}

/**
 * Runs `node apps/cli/dist/main.js ...args` as a real child process with only the given
 * environment (and a HOME in the temp dir), so nothing from the developer's shell or ~/.graft leaks in.
 */
export function runCli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], {
      env: { HOME: tmpdir(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`graft ${args.join(' ')} did not finish within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Parses a run's stdout as JSON, failing with the run's output when it is not. */
export function jsonOf<T>(run: CliRun): T {
  try {
    return JSON.parse(run.stdout) as T;
  } catch {
    throw new Error(`expected JSON on stdout (exit ${run.code}):\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
}

/** The one-line error format every failure uses. */
export const ERROR_LINE = /^graft: [^\n]+ \(code [a-z_]+(, request [^)\s]+)?\)\n$/;
