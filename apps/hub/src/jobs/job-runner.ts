import type { Logger } from '@graft/log';
import type { JobInfo, JobName, JobState } from '@graft/protocol';

/** One periodic job: what it runs, how often, and how many attempts a run gets before it counts as failed. */
export interface JobDefinition {
  name: JobName;
  /** Interval between scheduled runs. */
  everyMs: number;
  /** Attempts per run (1: no retry); retries back off exponentially. */
  attempts: number;
  /** One pass of the work; a throw is a failed attempt. */
  run(): Promise<void>;
}

/** How one attempt ended, for the job metrics. */
export type JobOutcome = 'ok' | 'failed';

/** What both adapters take besides their backend. */
export interface JobRunnerOptions {
  /** Delay before the first retry of a failed attempt; each further retry waits twice as long. */
  backoffMs?: number;
  /** Called after every attempt (the hub counts them in `graft_job_runs_total`). */
  onRun?: (name: JobName, outcome: JobOutcome) => void;
  log?: Logger;
}

/** How many finished runs each adapter keeps for `list`: failed ones for an admin to look at and retry, completed ones for a glance. */
export const JOB_HISTORY = { completed: 100, failed: 500 } as const;

/** What `retry` did: re-queued the run, found no such run, or found it not failed. */
export type JobRetryResult = 'retried' | 'not_found' | 'not_failed';

/**
 * Port: the hub's background work (placement retries, sweeps, log archival and retention). Each
 * run of a job happens on exactly one hub replica, with retries and backoff, and runs that failed
 * all their attempts are kept for an admin to see and retry. Owned by its consumers (hub-jobs.ts,
 * the admin job routes); in-process for a single node, BullMQ on Redis for a cluster.
 */
export interface JobRunner {
  /** Adds a job; call before start. */
  register(def: JobDefinition): void;
  /** Starts the schedules and running jobs. */
  start(): Promise<void>;
  /** Runs the job soon, coalesced with a run of it already waiting. */
  trigger(name: JobName): Promise<void>;
  /** Runs in one state, newest first. */
  list(state: JobState, limit: number): Promise<JobInfo[]>;
  /** Runs a failed run again, with all its attempts. */
  retry(id: string): Promise<JobRetryResult>;
  /** How many runs are in each state (the queue-depth gauge). */
  counts(): Promise<Record<JobState, number>>;
  /** Stops scheduling and waits for the runs in progress here. */
  close(): Promise<void>;
}
