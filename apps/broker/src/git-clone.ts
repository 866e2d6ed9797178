import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';

/** How long a clone may take before it is killed and the agent ends in `error`. */
export const DEFAULT_CLONE_TIMEOUT_MS = 10 * 60_000;

/** Whether `dir` holds nothing (a fresh workspace, as opposed to one kept for a resume). */
export async function isEmptyDir(dir: string): Promise<boolean> {
  return (await readdir(dir)).length === 0;
}

/**
 * Clones `repository` (URL, scp-like remote or local path) into the empty directory `dir` with the
 * broker's git (found on `env.PATH`). Never asks for credentials on a terminal, and reports git's own words on failure.
 */
export function cloneRepository(repository: string, dir: string, options: { env: Record<string, string>; timeoutMs: number }): Promise<{ ok: true } | { ok: false; message: string }> {
  return new Promise((resolve) => {
    // `--` keeps a remote that starts with '-' from being read as an option.
    const child = spawn('git', ['clone', '--quiet', '--', repository, dir], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...options.env, GIT_TERMINAL_PROMPT: '0', GIT_ASKPASS: 'true', LANG: 'C' },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 8_192) stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ ok: false, message: err.message });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve({ ok: true });
      const words = stderr.trim().split('\n').filter((l) => l.trim() !== '').join('; ');
      resolve({ ok: false, message: signal ? `killed after ${options.timeoutMs} ms (${signal})${words ? `: ${words}` : ''}` : words || `git exited with ${code}` });
    });
  });
}
