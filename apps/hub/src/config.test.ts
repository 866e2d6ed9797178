import { describe, expect, it } from 'vitest';
import { ConfigError, loadHubConfig } from './config.js';

describe('loadHubConfig', () => {
  it('has the documented defaults', () => {
    const c = loadHubConfig({ HOME: '/home/x' });
    expect(c.http).toEqual({ host: '127.0.0.1', port: 8080, publicUrl: undefined });
    expect(c.storage.databaseUrl).toBeUndefined();
    expect(c.storage.autoMigrate).toBe(true);
    expect(c.security.devAuth).toBe(false);
  });

  it('requires a master key with DATABASE_URL and turns auto-migration off there', () => {
    expect(() => loadHubConfig({ DATABASE_URL: 'postgres://x/y' })).toThrow(/GRAFT_MASTER_KEY: required/);
    const c = loadHubConfig({ DATABASE_URL: 'postgres://x/y', GRAFT_MASTER_KEY: 'a'.repeat(64) });
    expect(c.storage.autoMigrate).toBe(false);
  });

  it('names every bad variable', () => {
    try {
      loadHubConfig({ GRAFT_HUB_PORT: 'eighty', GRAFT_ADMIN_TOKEN: 'short', GRAFT_DEV_AUTH: 'maybe' });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const msg = (err as Error).message;
      expect(msg).toContain('GRAFT_HUB_PORT');
      expect(msg).toContain('GRAFT_ADMIN_TOKEN');
      expect(msg).toContain('GRAFT_DEV_AUTH');
    }
  });
});
