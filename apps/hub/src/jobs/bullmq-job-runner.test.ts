import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger } from '@graft/log';
import { GraftError } from '@graft/protocol';
import { eventually } from '@graft/testkit';
import { Redis } from 'ioredis';
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

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** A private redis-server that can be stopped and started again on the same port (empty each time: nothing persisted). */
async function restartableRedis(): Promise<{ url: string; start(): Promise<void>; kill(): Promise<void>; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'graft-test-jobs-redis-'));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;
  const kill = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGKILL');
    await gone;
  };
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
    await eventually(
      async () => {
        const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        probe.on('error', () => {});
        try {
          await probe.connect();
          expect(await probe.ping()).toBe('PONG');
        } finally {
          probe.disconnect();
        }
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
  };
  await start();
  return {
    url,
    start,
    kill,
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
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
