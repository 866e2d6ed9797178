import { describe, expect, it } from 'vitest';
import { parseCliEnv } from './config.js';
import { normaliseHubUrl, resolveConnection } from './connection.js';
import { CliError, UsageError } from './errors.js';

const env = (vars: Record<string, string> = {}) => parseCliEnv({ GRAFT_CONFIG_DIR: '/tmp/none', ...vars });
const stored = { hubUrl: 'http://hub.example:8080', token: 'file-token' };

describe('resolveConnection', () => {
  it('takes each of hub and token by precedence flag > env > credentials file', () => {
    expect(resolveConnection({}, env(), stored)).toEqual({ hubUrl: 'http://hub.example:8080', token: 'file-token' });
    expect(resolveConnection({}, env({ GRAFT_TOKEN: 'env-token' }), stored).token).toBe('env-token');
    expect(resolveConnection({ token: 'flag-token' }, env({ GRAFT_TOKEN: 'env-token' }), stored).token).toBe('flag-token');
    expect(resolveConnection({ hub: 'http://flag:1' }, env({ GRAFT_HUB_URL: 'http://env:1', GRAFT_TOKEN: 't' }), stored).hubUrl).toBe('http://flag:1');
    expect(resolveConnection({}, env({ GRAFT_HUB_URL: 'http://env:1', GRAFT_TOKEN: 't' }), stored).hubUrl).toBe('http://env:1');
  });

  it('uses the stored token for the stored hub only, however its URL is spelled', () => {
    expect(resolveConnection({ hub: 'http://hub.example:8080/' }, env(), stored).token).toBe('file-token');
    expect(() => resolveConnection({ hub: 'http://elsewhere:8080' }, env(), stored)).toThrow(/no token for http:\/\/elsewhere:8080 \(the stored credentials are for/);
  });

  it('ignores empty environment variables', () => {
    expect(resolveConnection({}, env({ GRAFT_TOKEN: '', GRAFT_HUB_URL: ' ' }), stored)).toEqual({ hubUrl: 'http://hub.example:8080', token: 'file-token' });
  });

  it('fails with not_configured when no hub is known', () => {
    const err = (() => {
      try {
        resolveConnection({}, env(), undefined);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).code).toBe('not_configured');
  });
});

describe('normaliseHubUrl', () => {
  it('drops trailing slashes and keeps a path prefix', () => {
    expect(normaliseHubUrl('https://graft.example.com/')).toBe('https://graft.example.com');
    expect(normaliseHubUrl('https://example.com/graft//')).toBe('https://example.com/graft');
  });

  it('rejects non-URLs and other schemes as usage errors', () => {
    expect(() => normaliseHubUrl('localhost:8080')).toThrow(UsageError);
    expect(() => normaliseHubUrl('not a url')).toThrow(UsageError);
  });
});
