import { z } from 'zod';

/** The hub's background jobs (a closed set: a job the code does not know is never run). */
export const JobName = z.enum(['placement', 'liveness', 'join-token-sweep', 'log-archival', 'log-retention']);
/** One of the hub's background jobs. */
export type JobName = z.infer<typeof JobName>;

/** Where one run of a job is: waiting to run, running, waiting for its retry (or its time), failed for good, or done. */
export const JobState = z.enum(['waiting', 'active', 'delayed', 'failed', 'completed']);
/** Where one run of a job is. */
export type JobState = z.infer<typeof JobState>;

/** One run of a background job (with its retries), as `GET /admin/jobs` shows it. */
export const JobInfo = z.object({
  id: z.string(),
  name: JobName,
  state: JobState,
  /** Attempts that ran (a job failed for good made all of its attempts). */
  attemptsMade: z.number().int().min(0),
  /** Why the last attempt failed; null when none failed. */
  failedReason: z.string().nullable(),
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
});
/** One run of a background job. */
export type JobInfo = z.infer<typeof JobInfo>;

/** `GET /admin/jobs` response, newest first. */
export const JobList = z.object({ items: z.array(JobInfo) });
/** `GET /admin/jobs` response. */
export type JobList = z.infer<typeof JobList>;

/** `GET /admin/jobs?state=&limit=` query: failed jobs unless asked otherwise. Strict: it takes no cursor. */
export const JobListQuery = z.strictObject({
  state: JobState.default('failed'),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});
/** `GET /admin/jobs` query. */
export type JobListQuery = z.infer<typeof JobListQuery>;

/** `POST /admin/jobs/:id/retry` response: the job and where it is now. */
export const RetriedJob = z.object({ id: z.string(), state: JobState });
/** `POST /admin/jobs/:id/retry` response. */
export type RetriedJob = z.infer<typeof RetriedJob>;

/** `/admin/jobs/:id` path: a run's id as the job runner made it (not a UUID: BullMQ ids carry the job's name and time). */
export const JobIdParams = z.object({ id: z.string().min(1).max(200) });
/** `/admin/jobs/:id` path. */
export type JobIdParams = z.infer<typeof JobIdParams>;
