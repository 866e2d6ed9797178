import { setTimeout as delay } from 'node:timers/promises';
import { eventually } from '@graft/testkit';
import { afterEach, expect, it } from 'vitest';
import { InProcessJobRunner } from './in-process-job-runner.js';
import { JOB_HISTORY } from './job-runner.js';
import { jobRunnerContract } from './job-runner-contract.js';

// A single node has no backend to share with another runner, so the two-replica case is BullMQ's alone.
jobRunnerContract('in-process', { make: async (options) => new InProcessJobRunner(options) });

const open: InProcessJobRunner[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

it('triggers while a run is in progress add one run after it, not one per trigger', async () => {
  const runner = new InProcessJobRunner({ backoffMs: 50 });
  open.push(runner);
  let calls = 0;
  let release: () => void = () => {};
  runner.register({
    name: 'placement',
    everyMs: 60_000,
    attempts: 1,
    run: async () => {
      calls++;
      if (calls === 1) await new Promise<void>((r) => (release = r));
    },
  });
  await runner.start();
  await eventually(() => expect(calls).toBe(1), { timeoutMs: 2_000 });
  // The running pass may have read the database before what the triggers announce: one more pass covers them all.
  await Promise.all([runner.trigger('placement'), runner.trigger('placement'), runner.trigger('placement')]);
  expect((await runner.counts()).waiting).toBe(1);
  release();
  await eventually(async () => expect((await runner.counts()).completed).toBe(2), { timeoutMs: 2_000 });
  await delay(100);
  expect(calls).toBe(2);
});

it(`keeps the newest ${JOB_HISTORY.failed} failed runs`, async () => {
  const runner = new InProcessJobRunner({ backoffMs: 1 });
  open.push(runner);
  let calls = 0;
  runner.register({
    name: 'log-archival',
    everyMs: 60_000,
    attempts: 1,
    run: async () => {
      calls++;
      throw new Error(`failure ${calls}`);
    },
  });
  await runner.start();
  for (let i = 0; i < JOB_HISTORY.failed + 5; i++) {
    await eventually(() => expect(calls).toBe(i + 1), { timeoutMs: 1_000, intervalMs: 1 });
    if (i < JOB_HISTORY.failed + 4) await runner.trigger('log-archival');
  }
  await eventually(async () => expect((await runner.counts()).failed).toBe(JOB_HISTORY.failed), { timeoutMs: 1_000 });
  const failed = await runner.list('failed', 1_000);
  expect(failed).toHaveLength(JOB_HISTORY.failed);
  expect(failed[0]?.failedReason).toBe(`failure ${JOB_HISTORY.failed + 5}`);
  expect(failed.at(-1)?.failedReason).toBe('failure 6');
});

it('refuses a job registered after start or twice, and a trigger of a job it does not run', async () => {
  const runner = new InProcessJobRunner();
  open.push(runner);
  const def = { name: 'liveness' as const, everyMs: 60_000, attempts: 1, run: async () => {} };
  runner.register(def);
  expect(() => runner.register(def)).toThrow(/twice/);
  await runner.start();
  expect(() => runner.register({ ...def, name: 'placement' })).toThrow(/after start/);
  await expect(runner.trigger('placement')).rejects.toThrow(/not registered/);
});
