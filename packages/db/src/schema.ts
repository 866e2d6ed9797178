import type { ColumnType, Generated, JSONColumnType } from 'kysely';

/** A timestamptz with a database default: optional on insert. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
/** bigint columns come back from pg as strings; we only ever write numbers. */
type BigIntColumn = ColumnType<string, number | undefined, number | string>;

/** `users` table. */
export interface UsersTable {
  id: string;
  email: string;
  name: string | null;
  is_admin: Generated<boolean>;
  created_at: Timestamp;
}

/** `api_keys` table: only the SHA-256 of the token is stored. */
export interface ApiKeysTable {
  id: string;
  user_id: string;
  name: string;
  token_hash: Buffer;
  prefix: string;
  scopes: string[];
  expires_at: NullableTimestamp;
  last_used_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
  created_at: Timestamp;
}

/** `signing_keys` table: JWT HMAC keys, encrypted with the master key. */
export interface SigningKeysTable {
  kid: string;
  secret_enc: string;
  created_at: Timestamp;
}

/** `projects` table. */
export interface ProjectsTable {
  id: string;
  name: string;
  git_remote: string | null;
  /** The remote as registered, which agents clone (git_remote is the normalised identity). */
  clone_url: string | null;
  /** Whether agents that stall are suspended by the liveness sweep. */
  auto_suspend_stalled: Generated<boolean>;
  /** Days an agent's log is kept after its last write (archive and hot chunks). */
  log_retention_days: Generated<number>;
  labels: JSONColumnType<Record<string, string>>;
  created_by: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** `agent_log_chunks` table: one row per shipped chunk. */
export interface AgentLogChunksTable {
  agent_id: string;
  seq: string;
  stream: 'stdout' | 'stderr' | 'system';
  at: Timestamp;
  data: Buffer;
}

/** `agent_logs` table: per agent, what of its log is stored, closed and archived. */
export interface AgentLogsTable {
  agent_id: string;
  project_id: string;
  stored_seq: ColumnType<string, string | number | undefined, string | number>;
  closed_seq: ColumnType<string | null, string | number | null | undefined, string | number | null>;
  archived_seq: ColumnType<string, string | number | undefined, string | number>;
  bytes: ColumnType<string, string | number | undefined, string | number>;
  updated_at: Generated<Timestamp>;
}

/** `project_members` table. */
export interface ProjectMembersTable {
  project_id: string;
  user_id: string;
  role: 'viewer' | 'member' | 'admin';
  created_at: Timestamp;
}

/** `project_secrets` table: values encrypted with the master key (AES-256-GCM). */
export interface ProjectSecretsTable {
  project_id: string;
  name: string;
  value_enc: string;
  version: Generated<number>;
  updated_by: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** `templates` table. */
export interface TemplatesTable {
  id: string;
  name: string;
  project_id: string | null;
  latest_version: number;
  created_by: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** `template_versions` table: immutable. */
export interface TemplateVersionsTable {
  template_id: string;
  version: number;
  spec: JSONColumnType<Record<string, unknown>>;
  content_hash: string;
  created_by: string | null;
  created_at: Timestamp;
}

/** `agents` table. */
export interface AgentsTable {
  id: string;
  project_id: string;
  name: string;
  template_id: string;
  template_version: number;
  phase: string;
  activity: string | null;
  detail: string | null;
  desired_state: string;
  generation: BigIntColumn;
  /** Optimistic-concurrency counter: bumped on every write to the state columns. */
  state_version: BigIntColumn;
  broker_id: string | null;
  pending_reason: string | null;
  task: string | null;
  env: JSONColumnType<Record<string, string>>;
  labels: JSONColumnType<Record<string, string>>;
  created_by: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  activity_changed_at: NullableTimestamp;
  last_seen_at: NullableTimestamp;
  requested_broker_id: ColumnType<string | null, string | null | undefined, string | null>;
  resume: ColumnType<boolean, boolean | undefined, boolean>;
  observed_generation: BigIntColumn;
  prior_activity: ColumnType<string | null, string | null | undefined, string | null>;
}

/** `brokers` table: runtime brokers, registered in two phases. */
export interface BrokersTable {
  id: string;
  name: string;
  labels: JSONColumnType<Record<string, string>>;
  auto_provide: ColumnType<boolean, boolean | undefined, boolean>;
  join_token_hash: Buffer | null;
  join_expires_at: ColumnType<Date, Date | string, Date | string>;
  joined_at: NullableTimestamp;
  secret_enc: string | null;
  previous_secret_enc: string | null;
  previous_secret_expires_at: NullableTimestamp;
  hostname: string | null;
  version: string | null;
  runtimes: ColumnType<string[], string[] | undefined, string[]>;
  max_agents: number | null;
  draining: ColumnType<boolean, boolean | undefined, boolean>;
  last_heartbeat_at: NullableTimestamp;
  tunnel_session: ColumnType<string | null, string | null | undefined, string | null>;
  connected_at: NullableTimestamp;
  disconnected_at: NullableTimestamp;
  reported_running: ColumnType<number | null, number | null | undefined, number | null>;
  created_by: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
}

/** `broker_projects` table: which projects a broker may run agents for. */
export interface BrokerProjectsTable {
  broker_id: string;
  project_id: string;
  created_at: Timestamp;
}

/** `agent_messages` table: messages to agents, delivered through their broker. */
export interface AgentMessagesTable {
  id: string;
  agent_id: string;
  body: string;
  wake: ColumnType<boolean, boolean | undefined, boolean>;
  interrupt: ColumnType<boolean, boolean | undefined, boolean>;
  state: ColumnType<string, string | undefined, string>;
  attempts: ColumnType<number, number | undefined, number>;
  created_by: string | null;
  created_at: Timestamp;
  delivered_at: NullableTimestamp;
}

/** The whole database as Kysely sees it. */
export interface Database {
  users: UsersTable;
  api_keys: ApiKeysTable;
  signing_keys: SigningKeysTable;
  projects: ProjectsTable;
  project_members: ProjectMembersTable;
  project_secrets: ProjectSecretsTable;
  templates: TemplatesTable;
  template_versions: TemplateVersionsTable;
  agents: AgentsTable;
  brokers: BrokersTable;
  broker_projects: BrokerProjectsTable;
  agent_messages: AgentMessagesTable;
  agent_log_chunks: AgentLogChunksTable;
  agent_logs: AgentLogsTable;
}
