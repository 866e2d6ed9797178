import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Runs `npm run demo` as a person would (the build is done: npm test builds first). */
function runDemo(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['scripts/demo.mjs'], { cwd: ROOT, env: { ...process.env, GRAFT_SKIP_BUILD: '1', DEMO_STEP_MS: '150' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

it('npm run demo runs three script agents to completed, answering the one that asks, and stops cleanly', async () => {
  const { code, stdout, stderr } = await runDemo();
  expect(stderr).not.toContain('npm run demo:');
  expect(code).toBe(0);
  // The live table showed the asker's question (it waits there until the demo answers).
  expect(stdout).toMatch(/^asker +running +waiting_for_input +asker: which branch should I push to\?$/m);
  const final = stdout.slice(stdout.indexOf('Final states:'));
  for (const name of ['planner', 'builder']) expect(final).toMatch(new RegExp(`^${name} +running +completed +${name}: finished$`, 'm'));
  // The answer reached the asker: its summary names the branch the demo sent.
  expect(final).toMatch(/^asker +running +completed +asker: finished, pushed to main$/m);
  expect(final).toContain('Messages to asker: "main" (delivered)');
}, 120_000);
