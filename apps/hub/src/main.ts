#!/usr/bin/env node
import { createLogger } from '@graft/log';
import { ConfigError, loadHubConfig } from './config.js';
import { startHubServer } from './server.js';

/** Composition root of the hub process: config once, wire, run, stop on signals. */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadHubConfig>;
  try {
    config = loadHubConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`graft-hub: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger({ level: config.log.level, base: { service: 'graft-hub' } });
  const hub = await startHubServer(config, log);
  let signalled = false;
  const shutdown = (signal: string) => {
    if (signalled) return;
    signalled = true;
    log.info('hub.signal', { signal });
    const force = setTimeout(() => {
      log.error('hub.shutdown_timeout', {});
      process.exit(1);
    }, 15_000);
    force.unref();
    hub.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('hub.shutdown_failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`graft-hub: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
