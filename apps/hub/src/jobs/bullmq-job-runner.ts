import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { GraftError, type JobInfo, JobName, type JobState } from '@graft/protocol';
import { DelayedError, type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { JOB_HISTORY, type JobDefinition, type JobRetryResult, type JobRunner, type JobRunnerOptions } from './job-runner.js';

/** The one queue every job goes through (under the prefix). */
const QUEUE = 'jobs';
/** How long a job's run lock lives unless renewed; a replica that dies mid-run frees its jobs this much later. */
const RUN_LOCK_MS = 30_000;
/** How long a read (list, counts, retry) waits for Redis before it answers `unavailable`. */
const READ_TIMEOUT_MS = 5_000;
/** How long close waits for BullMQ to shut down cleanly before it cuts the connections. */
const CLOSE_TIMEOUT_MS = 3_000;

// Deletes or extends the run lock only while it is still ours.
const RELEASE_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const RENEW_LOCK = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/** Where the cluster's jobs live. */
export interface BullmqJobRunnerOptions extends JobRunnerOptions {
  /** `redis://` or `rediss://` URL. */
  url: string;
  /** Key prefix; hub replicas sharing it share their jobs. */
  prefix?: string;
}

/** What a job carries: whether it was triggered (a triggered run must not be dropped). */
interface JobData {
  triggered?: boolean;
}

/**
 * Adapter for cluster mode, on BullMQ: one queue, one job scheduler per job, so N replicas
 * registering the same job make one schedule and each run is taken by one replica's worker.
 * Attempts back off exponentially; finished runs are trimmed to JOB_HISTORY. A run lock per job
 * (in Redis) keeps two runs of one job from overlapping on two replicas when a run outlasts its
 * interval: a scheduled run that finds its job running is dropped (the next one comes), a
 * triggered one waits for it.
 *
 * Survives Redis outages: the connections reconnect on their own, errors are logged, the worker
 * resumes, and the schedules are upserted again whenever the connection is (re)established, so
 * a Redis that restarted empty gets them back. Reads fail fast (`unavailable`) while Redis is away.
 */
export class BullmqJobRunner implements JobRunner {
  private readonly defs = new Map<JobName, JobDefinition>();
  private readonly conn: Redis;
  private readonly workerConn: Redis;
  private readonly queue: Queue<JobData>;
  private worker: Worker<JobData> | undefined;
  private readonly running = new Set<Promise<unknown>>();
  private readonly prefix: string;
  private readonly backoffMs: number;
  private started = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: BullmqJobRunnerOptions) {
    this.prefix = options.prefix ?? 'graft';
    this.backoffMs = options.backoffMs ?? 1_000;
    // BullMQ requires commands to wait for the connection however long it takes (null).
    const redisOptions = { maxRetriesPerRequest: null, retryStrategy: (n: number) => Math.min(n * 100, 2_000) };
    this.conn = new Redis(options.url, redisOptions);
    this.workerConn = new Redis(options.url, redisOptions);
    for (const c of [this.conn, this.workerConn]) c.on('error', (err: Error) => this.redisError(err));
    // A fresh connection may face a Redis that lost everything: put the schedules back.
    this.conn.on('ready', () => {
      if (this.started && !this.closing) void this.upsertSchedules();
    });
    this.queue = new Queue<JobData>(QUEUE, { connection: this.conn, prefix: this.prefix });
    this.queue.on('error', (err: Error) => this.redisError(err));
  }

  register(def: JobDefinition): void {
    if (this.started) throw new Error(`job ${def.name} registered after start`);
    if (this.defs.has(def.name)) throw new Error(`job ${def.name} registered twice`);
    this.defs.set(def.name, def);
  }

  /** Starts this replica's worker and upserts the schedules (waiting for Redis if it is away). */
  async start(): Promise<void> {
    if (this.started || this.closing) return;
    this.started = true;
    this.worker = new Worker<JobData>(QUEUE, (job, token) => this.process(job, token), {
      connection: this.workerConn,
      prefix: this.prefix,
      // Jobs of different names may run side by side; the run lock keeps each name to one at a time.
      concurrency: Math.max(1, this.defs.size),
    });
    this.worker.on('error', (err: Error) => this.redisError(err));
    await this.upsertSchedules();
  }

  async trigger(name: JobName): Promise<void> {
    const def = this.defs.get(name);
    if (!def) throw new Error(`job ${name} is not registered`);
    await this.read(() =>
      this.queue.add(
        name,
        { triggered: true },
        {
          ...this.jobOptions(def),
          // One triggered run waits at a time; a trigger during one that is running makes one more after it.
          deduplication: { id: `trigger:${name}`, keepLastIfActive: true },
        },
      ),
    );
  }

  async list(state: JobState, limit: number): Promise<JobInfo[]> {
    const jobs = await this.read(() => this.queue.getJobs([state], 0, limit - 1, false));
    return jobs
      .filter((j): j is Job<JobData> => j !== undefined && j !== null && j.id !== undefined && JobName.safeParse(j.name).success)
      .map((j) => toInfo(j, state))
      .sort((a, b) => Date.parse(b.finishedAt ?? b.createdAt) - Date.parse(a.finishedAt ?? a.createdAt))
      .slice(0, limit);
  }

  async retry(id: string): Promise<JobRetryResult> {
    return this.read(async () => {
      const job = await this.queue.getJob(id);
      if (!job) return 'not_found';
      if ((await job.getState()) !== 'failed') return 'not_failed';
      await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      return 'retried';
    });
  }

  async counts(): Promise<Record<JobState, number>> {
    const c = await this.read(() => this.queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed'));
    return { waiting: c.waiting ?? 0, active: c.active ?? 0, delayed: c.delayed ?? 0, failed: c.failed ?? 0, completed: c.completed ?? 0 };
  }

  /** Stops taking jobs and waits for this replica's runs; cuts the connections if Redis does not answer. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // With Redis away a clean close cannot finish (it would wait for the connection to come back).
      if (this.conn.status === 'ready') await Promise.race([Promise.allSettled([this.worker?.close(), this.queue.close()]), delay(CLOSE_TIMEOUT_MS)]);
      await Promise.allSettled([...this.running]);
      this.conn.disconnect();
      this.workerConn.disconnect();
      // After a clean close these are no-ops; after a timeout they stop the worker's own (blocking)
      // connection from reconnecting forever. They wait for an 'end' a dead socket may never send.
      await Promise.race([Promise.allSettled([this.worker?.disconnect(), this.queue.disconnect()]), delay(500)]);
    })();
    return this.closing;
  }

  private jobOptions(def: JobDefinition) {
    return {
      attempts: def.attempts,
      backoff: { type: 'exponential', delay: this.backoffMs },
      removeOnComplete: { count: JOB_HISTORY.completed },
      removeOnFail: { count: JOB_HISTORY.failed },
    };
  }

  private async upsertSchedules(): Promise<void> {
    try {
      for (const def of this.defs.values()) {
        // The scheduler's id is the job's name: every replica upserts the same one.
        await this.queue.upsertJobScheduler(def.name, { every: def.everyMs }, { name: def.name, data: {}, opts: this.jobOptions(def) });
      }
    } catch (err) {
      // The connection went away meanwhile; its next 'ready' upserts again.
      this.options.log?.warn('jobs.schedule_failed', { reason: err instanceof Error ? err.message : String(err) });
    }
  }

  /** One attempt of one run, on this replica. */
  private async process(job: Job<JobData>, token: string | undefined): Promise<void> {
    const parsed = JobName.safeParse(job.name);
    const def = parsed.success ? this.defs.get(parsed.data) : undefined;
    // A job this replica does not run (another version's): retrying here cannot help.
    if (!def) throw new UnrecoverableError(`unknown job ${job.name}`);
    const lock = await this.lock(def.name);
    if (!lock) {
      if (!job.data.triggered) return;
      await job.moveToDelayed(Date.now() + Math.min(1_000, def.everyMs), token);
      throw new DelayedError();
    }
    const run = def.run();
    this.running.add(run);
    try {
      await run;
      this.options.onRun?.(def.name, 'ok');
    } catch (err) {
      this.options.onRun?.(def.name, 'failed');
      const reason = err instanceof Error ? err.message : String(err);
      const attempt = job.attemptsMade + 1;
      if (attempt < def.attempts) this.options.log?.warn('job.attempt_failed', { job: def.name, jobId: job.id, attempt, reason });
      else this.options.log?.error('job.failed', { job: def.name, jobId: job.id, attempts: attempt, reason });
      throw err;
    } finally {
      this.running.delete(run);
      await lock.release();
    }
  }

  /** Takes the job's run lock (renewed while held), or null when another run of the job holds it. */
  private async lock(name: JobName): Promise<{ release(): Promise<void> } | null> {
    const key = `${this.prefix}:${QUEUE}:running:${name}`;
    const owner = randomUUID();
    if ((await this.conn.set(key, owner, 'PX', RUN_LOCK_MS, 'NX')) !== 'OK') return null;
    const renew = setInterval(() => {
      this.conn.eval(RENEW_LOCK, 1, key, owner, RUN_LOCK_MS).catch(() => {});
    }, RUN_LOCK_MS / 3);
    renew.unref();
    return {
      release: async () => {
        clearInterval(renew);
        // During an outage the lock simply expires.
        await Promise.race([this.conn.eval(RELEASE_LOCK, 1, key, owner).catch(() => {}), delay(READ_TIMEOUT_MS)]);
      },
    };
  }

  /** Runs a request against Redis, or answers `unavailable` at once while Redis is away (reads must not hang). */
  private async read<T>(op: () => Promise<T>): Promise<T> {
    if (this.conn.status !== 'ready') throw new GraftError('unavailable', 'the job queue (Redis) is unreachable; try again shortly');
    const pending = op();
    pending.catch(() => {});
    const timeout = new AbortController();
    try {
      return await Promise.race([
        pending,
        delay(READ_TIMEOUT_MS, undefined, { signal: timeout.signal }).then(() => {
          throw new GraftError('unavailable', 'the job queue (Redis) did not answer in time');
        }),
      ]);
    } finally {
      timeout.abort();
    }
  }

  private redisError(err: Error): void {
    this.options.log?.warn('jobs.redis_error', { reason: err.message });
  }
}

function toInfo(j: Job<JobData>, state: JobState): JobInfo {
  return {
    id: j.id ?? '',
    name: j.name as JobName,
    state,
    attemptsMade: j.attemptsMade,
    failedReason: j.failedReason ? j.failedReason : null,
    createdAt: new Date(j.timestamp).toISOString(),
    finishedAt: j.finishedOn ? new Date(j.finishedOn).toISOString() : null,
  };
}
