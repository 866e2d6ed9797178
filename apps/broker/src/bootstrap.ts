import { randomBytes } from 'node:crypto';
import { GraftClient } from '@graft/client';
import type { Logger } from '@graft/log';
import type { BrokerConfig } from './config.js';
import { type BrokerCredentials, writeNewBrokerCredentials } from './credentials.js';

/**
 * First start without credentials: the two-phase flow in one go, for a single-node setup. Phase 1
 * registers the broker with an admin API key (auto-provide, so it runs every project's agents);
 * phase 2 joins with the token just issued. Only the resulting secret is stored, never the admin key.
 */
export async function registerAndJoin(config: BrokerConfig, boot: NonNullable<BrokerConfig['bootstrap']>, version: string, log: Logger): Promise<BrokerCredentials> {
  const admin = new GraftClient({ baseUrl: boot.hubUrl, token: boot.adminToken });
  const name = boot.name ?? defaultName(config.hostname, config.api.port);
  const registered = await admin.registerBroker({ name, autoProvide: true });
  log.info('broker.registered', { brokerId: registered.brokerId, name });
  const joined = await new GraftClient({ baseUrl: boot.hubUrl }).joinBroker({
    brokerId: registered.brokerId,
    joinToken: registered.joinToken,
    hostname: config.hostname,
    version,
    runtimes: config.agents.runtimes,
    capacity: { maxAgents: config.agents.maxAgents },
  });
  const credentials: BrokerCredentials = { hubUrl: boot.hubUrl, brokerId: joined.brokerId, secretKey: joined.secretKey, joinedAt: new Date().toISOString() };
  const file = writeNewBrokerCredentials(config.dataDir, credentials);
  log.info('broker.joined', { brokerId: joined.brokerId, credentialsFile: file });
  return credentials;
}

/** A resource name from the hostname and the local API port (random when the port is too), at most 63 characters. */
function defaultName(hostname: string, port: number): string {
  const base = hostname.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 50) || 'broker';
  return `${base}-${port === 0 ? randomBytes(3).toString('hex') : port}`;
}
