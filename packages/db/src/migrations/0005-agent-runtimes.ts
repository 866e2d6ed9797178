import type { Migration } from '../migration.js';

/**
 * What agents need from their project at run time: the remote as typed, to clone (git_remote is
 * the normalised identity and cannot be cloned), and whether stalled agents are suspended.
 */
export const m0005AgentRuntimes: Migration = {
  id: 5,
  name: 'agent-runtimes',
  sql: `
ALTER TABLE projects ADD COLUMN clone_url text;
ALTER TABLE projects ADD COLUMN auto_suspend_stalled boolean NOT NULL DEFAULT false;
`,
};
