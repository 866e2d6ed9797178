import { setTimeout as delay } from 'node:timers/promises';
import type { JobName } from '@graft/protocol';
import { eventually } from '@graft/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobDefinition, JobOutcome, JobRunner, JobRunnerOptions } from './job-runner.js';

/** How the contract gets runners of one adapter. */
export interface JobRunnerHarness {
  /** A runner on a backend of its own. */
  make(options: JobRunnerOptions): Promise<JobRunner>;
  /** Two runners sharing one backend, as two hub replicas do; omitted by an adapter that has no shared backend. */
  makePair?: (options: JobRunnerOptions) => Promise<[JobRunner, JobRunner]>;
}

/** Records how often a job ran, whether two runs ever overlapped, and what it made each attempt do. */
function probeJob(name: JobName, everyMs: number, options: { attempts?: number; workMs?: number; failFirst?: number } = {}) {
  const probe = { calls: 0, running: 0, maxRunning: 0, finished: 0 };
  const def: JobDefinition = {
    name,
    everyMs,
    attempts: options.attempts ?? 1,
    run: async () => {
      const call = ++probe.calls;
      probe.running++;
      probe.maxRunning = Math.max(probe.maxRunning, probe.running);
      try {
        if (options.workMs) await delay(options.workMs);
        if (call <= (options.failFirst ?? 0)) throw new Error(`boom ${call}`);
      } finally {
        probe.running--;
        probe.finished++;
      }
    },
  };
  return { probe, def };
}

/**
 * What every JobRunner adapter must show (the in-process one of a single node and BullMQ of a
 * cluster run the same suite). Runners use a short backoff (50 ms) so retries take little time.
 */
export function jobRunnerContract(adapter: string, harness: JobRunnerHarness): void {
  describe(`JobRunner contract: ${adapter}`, () => {
    const open: JobRunner[] = [];
    const outcomes: Array<[JobName, JobOutcome]> = [];
    const options: JobRunnerOptions = { backoffMs: 50, onRun: (name, outcome) => outcomes.push([name, outcome]) };
    const make = async () => {
      const runner = await harness.make(options);
      open.push(runner);
      return runner;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((r) => r.close()));
      outcomes.length = 0;
    });

    it('runs a job at start and then every interval, never two runs of it at once, and lists the completed runs', async () => {
      const runner = await make();
      // Each run outlasts the interval: runs that come due meanwhile must wait or be dropped, not overlap.
      const { probe, def } = probeJob('placement', 100, { workMs: 150 });
      runner.register(def);
      await runner.start();
      await eventually(() => expect(probe.finished).toBeGreaterThanOrEqual(4), { timeoutMs: 5_000 });
      expect(probe.maxRunning).toBe(1);
      expect(outcomes).toContainEqual(['placement', 'ok']);
      const done = await eventually(
        async () => {
          const items = await runner.list('completed', 10);
          expect(items.length).toBeGreaterThanOrEqual(3);
          return items;
        },
        { timeoutMs: 2_000 },
      );
      for (const item of done) expect(item).toMatchObject({ name: 'placement', state: 'completed', attemptsMade: 1, failedReason: null, finishedAt: expect.any(String) });
      // Newest first.
      const created = done.map((j) => Date.parse(j.createdAt));
      expect([...created].sort((a, b) => b - a)).toEqual(created);
    });

    it('retries a failing run `attempts` times with backoff, then lists it as failed with the last reason', async () => {
      const runner = await make();
      const { probe, def } = probeJob('log-archival', 60_000, { attempts: 3, failFirst: 100 });
      runner.register(def);
      const started = Date.now();
      await runner.start();
      const [failed] = await eventually(
        async () => {
          const items = await runner.list('failed', 10);
          expect(items).toHaveLength(1);
          return items;
        },
        { timeoutMs: 5_000 },
      );
      // Backoff of 50 ms, then 100 ms between the three attempts.
      expect(Date.now() - started).toBeGreaterThanOrEqual(140);
      expect(probe.calls).toBe(3);
      expect(failed).toMatchObject({ name: 'log-archival', state: 'failed', attemptsMade: 3, failedReason: 'boom 3', finishedAt: expect.any(String) });
      expect(outcomes.filter(([n, o]) => n === 'log-archival' && o === 'failed')).toHaveLength(3);
      expect((await runner.counts()).failed).toBe(1);
      await delay(300);
      expect(probe.calls).toBe(3);
    });

    it('retry runs a failed run again with all its attempts; it leaves the failed list', async () => {
      const runner = await make();
      const { probe, def } = probeJob('log-retention', 60_000, { attempts: 2, failFirst: 2 });
      runner.register(def);
      await runner.start();
      const [failed] = await eventually(
        async () => {
          const items = await runner.list('failed', 10);
          expect(items).toHaveLength(1);
          return items;
        },
        { timeoutMs: 5_000 },
      );
      if (!failed) throw new Error('no failed run');
      expect(await runner.retry(failed.id)).toBe('retried');
      await eventually(
        async () => {
          expect(await runner.list('failed', 10)).toEqual([]);
          expect((await runner.list('completed', 10)).map((j) => j.id)).toContain(failed.id);
        },
        { timeoutMs: 5_000 },
      );
      expect(probe.calls).toBe(3);
      const [done] = (await runner.list('completed', 10)).filter((j) => j.id === failed.id);
      expect(done).toMatchObject({ name: 'log-retention', state: 'completed', attemptsMade: 1 });
      expect((await runner.counts()).failed).toBe(0);
    });

    it('retry answers not_found for an unknown id and not_failed for a run that did not fail', async () => {
      const runner = await make();
      const { def } = probeJob('liveness', 60_000);
      runner.register(def);
      await runner.start();
      const [done] = await eventually(
        async () => {
          const items = await runner.list('completed', 1);
          expect(items).toHaveLength(1);
          return items;
        },
        { timeoutMs: 5_000 },
      );
      if (!done) throw new Error('no completed run');
      expect(await runner.retry(done.id)).toBe('not_failed');
      expect(await runner.retry('no-such-job')).toBe('not_found');
      expect(await runner.list('completed', 10)).toHaveLength(1);
    });

    it('trigger runs a job soon, between its scheduled runs', async () => {
      const runner = await make();
      const { probe, def } = probeJob('join-token-sweep', 60_000);
      runner.register(def);
      await runner.start();
      await eventually(() => expect(probe.finished).toBe(1), { timeoutMs: 5_000 });
      const triggered = Date.now();
      await runner.trigger('join-token-sweep');
      await eventually(() => expect(probe.finished).toBe(2), { timeoutMs: 2_000 });
      expect(Date.now() - triggered).toBeLessThan(2_000);
      await delay(200);
      expect(probe.calls).toBe(2);
    });

    it('close waits for a run in progress, and nothing runs after it', async () => {
      const runner = await make();
      const { probe, def } = probeJob('placement', 100, { workMs: 300 });
      runner.register(def);
      await runner.start();
      await eventually(() => expect(probe.running).toBe(1), { timeoutMs: 5_000 });
      await runner.close();
      expect(probe.running).toBe(0);
      const calls = probe.calls;
      await delay(300);
      expect(probe.calls).toBe(calls);
    });

    const { makePair } = harness;
    if (makePair) {
      it('two runners on one backend (two replicas) share one schedule: each run happens once, never two at once', async () => {
        const [a, b] = await makePair(options);
        open.push(a, b);
        // Runs outlast the interval, so the two replicas' workers are both offered runs of the job while it runs.
        const { probe, def } = probeJob('liveness', 100, { workMs: 250 });
        let onA = 0;
        let onB = 0;
        a.register({
          ...def,
          run: () => {
            onA++;
            return def.run();
          },
        });
        b.register({
          ...def,
          run: () => {
            onB++;
            return def.run();
          },
        });
        await Promise.all([a.start(), b.start()]);
        const since = Date.now();
        await delay(2_000);
        const elapsed = Date.now() - since;
        // One schedule: about one run per interval in all, not one per runner.
        expect(probe.calls).toBeLessThanOrEqual(Math.ceil(elapsed / 100) + 2);
        expect(probe.calls).toBeGreaterThanOrEqual(4);
        expect(onA + onB).toBe(probe.calls);
        expect(probe.maxRunning).toBe(1);
      });
    }
  });
}
