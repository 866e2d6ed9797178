import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createFreshDatabase, type FreshDatabase } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CLI_MAIN, jsonOf, runCli, tempConfigDir, tempDir } from './test-support/run-cli.js';

let db: FreshDatabase;
const children: ChildProcess[] = [];
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  db = await createFreshDatabase(inject('pgAdminUrl'), 'graft_cli');
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const cleanup of cleanups) await cleanup();
  await db?.drop();
});

const hubEnv = (extra: Record<string, string> = {}, database: FreshDatabase = db): Record<string, string> => ({
  GRAFT_CONFIG_DIR: tempConfigDir(),
  GRAFT_DATA_DIR: tempDir('graft-cli-hub-'),
  DATABASE_URL: database.url,
  GRAFT_MASTER_KEY: randomBytes(32).toString('hex'),
  ...extra,
});

describe('graft hub migrate', () => {
  it('applies the migrations once and then reports the database as up to date', async () => {
    const env = hubEnv();
    const first = await runCli(['hub', 'migrate'], env);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const names = first.stdout.match(/^Applied (\d+) migrations?: (.*)\.\n$/);
    expect(names?.[2]?.split(', ')[0]).toBe('0001-initial');
    const count = Number(names?.[1]);

    const again = await runCli(['hub', 'migrate'], env);
    expect(again.code).toBe(0);
    expect(again.stdout).toBe(`Database is up to date (${count} migrations already applied).\n`);
    expect(jsonOf<{ applied: string[]; alreadyApplied: number }>(await runCli(['hub', 'migrate', '--json'], env))).toEqual({ applied: [], alreadyApplied: count });
  });

  it('refuses a bad hub configuration as a usage error (exit 2) on one line', async () => {
    const { GRAFT_MASTER_KEY: _, ...withoutKey } = hubEnv();
    const run = await runCli(['hub', 'migrate'], withoutKey);
    expect(run.code).toBe(2);
    expect(run.stderr).toBe('graft: invalid configuration: GRAFT_MASTER_KEY: required when DATABASE_URL is set (generate one with: openssl rand -hex 32)\n');
  });
});

describe('graft hub start', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('serves the API in the foreground and stops gracefully on %s with exit 0', async (signal) => {
    // A database of its own: the hub bootstraps keys sealed with this run's master key.
    const own = await createFreshDatabase(inject('pgAdminUrl'), 'graft_cli');
    cleanups.push(() => own.drop());
    const adminToken = randomBytes(32).toString('hex');
    const env = hubEnv({ GRAFT_ADMIN_TOKEN: adminToken, GRAFT_AUTO_MIGRATE: '1' }, own);
    const child = spawn(process.execPath, [CLI_MAIN, 'hub', 'start', '--port', '0', '--host', '127.0.0.1'], {
      env: { PATH: process.env.PATH ?? '', HOME: env.GRAFT_DATA_DIR, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    child.stderr?.on('data', (c: Buffer) => {
      out += c.toString('utf8');
    });
    const exited = new Promise<number | null>((ok) => child.once('exit', (code) => ok(code)));
    const deadline = Date.now() + 20_000;
    let url: string | undefined;
    while (!url && Date.now() < deadline && child.exitCode === null) {
      url = out.match(/"event":"hub\.listening"[^\n]*"url":"([^"]+)"/)?.[1];
      if (!url) await new Promise((r) => setTimeout(r, 50));
    }
    expect(url, out).toBeDefined();

    const who = await runCli(['whoami'], { GRAFT_CONFIG_DIR: tempConfigDir(), GRAFT_HUB_URL: url ?? '', GRAFT_TOKEN: adminToken });
    expect(who.code).toBe(0);
    expect(who.stdout).toContain('platform admin');

    child.kill(signal);
    expect(await exited).toBe(0);
    expect(out).toContain(`"event":"hub.signal","service":"graft-hub","signal":"${signal}"`);
    expect(out).toContain('"event":"hub.stopped"');
  });

  it('refuses an invalid port as a usage error (exit 2)', async () => {
    const run = await runCli(['hub', 'start', '--port', 'eighty'], hubEnv());
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^graft: invalid configuration: GRAFT_HUB_PORT: [^\n]+\n$/);
  });
});
