import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import type { ApiKey, CreatedApiKey, Me, Page } from '@graft/protocol';
import { type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ERROR_LINE, jsonOf, runCli, tempConfigDir } from './test-support/run-cli.js';

let fx: HubFixture;
let userToken: string;
let userEmail: string;

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  userEmail = 'cli-auth@example.com';
  userToken = (await new GraftClient({ baseUrl: fx.hub.url }).devLogin(userEmail)).token;
});
afterAll(async () => {
  await fx?.stop();
});

describe('graft login / whoami / logout', () => {
  it('verifies the token, stores {hubUrl, token} with mode 0600 in a 0700 dir and says who you are', async () => {
    const dir = join(tempConfigDir(), 'nested');
    const run = await runCli(['login', '--hub', `${fx.hub.url}/`, '--token', fx.hub.adminToken], { GRAFT_CONFIG_DIR: dir });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`Logged in to ${fx.hub.url} as `);
    expect(run.stdout).toContain('platform admin, via API key');
    const file = join(dir, 'credentials.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ hubUrl: fx.hub.url, token: fx.hub.adminToken });

    const who = await runCli(['whoami', '--json'], { GRAFT_CONFIG_DIR: dir });
    expect(who.code).toBe(0);
    const me = jsonOf<Me>(who);
    expect(me.kind === 'user' && me.user.isAdmin && me.via === 'api_key').toBe(true);
  });

  it('a bad token fails with exit 1, one error line with code and request id, and writes nothing', async () => {
    const dir = tempConfigDir();
    const run = await runCli(['login', '--hub', fx.hub.url, '--token', 'f'.repeat(64)], { GRAFT_CONFIG_DIR: dir });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(ERROR_LINE);
    expect(run.stderr).toMatch(/^graft: unknown API key \(code unauthorized, request [^)]+\)\n$/);
    expect(() => statSync(join(dir, 'credentials.json'))).toThrow();
  });

  it('login without a token is a usage error (exit 2)', async () => {
    const run = await runCli(['login', '--hub', fx.hub.url], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe('graft: login needs --hub URL and --token T (or GRAFT_HUB_URL and GRAFT_TOKEN)\n');
  });

  it('takes the token by precedence flag > GRAFT_TOKEN > credentials file', async () => {
    const dir = tempConfigDir();
    expect((await runCli(['login', '--hub', fx.hub.url, '--token', userToken], { GRAFT_CONFIG_DIR: dir })).code).toBe(0);
    const fromFile = await runCli(['whoami'], { GRAFT_CONFIG_DIR: dir });
    expect(fromFile.stdout).toContain(userEmail);

    // The environment beats the file: a bad env token fails although the file holds a good one.
    const badEnv = await runCli(['whoami'], { GRAFT_CONFIG_DIR: dir, GRAFT_TOKEN: 'e'.repeat(64) });
    expect(badEnv.code).toBe(1);
    expect(badEnv.stderr).toContain('code unauthorized');

    // The flag beats the environment, before or after the command.
    const flagAfter = await runCli(['whoami', '--token', fx.hub.adminToken], { GRAFT_CONFIG_DIR: dir, GRAFT_TOKEN: 'e'.repeat(64) });
    expect(flagAfter.code).toBe(0);
    expect(flagAfter.stdout).toContain('platform admin');
    const flagBefore = await runCli(['--token', fx.hub.adminToken, 'whoami'], { GRAFT_CONFIG_DIR: dir, GRAFT_TOKEN: 'e'.repeat(64) });
    expect(flagBefore.stdout).toContain('platform admin');
  });

  it('GRAFT_HUB_URL and GRAFT_TOKEN work without any credentials file', async () => {
    const run = await runCli(['whoami'], { GRAFT_CONFIG_DIR: tempConfigDir(), GRAFT_HUB_URL: fx.hub.url, GRAFT_TOKEN: userToken });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`${userEmail} (user ${run.stdout.match(/user ([0-9a-f-]{36})/)?.[1]}, via JWT, scopes read,write) on ${fx.hub.url}\n`);
  });

  it('never sends the stored token to a different hub given by --hub', async () => {
    const dir = tempConfigDir();
    expect((await runCli(['login', '--hub', fx.hub.url, '--token', userToken], { GRAFT_CONFIG_DIR: dir })).code).toBe(0);
    const run = await runCli(['projects', 'ls', '--hub', 'http://127.0.0.1:9'], { GRAFT_CONFIG_DIR: dir });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(ERROR_LINE);
    expect(run.stderr).toContain(`no token for http://127.0.0.1:9 (the stored credentials are for ${fx.hub.url})`);
  });

  it('logout removes the credentials file', async () => {
    const dir = tempConfigDir();
    await runCli(['login', '--hub', fx.hub.url, '--token', userToken], { GRAFT_CONFIG_DIR: dir });
    const out = await runCli(['logout'], { GRAFT_CONFIG_DIR: dir });
    expect(out.code).toBe(0);
    expect(() => statSync(join(dir, 'credentials.json'))).toThrow();
    const after = await runCli(['whoami'], { GRAFT_CONFIG_DIR: dir });
    expect(after.code).toBe(1);
    expect(after.stderr).toContain('code not_configured');
  });
});

describe('graft api-keys', () => {
  it('creates, lists and revokes a key; the revoked key then fails with exit 1 "revoked"', async () => {
    const dir = tempConfigDir();
    expect((await runCli(['login', '--hub', fx.hub.url, '--token', userToken], { GRAFT_CONFIG_DIR: dir })).code).toBe(0);
    const env = { GRAFT_CONFIG_DIR: dir };

    const created = await runCli(['api-keys', 'create', '--name', 'ci key', '--scope', 'read', '--expires', '2099-01-31'], env);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const lines = created.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^Created API key ci key \([0-9a-f-]{36}\), scopes read, expires 2099-01-31T00:00:00.000Z\.$/);
    const token = lines[lines.length - 1] ?? '';
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    const id = lines[0]?.match(/\(([0-9a-f-]{36})\)/)?.[1] ?? '';

    const asJson = jsonOf<CreatedApiKey>(await runCli(['api-keys', 'create', '--name', 'second', '--json'], env));
    expect(asJson.token).toMatch(/^[0-9a-f]{64}$/);
    expect(asJson.scopes).toEqual(['read', 'write']);

    const table = await runCli(['api-keys', 'ls'], env);
    expect(table.code).toBe(0);
    const [header, ...rows] = table.stdout.trimEnd().split('\n');
    expect(header).toMatch(/^ID\s+NAME\s+PREFIX\s+SCOPES\s+STATUS\s+EXPIRES\s+LAST USED\s+AGE$/);
    expect(rows).toHaveLength(2);
    expect(rows.find((r) => r.startsWith(id))).toMatch(/ci key\s+\S+\s+read\s+active\s+2099-01-31T00:00:00.000Z\s+never/);
    expect(table.stdout).not.toContain(token);

    // The new key works on its own...
    const withKey = { GRAFT_CONFIG_DIR: tempConfigDir(), GRAFT_HUB_URL: fx.hub.url, GRAFT_TOKEN: token };
    expect((await runCli(['projects', 'ls'], withKey)).code).toBe(0);

    const revoked = await runCli(['api-keys', 'revoke', id], env);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toBe(`Revoked API key ${id}.\n`);
    const page = jsonOf<Page<ApiKey>>(await runCli(['api-keys', 'ls', '--json'], env));
    expect(page.items.find((k) => k.id === id)?.revokedAt).toEqual(expect.any(String));

    // ...and not after revocation.
    const denied = await runCli(['projects', 'ls'], withKey);
    expect(denied.code).toBe(1);
    expect(denied.stdout).toBe('');
    expect(denied.stderr).toMatch(ERROR_LINE);
    expect(denied.stderr).toMatch(/^graft: API key has been revoked \(code unauthorized, request /);
  });

  it('pages with --limit and prints the next cursor for humans', async () => {
    const env = { GRAFT_CONFIG_DIR: tempConfigDir(), GRAFT_HUB_URL: fx.hub.url, GRAFT_TOKEN: fx.hub.adminToken };
    for (const name of ['page-a', 'page-b', 'page-c']) expect((await runCli(['api-keys', 'create', '--name', name], env)).code).toBe(0);
    const first = await runCli(['api-keys', 'ls', '--limit', '2'], env);
    const hint = first.stdout.trimEnd().split('\n').at(-1) ?? '';
    expect(hint).toMatch(/^More API keys: add --cursor \S+$/);
    const cursor = hint.split(' ').at(-1) ?? '';
    const second = jsonOf<Page<ApiKey>>(await runCli(['api-keys', 'ls', '--limit', '2', '--cursor', cursor, '--json'], env));
    const firstPage = jsonOf<Page<ApiKey>>(await runCli(['api-keys', 'ls', '--limit', '2', '--json'], env));
    expect(firstPage.nextCursor).toBe(cursor);
    expect(second.items.length).toBeGreaterThan(0);
    expect(second.items.map((k) => k.id)).not.toContain(firstPage.items[0]?.id);
    expect(second.items.map((k) => k.id)).not.toContain(firstPage.items[1]?.id);
  });

  it('revoking an unknown key fails with not_found', async () => {
    const env = { GRAFT_CONFIG_DIR: tempConfigDir(), GRAFT_HUB_URL: fx.hub.url, GRAFT_TOKEN: userToken };
    const run = await runCli(['api-keys', 'revoke', '00000000-0000-4000-8000-000000000000'], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^graft: API key not found \(code not_found, request /);
  });
});
