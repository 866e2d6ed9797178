import type { Database } from '@graft/db';
import type { Logger } from '@graft/log';
import type { Kysely } from 'kysely';
import type { AgentLiveness } from '../dispatch/agent-liveness.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import type { LogArchiver } from '../logs/log-archiver.js';
import type { JobRunner } from './job-runner.js';
import { sweepExpiredJoinTokens } from './join-token-sweep.js';

/** Attempts per run of every hub job (retries back off exponentially). */
const ATTEMPTS = 3;

/** What the hub's jobs drive. */
export interface HubJobDeps {
  db: Kysely<Database>;
  dispatcher: Pick<Dispatcher, 'placementPass'>;
  liveness: Pick<AgentLiveness, 'sweep' | 'everyMs'>;
  archiver: Pick<LogArchiver, 'archivePass' | 'retentionPass'>;
  log: Logger;
}

/**
 * Registers the hub's periodic work on the runner (in a cluster each run happens on one replica):
 * - `placement` every 10 s: agents wanted running that no broker holds (events place them at once;
 *   this is the level-triggered retry);
 * - `liveness` every `liveness.everyMs` (a twentieth of the broker heartbeat interval): offline,
 *   online again, stalled, auto-suspend;
 * - `join-token-sweep` every 60 s: expired join tokens of brokers that never joined;
 * - `log-archival` and `log-retention` every 2 s: finished logs to the archive, expired logs removed.
 */
export function registerHubJobs(runner: JobRunner, deps: HubJobDeps): void {
  runner.register({ name: 'placement', everyMs: 10_000, attempts: ATTEMPTS, run: () => deps.dispatcher.placementPass() });
  runner.register({ name: 'liveness', everyMs: deps.liveness.everyMs, attempts: ATTEMPTS, run: () => deps.liveness.sweep() });
  runner.register({
    name: 'join-token-sweep',
    everyMs: 60_000,
    attempts: ATTEMPTS,
    run: async () => {
      await sweepExpiredJoinTokens(deps.db, deps.log);
    },
  });
  runner.register({ name: 'log-archival', everyMs: 2_000, attempts: ATTEMPTS, run: () => deps.archiver.archivePass() });
  runner.register({ name: 'log-retention', everyMs: 2_000, attempts: ATTEMPTS, run: () => deps.archiver.retentionPass() });
}
