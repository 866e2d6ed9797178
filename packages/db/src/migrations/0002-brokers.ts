import type { Migration } from '../migration.js';

/** Runtime brokers (two-phase registration) and their project links. */
export const m0002Brokers: Migration = {
  id: 2,
  name: 'brokers',
  sql: `
CREATE TABLE brokers (
  id uuid PRIMARY KEY,
  name text NOT NULL UNIQUE,
  labels jsonb NOT NULL DEFAULT '{}',
  auto_provide boolean NOT NULL DEFAULT false,
  -- Phase 1: only the SHA-256 of the single-use join token; consumed once joined_at is set.
  join_token_hash bytea,
  join_expires_at timestamptz NOT NULL,
  joined_at timestamptz,
  -- Phase 2: the broker's HMAC secret, encrypted with the master key (HMAC needs the secret itself).
  secret_enc text,
  previous_secret_enc text,
  previous_secret_expires_at timestamptz,
  hostname text,
  version text,
  runtimes text[] NOT NULL DEFAULT '{}',
  max_agents integer,
  draining boolean NOT NULL DEFAULT false,
  last_heartbeat_at timestamptz,
  created_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE broker_projects (
  broker_id uuid NOT NULL REFERENCES brokers(id) ON DELETE CASCADE,
  project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (broker_id, project_id)
);
CREATE INDEX broker_projects_project_idx ON broker_projects (project_id, broker_id);

-- An explicit brokerId given at creation, honoured by placement.
ALTER TABLE agents ADD COLUMN requested_broker_id uuid REFERENCES brokers(id) ON DELETE SET NULL;
`,
};
