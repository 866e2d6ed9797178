import type { Database } from '@graft/db';
import type { Logger } from '@graft/log';
import type { Kysely } from 'kysely';
import type { JwtService } from './auth/jwt-service.js';
import type { SigningKeyStore } from './auth/signing-keys.js';
import type { Dispatcher } from './dispatch/dispatcher.js';
import type { AgentStateWriter } from './domain/agent-writer.js';
import type { SecretBox } from './domain/secret-box.js';
import type { EventBus } from './events/event-bus.js';
import type { HubMetrics } from './http/metrics.js';
import type { JobRunner } from './jobs/job-runner.js';
import type { LogStore } from './logs/log-store.js';

/** Everything route handlers need, wired once in main.ts. */
export interface HubContext {
  db: Kysely<Database>;
  /** The one path for changes of agent state. */
  agentWriter: AgentStateWriter;
  /** Placement and commands to brokers. */
  dispatcher: Dispatcher;
  /** Agents' logs: storage, and the bus live readers follow. */
  logs: { store: LogStore; events: EventBus };
  /** Background jobs (admin routes list and retry their runs). */
  jobs: JobRunner;
  box: SecretBox;
  jwt: JwtService;
  signingKeys: SigningKeyStore;
  metrics: HubMetrics;
  log: Logger;
  version: string;
  startedAt: number;
  settings: { devAuth: boolean; userTokenTtlSecs: number; agentTokenTtlSecs: number; brokerJoinTtlSecs: number; brokerSecretGraceSecs: number; heartbeatIntervalMs: number; publicUrl: string | undefined };
}
