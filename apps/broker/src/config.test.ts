import { describe, expect, it } from 'vitest';
import { BrokerConfigError, loadBrokerConfig } from './config.js';

describe('loadBrokerConfig', () => {
  it('has the documented defaults', () => {
    const c = loadBrokerConfig({});
    expect(c.api).toEqual({ host: '127.0.0.1', port: 9800 });
    expect(c.agents.runtimes).toEqual(['process']);
    expect(c.dataDir).toMatch(/\.graft\/broker$/);
    expect(c.tunnel).toEqual({ backoffBaseMs: 1000, backoffMaxMs: 60_000 });
    expect(c.bootstrap).toBeUndefined();
  });

  it('takes port 0, a runtime list and a capacity; an empty variable counts as unset', () => {
    const c = loadBrokerConfig({ GRAFT_BROKER_PORT: '0', GRAFT_BROKER_RUNTIMES: ' process ', GRAFT_BROKER_MAX_AGENTS: '7', GRAFT_BROKER_HOST: '' });
    expect(c.api).toEqual({ host: '127.0.0.1', port: 0 });
    expect(c.agents).toMatchObject({ runtimes: ['process'], maxAgents: 7 });
  });

  it("passes agents only PATH, HOME, LANG and TZ of the broker's environment", () => {
    const c = loadBrokerConfig({ PATH: '/bin', HOME: '/root', TZ: 'UTC', GRAFT_BROKER_BOOTSTRAP_HUB_URL: 'http://hub', GRAFT_BROKER_BOOTSTRAP_TOKEN: 'secret' });
    expect(c.agents.baseEnv).toEqual({ PATH: '/bin', HOME: '/root', TZ: 'UTC' });
  });

  it('names each bad variable', () => {
    const bad = (env: Record<string, string>) => {
      try {
        loadBrokerConfig(env);
      } catch (err) {
        expect(err).toBeInstanceOf(BrokerConfigError);
        return (err as Error).message;
      }
      throw new Error('expected a configuration error');
    };
    expect(bad({ GRAFT_BROKER_PORT: '70000' })).toContain('GRAFT_BROKER_PORT');
    expect(bad({ GRAFT_BROKER_RUNTIMES: 'kubernetes' })).toContain('GRAFT_BROKER_RUNTIMES');
    expect(bad({ DOCKER_HOST: 'ssh://somewhere' })).toContain('DOCKER_HOST');
    expect(bad({ GRAFT_BROKER_RUNTIMES: 'process,process' })).toContain('repeat');
    expect(bad({ GRAFT_BROKER_MAX_AGENTS: '0' })).toContain('GRAFT_BROKER_MAX_AGENTS');
    expect(bad({ GRAFT_BROKER_BOOTSTRAP_TOKEN: 'x' })).toContain('go together');
    expect(bad({ GRAFT_BROKER_BACKOFF_BASE_MS: '5000', GRAFT_BROKER_BACKOFF_MAX_MS: '1000' })).toContain('BACKOFF_MAX_MS');
  });
});
