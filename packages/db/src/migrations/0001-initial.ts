import type { Migration } from '../migration.js';

/** Users, API keys, JWT signing keys, projects, members, secrets, templates and agents. */
export const m0001Initial: Migration = {
  id: 1,
  name: 'initial',
  sql: `
CREATE TABLE users (
  id uuid PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text,
  is_admin boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name text NOT NULL,
  token_hash bytea NOT NULL UNIQUE,
  prefix text NOT NULL,
  scopes text[] NOT NULL,
  expires_at timestamptz,
  last_used_at timestamptz,
  revoked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, id);

CREATE TABLE signing_keys (
  kid text PRIMARY KEY,
  secret_enc text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  git_remote text UNIQUE,
  labels jsonb NOT NULL DEFAULT '{}',
  created_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE project_members (
  project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  role text NOT NULL CHECK (role IN ('viewer', 'member', 'admin')),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user_idx ON project_members (user_id, project_id);

CREATE TABLE project_secrets (
  project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  name text NOT NULL,
  value_enc text NOT NULL,
  version integer NOT NULL DEFAULT 1,
  updated_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, name)
);

CREATE TABLE templates (
  id uuid PRIMARY KEY,
  name text NOT NULL,
  project_id uuid REFERENCES projects(id) ON DELETE CASCADE,
  latest_version integer NOT NULL,
  created_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- One name per project, and one per global scope (project_id IS NULL).
CREATE UNIQUE INDEX templates_project_name_uq ON templates (project_id, name) WHERE project_id IS NOT NULL;
CREATE UNIQUE INDEX templates_global_name_uq ON templates (name) WHERE project_id IS NULL;

CREATE TABLE template_versions (
  template_id uuid NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
  version integer NOT NULL,
  spec jsonb NOT NULL,
  content_hash text NOT NULL,
  created_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (template_id, version)
);

CREATE TABLE agents (
  id uuid PRIMARY KEY,
  project_id uuid NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
  name text NOT NULL,
  template_id uuid NOT NULL REFERENCES templates(id),
  template_version integer NOT NULL,
  phase text NOT NULL,
  activity text,
  detail text,
  desired_state text NOT NULL,
  generation bigint NOT NULL DEFAULT 1,
  state_version bigint NOT NULL DEFAULT 1,
  broker_id uuid,
  pending_reason text,
  task text,
  env jsonb NOT NULL DEFAULT '{}',
  labels jsonb NOT NULL DEFAULT '{}',
  created_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  activity_changed_at timestamptz,
  last_seen_at timestamptz,
  UNIQUE (project_id, name)
);
-- Keyset pagination is by id (UUIDv7, so creation order); each filter gets an index ending in id.
CREATE INDEX agents_project_idx ON agents (project_id, id);
CREATE INDEX agents_creator_idx ON agents (created_by, id);
CREATE INDEX agents_phase_idx ON agents (phase, id);
CREATE INDEX agents_broker_idx ON agents (broker_id, id) WHERE broker_id IS NOT NULL;
`,
};
