import type { Migration } from '../migration.js';

/** Messages to agents: stored first, delivered through the agent's broker when it runs. */
export const m0004Messages: Migration = {
  id: 4,
  name: 'messages',
  sql: `
CREATE TABLE agent_messages (
  id uuid PRIMARY KEY,
  agent_id uuid NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  body text NOT NULL,
  wake boolean NOT NULL DEFAULT false,
  interrupt boolean NOT NULL DEFAULT false,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered')),
  attempts integer NOT NULL DEFAULT 0,
  created_by uuid REFERENCES users(id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  delivered_at timestamptz
);
CREATE INDEX agent_messages_agent_idx ON agent_messages (agent_id, id);
CREATE INDEX agent_messages_pending_idx ON agent_messages (agent_id, id) WHERE state = 'pending';
`,
};
