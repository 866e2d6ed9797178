import { spawn } from 'node:child_process';
import type { ExecResult } from './agent-runtime.js';

/** Output kept from a command run by `exec`: its last bytes, so a chatty command cannot fill the broker's memory. */
const MAX_OUTPUT_BYTES = 1024 * 1024;

/**
 * Runs `command` to its end with stdout and stderr captured together; kills its whole process group
 * after `timeoutMs` (exit code null). Rejects only when the command cannot be spawned at all.
 */
export function runCaptured(command: string[], options: { cwd?: string; env?: Record<string, string>; timeoutMs: number }): Promise<ExecResult> {
  const [file, ...args] = command;
  if (file === undefined) return Promise.reject(new Error('exec needs a command'));
  return new Promise<ExecResult>((resolve, reject) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let size = 0;
    const keep = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      while (size > MAX_OUTPUT_BYTES && chunks.length > 1) size -= chunks.shift()?.length ?? 0;
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }, options.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ exitCode: timedOut ? null : code, output: Buffer.concat(chunks).toString('utf8') });
    });
  });
}
