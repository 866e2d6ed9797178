import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger } from '@graft/log';
import { GraftError } from '@graft/protocol';
import { eventually, startTestRedis, type TestRedis } from '@graft/testkit';
import { afterEach, expect, inject, it } from 'vitest';
import { BullmqJobRunner } from './bullmq-job-runner.js';
import { jobRunnerContract } from './job-runner-contract.js';

// Against the run's real Redis; each runner (or pair of replicas) gets its own prefix.
jobRunnerContract('bullmq', {
  make: async (options) => new BullmqJobRunner({ ...options, url: inject('redisUrl'), prefix: `test-${randomUUID()}` }),
  makePair: async (options) => {
    const prefix = `test-${randomUUID()}`;
    return [new BullmqJobRunner({ ...options, url: inject('redisUrl'), prefix }), new BullmqJobRunner({ ...options, url: inject('redisUrl'), prefix })];
  },
});

const open: BullmqJobRunner[] = [];
const servers: Array<{ stop(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
  for (const s of servers.splice(0)) await s.stop();
});

/** A private redis-server that can be killed and started again on the same port (empty each time: nothing persisted). */
async function restartableRedis(): Promise<{ url: string; start(): Promise<void>; kill(): Promise<void>; stop(): Promise<void> }> {
  let server: TestRedis | undefined = await startTestRedis();
  const { url } = server;
  const port = Number(new URL(url).port);
  const kill = async () => {
    await server?.stop();
    server = undefined;
  };
  return {
    url,
    start: async () => {
      server = await startTestRedis({ port });
    },
    kill,
    stop: kill,
  };
}

it('keeps running jobs across a Redis restart that lost everything, answers reads with unavailable meanwhile, and closes while Redis is down', async () => {
  const redis = await restartableRedis();
  servers.push(redis);
  const lines: string[] = [];
  const log = createLogger({ sink: (line) => lines.push(line) });
  const runner = new BullmqJobRunner({ url: redis.url, prefix: 'graft', backoffMs: 50, log });
  let runs = 0;
  runner.register({ name: 'liveness', everyMs: 100, attempts: 1, run: async () => void runs++ });
  await runner.start();
  await eventually(() => expect(runs).toBeGreaterThanOrEqual(3), { timeoutMs: 5_000 });

  await redis.kill();
  await delay(300);
  const during = runs;
  const unavailable = await runner.list('failed', 10).catch((err: unknown) => err);
  expect(unavailable).toBeInstanceOf(GraftError);
  expect((unavailable as GraftError).code).toBe('unavailable');
  await delay(500);
  // Nothing ran while Redis was away (BullMQ is the only source of runs).
  expect(runs).toBe(during);

  await redis.start();
  // The schedule is back (upserted on reconnect) and the worker takes runs again.
  await eventually(() => expect(runs).toBeGreaterThanOrEqual(during + 3), { timeoutMs: 15_000 });
  expect(await runner.counts()).toMatchObject({ failed: 0 });
  expect(lines.some((l) => l.includes('"jobs.redis_error"'))).toBe(true);

  await redis.kill();
  const closing = Date.now();
  await runner.close();
  expect(Date.now() - closing).toBeLessThan(2_000);
}, 40_000);
