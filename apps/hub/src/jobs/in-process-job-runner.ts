import type { JobInfo, JobName, JobState } from '@graft/protocol';
import { JOB_HISTORY, type JobDefinition, type JobRetryResult, type JobRunner, type JobRunnerOptions } from './job-runner.js';

/** One run of a job and its attempts. */
interface Run {
  id: string;
  def: JobDefinition;
  state: JobState;
  attemptsMade: number;
  failedReason: string | null;
  createdAt: number;
  finishedAt: number | null;
  /** Orders runs created in the same millisecond. */
  seq: number;
}

/**
 * Adapter for a single node: a timer per job, runs kept in memory. A job never runs twice at
 * once: a run that comes due while another of its job is running waits for it, and a scheduled
 * or triggered run joins one of its job that is already waiting. Failed attempts are retried
 * after `backoffMs`, doubling each time; a run that failed all its attempts is kept (the newest
 * JOB_HISTORY.failed) until an admin retries it.
 */
export class InProcessJobRunner implements JobRunner {
  private readonly defs = new Map<JobName, JobDefinition>();
  private readonly waiting = new Map<JobName, Run[]>();
  private readonly active = new Map<JobName, { run: Run; done: Promise<void> }>();
  private readonly delayed = new Map<Run, NodeJS.Timeout>();
  private readonly failed: Run[] = [];
  private readonly completed: Run[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly backoffMs: number;
  private seq = 0;
  private started = false;
  private closed = false;

  constructor(private readonly options: JobRunnerOptions = {}) {
    this.backoffMs = options.backoffMs ?? 1_000;
  }

  register(def: JobDefinition): void {
    if (this.started) throw new Error(`job ${def.name} registered after start`);
    if (this.defs.has(def.name)) throw new Error(`job ${def.name} registered twice`);
    this.defs.set(def.name, def);
    this.waiting.set(def.name, []);
  }

  async start(): Promise<void> {
    if (this.started || this.closed) return;
    this.started = true;
    for (const def of this.defs.values()) {
      const timer = setInterval(() => this.enqueue(def), def.everyMs);
      timer.unref();
      this.timers.push(timer);
      // Like a BullMQ `every` schedule: the first run is due at once.
      this.enqueue(def);
    }
  }

  async trigger(name: JobName): Promise<void> {
    const def = this.defs.get(name);
    if (!def) throw new Error(`job ${name} is not registered`);
    this.enqueue(def);
  }

  async list(state: JobState, limit: number): Promise<JobInfo[]> {
    return this.all()
      .filter((r) => r.state === state)
      .sort((a, b) => b.createdAt - a.createdAt || b.seq - a.seq)
      .slice(0, limit)
      .map(toInfo);
  }

  async retry(id: string): Promise<JobRetryResult> {
    const at = this.failed.findIndex((r) => r.id === id);
    const run = this.failed[at];
    if (!run) return this.all().some((r) => r.id === id) ? 'not_failed' : 'not_found';
    this.failed.splice(at, 1);
    Object.assign(run, { state: 'waiting', attemptsMade: 0, failedReason: null, finishedAt: null });
    this.waiting.get(run.def.name)?.push(run);
    this.pump(run.def.name);
    return 'retried';
  }

  async counts(): Promise<Record<JobState, number>> {
    const counts: Record<JobState, number> = { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 };
    for (const r of this.all()) counts[r.state]++;
    return counts;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers.splice(0)) clearInterval(t);
    for (const t of this.delayed.values()) clearTimeout(t);
    this.delayed.clear();
    await Promise.all([...this.active.values()].map((a) => a.done));
  }

  private all(): Run[] {
    const runs: Run[] = [...this.failed, ...this.completed, ...this.delayed.keys()];
    for (const list of this.waiting.values()) runs.push(...list);
    for (const { run } of this.active.values()) runs.push(run);
    return runs;
  }

  /** A new run of the job, unless a run of it that has not started yet is waiting (they would do the same work). */
  private enqueue(def: JobDefinition): void {
    if (this.closed) return;
    const queue = this.waiting.get(def.name);
    if (!queue || queue.some((r) => r.attemptsMade === 0)) return;
    const now = Date.now();
    const seq = ++this.seq;
    queue.push({ id: `${def.name}:${now}:${seq}`, def, state: 'waiting', attemptsMade: 0, failedReason: null, createdAt: now, finishedAt: null, seq });
    this.pump(def.name);
  }

  /** Starts the job's next waiting run unless one of it is running. */
  private pump(name: JobName): void {
    if (!this.started || this.closed || this.active.has(name)) return;
    const run = this.waiting.get(name)?.shift();
    if (!run) return;
    run.state = 'active';
    const done = this.attempt(run).finally(() => {
      this.active.delete(name);
      this.pump(name);
    });
    this.active.set(name, { run, done });
  }

  private async attempt(run: Run): Promise<void> {
    const { def } = run;
    try {
      await def.run();
      run.attemptsMade++;
      this.options.onRun?.(def.name, 'ok');
      Object.assign(run, { state: 'completed', finishedAt: Date.now() });
      keepNewest(this.completed, run, JOB_HISTORY.completed);
    } catch (err) {
      run.attemptsMade++;
      run.failedReason = err instanceof Error ? err.message : String(err);
      this.options.onRun?.(def.name, 'failed');
      if (run.attemptsMade < def.attempts && !this.closed) {
        const wait = this.backoffMs * 2 ** (run.attemptsMade - 1);
        this.options.log?.warn('job.attempt_failed', { job: def.name, jobId: run.id, attempt: run.attemptsMade, retryInMs: wait, reason: run.failedReason });
        run.state = 'delayed';
        const timer = setTimeout(() => {
          this.delayed.delete(run);
          run.state = 'waiting';
          this.waiting.get(def.name)?.push(run);
          this.pump(def.name);
        }, wait);
        timer.unref();
        this.delayed.set(run, timer);
        return;
      }
      this.options.log?.error('job.failed', { job: def.name, jobId: run.id, attempts: run.attemptsMade, reason: run.failedReason });
      Object.assign(run, { state: 'failed', finishedAt: Date.now() });
      keepNewest(this.failed, run, JOB_HISTORY.failed);
    }
  }
}

function keepNewest(list: Run[], run: Run, max: number): void {
  list.push(run);
  if (list.length > max) list.splice(0, list.length - max);
}

function toInfo(r: Run): JobInfo {
  return {
    id: r.id,
    name: r.def.name,
    state: r.state,
    attemptsMade: r.attemptsMade,
    failedReason: r.failedReason,
    createdAt: new Date(r.createdAt).toISOString(),
    finishedAt: r.finishedAt === null ? null : new Date(r.finishedAt).toISOString(),
  };
}
