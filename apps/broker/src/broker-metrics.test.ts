import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { createBrokerMetrics } from './broker-metrics.js';

it('the broker’s metrics pass `promtool check metrics` with every series populated', async () => {
  const m = createBrokerMetrics(() => new Map([['running', 2]]));
  m.commands.inc({ command: 'create', outcome: 'ok' });
  m.runtimeStart.observe({ runtime: 'process' }, 0.004);
  m.tunnelUp.set(1);
  m.tunnelConnects.inc({ outcome: 'ok' });
  m.logBytes.inc({ what: 'captured' }, 100);
  // Our own series only: prom-client's default process/nodejs metrics are not ours to lint.
  const text = `${(await m.registry.metrics())
    .split('\n')
    .filter((l) => /^(# (HELP|TYPE) )?graft_/.test(l))
    .join('\n')}\n`;
  expect(text).toContain('graft_broker_agents{phase="running"} 2');
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  if (check.error) throw new Error(`promtool is required (apt-get install prometheus): ${check.error.message}`);
  expect(check.stdout + check.stderr).toBe('');
  expect(check.status).toBe(0);
});
