import type { Migration } from '../migration.js';
import { m0001Initial } from './0001-initial.js';
import { m0002Brokers } from './0002-brokers.js';
import { m0003Tunnel } from './0003-tunnel.js';
import { m0004Messages } from './0004-messages.js';
import { m0005AgentRuntimes } from './0005-agent-runtimes.js';
import { m0006Logs } from './0006-logs.js';

/** Every migration, in order. Append only: released migrations are never edited or removed. */
export const migrations: readonly Migration[] = [m0001Initial, m0002Brokers, m0003Tunnel, m0004Messages, m0005AgentRuntimes, m0006Logs];
