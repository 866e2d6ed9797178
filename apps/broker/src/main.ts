#!/usr/bin/env node
import { createLogger } from '@graft/log';
import { startBroker } from './broker.js';
import { BrokerConfigError, loadBrokerConfig } from './config.js';
import { CredentialsError } from './credentials.js';

/** Composition root of the broker process: config once, run, stop on signals. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadBrokerConfig>;
  try {
    config = loadBrokerConfig(process.env);
  } catch (err) {
    if (err instanceof BrokerConfigError) {
      process.stderr.write(`graft-broker: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger({ level: config.log.level, base: { service: 'graft-broker' } });
  let broker: Awaited<ReturnType<typeof startBroker>>;
  try {
    broker = await startBroker(config, log);
  } catch (err) {
    if (err instanceof CredentialsError) {
      process.stderr.write(`graft-broker: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let signalled = false;
  const shutdown = (why: string, code: number) => {
    if (signalled) return;
    signalled = true;
    log.info('broker.shutdown', { why });
    broker.stop().then(
      () => process.exit(code),
      (err: unknown) => {
        log.error('broker.shutdown_failed', { err });
        process.exit(1);
      },
    );
  };
  void broker.revoked.then((reason) => {
    process.stderr.write(`graft-broker: the hub revoked this broker (${reason}); join again with a new registration\n`);
    shutdown('revoked', 1);
  });
  process.on('SIGTERM', () => shutdown('SIGTERM', 0));
  process.on('SIGINT', () => shutdown('SIGINT', 0));
}

main().catch((err: unknown) => {
  process.stderr.write(`graft-broker: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
