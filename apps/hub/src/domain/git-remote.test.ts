import { describe, expect, it } from 'vitest';
import { isPlausibleGitRemote, normaliseGitRemote, projectIdForRemote } from './git-remote.js';

describe('normaliseGitRemote', () => {
  it.each([
    ['git@github.com:Acme/Repo.git', 'github.com/acme/repo'],
    ['https://github.com/acme/repo', 'github.com/acme/repo'],
    ['https://GitHub.com/Acme/Repo.git/', 'github.com/acme/repo'],
    ['ssh://git@github.com/acme/repo/', 'github.com/acme/repo'],
    ['ssh://git@github.com:22/acme/repo.git', 'github.com/acme/repo'],
    ['https://user:pw@gitlab.example.com/group/sub/repo.git', 'gitlab.example.com/group/sub/repo'],
    ['git://example.org:9418/x/y', 'example.org:9418/x/y'],
    ['/srv/git/Repo.git', 'file:///srv/git/Repo'],
    ['file:///srv/git/Repo/', 'file:///srv/git/Repo'],
  ])('%s -> %s', (input, expected) => {
    expect(normaliseGitRemote(input)).toBe(expected);
  });

  it('rejects strings that are not remotes', () => {
    expect(isPlausibleGitRemote('hello world')).toBe(false);
    expect(isPlausibleGitRemote('justaname')).toBe(false);
    expect(isPlausibleGitRemote('git@github.com:acme/repo.git')).toBe(true);
    expect(isPlausibleGitRemote('/srv/repo')).toBe(true);
  });
});

describe('projectIdForRemote', () => {
  it('is a deterministic UUIDv5 that differs between repositories', () => {
    const a = projectIdForRemote('github.com/acme/repo');
    expect(a).toBe(projectIdForRemote('github.com/acme/repo'));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(projectIdForRemote('github.com/acme/other')).not.toBe(a);
  });
});
