import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, hostname, } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import type { Broker, Page, RegisterBrokerResponse } from '@graft/protocol';
import { type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { BrokerCredentials } from './broker-credentials.js';
import { splitCommand } from './parse/split-command.js';
import { ERROR_LINE, jsonOf, runCli, tempConfigDir, tempDir } from './test-support/run-cli.js';

let fx: HubFixture;
/** Logged in as the platform admin. */
let adminEnv: Record<string, string>;
const graft = (...args: string[]) => runCli(args, adminEnv);

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  adminEnv = { GRAFT_CONFIG_DIR: tempConfigDir() };
  const login = await runCli(['login', '--hub', fx.hub.url, '--token', fx.hub.adminToken], adminEnv);
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
});
afterAll(async () => {
  await fx?.stop();
});

/** The `graft broker join ...` line register printed, as argv without the leading `graft`. */
function printedJoinArgs(stdout: string): string[] {
  const line = stdout.split('\n').find((l) => l.trim().startsWith('graft broker join '));
  if (line === undefined) throw new Error(`no join command in:\n${stdout}`);
  const [program, ...args] = splitCommand(line.trim());
  expect(program).toBe('graft');
  return args;
}

const tempDataDir = () => join(tempDir('graft-broker-test-'), 'data');

function tableOf(stdout: string): { header: string[]; rows: string[][] } {
  const [head = '', ...rest] = stdout.trimEnd().split('\n');
  const cells = (line: string) => line.trim().split(/ {2,}/);
  return { header: cells(head), rows: rest.map(cells) };
}

describe('graft broker', () => {
  let brokerId: string;
  let joinArgs: string[];
  let dataDir: string;

  it('register prints the broker id, expiry and the exact join command with a secrecy warning', async () => {
    const project = await new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken }).registerProject({ name: 'web' });
    const run = await graft('broker', 'register', '--name', 'node-1', '--label', 'zone=eu', '--project', 'web');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const id = /^Registered broker node-1 \(([0-9a-f-]{36})\)\.$/m.exec(run.stdout)?.[1];
    expect(id).toBeDefined();
    brokerId = id as string;
    expect(run.stdout).toMatch(/expires at \d{4}-\d\d-\d\dT[\d:.]+Z \(in \d+[mh]\)/);
    expect(run.stdout).toMatch(/secret and works only once/);
    joinArgs = printedJoinArgs(run.stdout);
    expect(joinArgs.slice(0, 6)).toEqual(['broker', 'join', '--hub', fx.hub.url, '--broker-id', brokerId]);
    expect(joinArgs[6]).toBe('--token');
    expect(joinArgs[7]).toMatch(/^gjt_[A-Za-z0-9_-]{43}$/);
    expect(joinArgs).toHaveLength(8);

    const shown = jsonOf<Broker>(await graft('broker', 'show', brokerId, '--json'));
    expect(shown.labels).toEqual({ zone: 'eu' });
    expect(shown.projectIds).toEqual([project.project.id]);
    expect(shown.joined).toBe(false);
  });

  it('the printed command, run as is on the node, joins and writes a private credentials file', async () => {
    dataDir = tempDataDir();
    // No GRAFT_CONFIG_DIR with credentials: the join must not need a logged-in user.
    const run = await runCli([...joinArgs, '--data-dir', dataDir, '--hostname', 'node-1.example', '--runtimes', 'process,bwrap', '--max-agents', '12'], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const file = join(dataDir, 'credentials.json');
    expect(run.stdout).toContain(`Credentials written to ${file}`);
    expect(run.stdout).toContain(`graft broker start --data-dir ${dataDir}`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    const creds = JSON.parse(readFileSync(file, 'utf8')) as BrokerCredentials;
    expect(creds.brokerId).toBe(brokerId);
    expect(creds.hubUrl).toBe(fx.hub.url);
    expect(creds.secretKey).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Date.now() - Date.parse(creds.joinedAt)).toBeLessThan(60_000);
    expect(Object.keys(creds).sort()).toEqual(['brokerId', 'hubUrl', 'joinedAt', 'secretKey']);
  });

  it('the same command again fails: the token was used (even with --force, which only lifts the local check)', async () => {
    const again = await runCli([...joinArgs, '--data-dir', tempDataDir()], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr).toMatch(ERROR_LINE);
    expect(again.stderr).toContain('already used');
    expect(again.stderr).toContain('code join_token_consumed');

    const before = readFileSync(join(dataDir, 'credentials.json'), 'utf8');
    const forced = await runCli([...joinArgs, '--data-dir', dataDir, '--force'], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(forced.code).toBe(1);
    expect(forced.stderr).toContain('already used');
    // The hub refused, so the existing secret is untouched.
    expect(readFileSync(join(dataDir, 'credentials.json'), 'utf8')).toBe(before);
  });

  it('an existing credentials file is refused without --force before the hub is asked (the token stays usable)', async () => {
    const reg = jsonOf<RegisterBrokerResponse>(await graft('broker', 'register', '--name', 'node-2', '--json'));
    expect(reg.joinToken).toMatch(/^gjt_/);
    const dir = tempDataDir();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'credentials.json'), '{"old":true}\n');
    const args = ['broker', 'join', '--hub', fx.hub.url, '--broker-id', reg.brokerId, '--token', reg.joinToken, '--data-dir', dir];
    const refused = await runCli(args, { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(ERROR_LINE);
    expect(refused.stderr).toContain('already exists');
    expect(refused.stderr).toContain('--force');
    expect(readFileSync(join(dir, 'credentials.json'), 'utf8')).toBe('{"old":true}\n');
    expect(jsonOf<Broker>(await graft('broker', 'show', reg.brokerId, '--json')).joined).toBe(false);

    // With --force the same token still works, so the refusal cannot have consumed it.
    const forced = await runCli([...args, '--force'], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(forced.stderr).toBe('');
    expect(forced.code).toBe(0);
    const creds = JSON.parse(readFileSync(join(dir, 'credentials.json'), 'utf8')) as BrokerCredentials;
    expect(creds.brokerId).toBe(reg.brokerId);
    expect(statSync(join(dir, 'credentials.json')).mode & 0o777).toBe(0o600);
  });

  it('join maps unknown broker ids and wrong tokens to their own messages', async () => {
    const reg = jsonOf<RegisterBrokerResponse>(await graft('broker', 'register', '--name', 'node-3', '--json'));
    const base = ['broker', 'join', '--hub', fx.hub.url, '--data-dir', tempDataDir()];
    const unknown = await runCli([...base, '--broker-id', '00000000-0000-7000-8000-000000000000', '--token', reg.joinToken], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^graft: unknown broker id; .* \(code not_found, request [^)]+\)\n$/);
    const wrong = await runCli([...base, '--broker-id', reg.brokerId, '--token', 'gjt_wrong'], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^graft: this token does not belong to this broker id; .* \(code join_token_invalid, request [^)]+\)\n$/);
  });

  it('ls shows the joined broker with hostname, runtimes and capacity; --json the raw page', async () => {
    const run = await graft('broker', 'ls');
    expect(run.code).toBe(0);
    const { header, rows } = tableOf(run.stdout);
    expect(header).toEqual(['ID', 'NAME', 'STATUS', 'JOINED', 'HOSTNAME', 'RUNTIMES', 'CAPACITY', 'LOAD', 'LAST HEARTBEAT']);
    expect(rows.find((r) => r[0] === brokerId)).toEqual([brokerId, 'node-1', 'offline', 'yes', 'node-1.example', 'process,bwrap', '12', '0', 'never']);
    expect(rows.find((r) => r[1] === 'node-3')?.slice(2, 5)).toEqual(['offline', 'no', '-']);

    const page = jsonOf<Page<Broker>>(await graft('broker', 'ls', '--json', '--limit', '1'));
    expect(page.items).toHaveLength(1);
    expect(page.nextCursor).toEqual(expect.any(String));
    const next = jsonOf<Page<Broker>>(await graft('broker', 'ls', '--json', '--cursor', page.nextCursor as string));
    expect(next.items.map((b) => b.id)).not.toContain(page.items[0]?.id);
    expect(next.items.length + 1).toBe(3);
  });

  it('show prints the broker in full; --json the hub\'s object', async () => {
    const run = await graft('broker', 'show', brokerId);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(new RegExp(`^ID: +${brokerId}$`, 'm'));
    expect(run.stdout).toMatch(/^Hostname: +node-1\.example$/m);
    expect(run.stdout).toMatch(/^Runtimes: +process,bwrap$/m);
    expect(run.stdout).toMatch(/^Capacity: +12 agents$/m);
    expect(run.stdout).toMatch(/^Version: +\d+\.\d+\.\d+/m);
    const b = jsonOf<Broker>(await graft('broker', 'show', brokerId, '--json'));
    expect(b).toMatchObject({ id: brokerId, joined: true, hostname: 'node-1.example', runtimes: ['process', 'bwrap'], capacity: { maxAgents: 12 } });
  });

  it('join takes its data dir from GRAFT_BROKER_DATA_DIR when --data-dir is absent', async () => {
    const reg = jsonOf<RegisterBrokerResponse>(await graft('broker', 'register', '--name', 'node-4', '--json'));
    const dir = tempDataDir();
    const run = await runCli(['broker', 'join', '--hub', fx.hub.url, '--broker-id', reg.brokerId, '--token', reg.joinToken], {
      GRAFT_CONFIG_DIR: tempConfigDir(),
      GRAFT_BROKER_DATA_DIR: dir,
    });
    expect(run.code).toBe(0);
    expect((JSON.parse(readFileSync(join(dir, 'credentials.json'), 'utf8')) as BrokerCredentials).brokerId).toBe(reg.brokerId);
    // Defaults: this machine's hostname, the process runtime, a positive capacity.
    const b = jsonOf<Broker>(await graft('broker', 'show', reg.brokerId, '--json'));
    expect(b.hostname).toBe(hostname());
    expect(b.runtimes).toEqual(['process']);
    expect(b.capacity.maxAgents).toBe(availableParallelism() * 4);
  });

  it('a non-admin user cannot register a broker (exit 1, forbidden)', async () => {
    const { token } = await new GraftClient({ baseUrl: fx.hub.url }).devLogin('not-admin@example.com');
    const run = await runCli(['broker', 'register', '--name', 'sneaky', '--hub', fx.hub.url, '--token', token], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(ERROR_LINE);
    expect(run.stderr).toContain('code forbidden');
  });

  it('join rejects an unknown runtime as a usage error (exit 2) without calling the hub', async () => {
    const run = await runCli(['broker', 'join', '--hub', fx.hub.url, '--broker-id', brokerId, '--token', 'x', '--runtimes', 'process,vm'], { GRAFT_CONFIG_DIR: tempConfigDir() });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('unknown runtime "vm"');
  });

  it('--help works for each subcommand and shows an example', async () => {
    const subs = ['register', 'join', 'ls', 'show'];
    const runs = await Promise.all(subs.map((s) => runCli(['broker', s, '--help'], { GRAFT_CONFIG_DIR: tempConfigDir() })));
    runs.forEach((run, i) => {
      expect(run.code).toBe(0);
      expect(run.stdout).toContain(`Usage: graft broker ${subs[i]}`);
      expect(run.stdout).toMatch(new RegExp(`Example:\\n  \\$ graft broker ${subs[i]} `));
    });
    expect(runs[1]?.stdout).toContain('--broker-id <id>');
    expect(runs[1]?.stdout).toContain('GRAFT_BROKER_DATA_DIR');
  });
});
