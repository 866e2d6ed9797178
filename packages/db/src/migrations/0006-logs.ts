import type { Migration } from '../migration.js';

/**
 * Agents' logs on the hub (DESIGN §6): every chunk a broker shipped, stored once by (agent, seq),
 * and per agent what is stored, closed and archived. No foreign key to `agents`: a log outlives
 * its agent (readable after a delete, until retention removes it), so it keeps its project.
 */
export const m0006Logs: Migration = {
  id: 6,
  name: 'logs',
  sql: `
CREATE TABLE agent_log_chunks (
  agent_id uuid NOT NULL,
  seq bigint NOT NULL,
  stream text NOT NULL CHECK (stream IN ('stdout', 'stderr', 'system')),
  at timestamptz NOT NULL,
  data bytea NOT NULL,
  PRIMARY KEY (agent_id, seq)
);
CREATE TABLE agent_logs (
  agent_id uuid PRIMARY KEY,
  project_id uuid NOT NULL,
  stored_seq bigint NOT NULL DEFAULT 0,
  closed_seq bigint,
  archived_seq bigint NOT NULL DEFAULT 0,
  bytes bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_logs_project_idx ON agent_logs (project_id, updated_at);
ALTER TABLE projects ADD COLUMN log_retention_days integer NOT NULL DEFAULT 30 CHECK (log_retention_days BETWEEN 1 AND 3650);
`,
};
