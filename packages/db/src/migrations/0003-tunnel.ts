import type { Migration } from '../migration.js';

/** Broker tunnels (presence, load) and what dispatch needs to remember per agent. */
export const m0003Tunnel: Migration = {
  id: 3,
  name: 'tunnel',
  sql: `
-- The broker's current tunnel: a random id per connection, so the cleanup of a stale connection
-- (a conditional UPDATE on its own session id) can never mark a newer connection gone.
ALTER TABLE brokers ADD COLUMN tunnel_session uuid;
ALTER TABLE brokers ADD COLUMN connected_at timestamptz;
ALTER TABLE brokers ADD COLUMN disconnected_at timestamptz;
-- Load as last reported by the broker's heartbeat.
ALTER TABLE brokers ADD COLUMN reported_running integer;

-- Start of a suspended agent resumes it; kept so a reconnect's desired set says so too.
ALTER TABLE agents ADD COLUMN resume boolean NOT NULL DEFAULT false;
-- The generation of the last broker report the hub accepted (0: none yet).
ALTER TABLE agents ADD COLUMN observed_generation bigint NOT NULL DEFAULT 0;
-- The activity an agent had when its broker went offline, restored when the broker is back.
ALTER TABLE agents ADD COLUMN prior_activity text;
-- Placement looks for agents wanted running that no broker holds.
CREATE INDEX agents_unplaced_idx ON agents (id) WHERE broker_id IS NULL AND desired_state = 'running';
`,
};
