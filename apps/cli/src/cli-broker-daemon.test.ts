import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import { type HubFixture, registerAndJoinBroker, startHubFixture, writeTestBrokerCredentials, waitUntil } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { CLI_MAIN, runCli, tempConfigDir, tempDir } from './test-support/run-cli.js';

let fx: HubFixture;
let admin: GraftClient;
let adminEnv: Record<string, string>;
const dirs: string[] = [];
const graft = (...args: string[]) => runCli(args, adminEnv);


/** `graft broker start` as a long-running child; resolves with its exit code and output when it ends. */
function startDaemon(args: string[]): { child: ChildProcess; ended: Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [CLI_MAIN, 'broker', 'start', ...args], {
    env: { HOME: tmpdir(), PATH: process.env.PATH ?? '/usr/bin:/bin', GRAFT_BROKER_BACKOFF_BASE_MS: '100', GRAFT_BROKER_BACKOFF_MAX_MS: '500' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString('utf8');
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  const ended = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  return { child, ended };
}

function killAgents(dataDir: string): void {
  const root = join(dataDir, 'agents');
  let ids: string[] = [];
  try {
    ids = readdirSync(root);
  } catch {
    return;
  }
  for (const id of ids) {
    try {
      process.kill(-Number(readFileSync(join(root, id, 'pid'), 'utf8').trim()), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'), { env: { GRAFT_BROKER_HEARTBEAT_MS: '500' } });
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  adminEnv = { GRAFT_CONFIG_DIR: tempConfigDir() };
  const login = await runCli(['login', '--hub', fx.hub.url, '--token', fx.hub.adminToken], adminEnv);
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
}, 60_000);

afterAll(async () => {
  for (const d of dirs) {
    killAgents(d);
    rmSync(d, { recursive: true, force: true });
  }
  await fx?.stop();
});

describe('graft broker start', () => {
  it('without credentials says to join first (exit 1); a bad flag is a usage error (exit 2)', async () => {
    const empty = tempDir('graft-daemon-');
    dirs.push(empty);
    const missing = await graft('broker', 'start', '--data-dir', empty, '--port', '0');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/credentials\.json does not exist: join the broker first/);
    const badPort = await graft('broker', 'start', '--data-dir', empty, '--port', '99999');
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toMatch(/GRAFT_BROKER_PORT/);
  });

  it('runs the daemon from the credentials: online, runs agents, drain/undrain, stops on SIGTERM, exits when deleted', async () => {
    const dataDir = tempDir('graft-daemon-');
    dirs.push(dataDir);
    const joined = await registerAndJoinBroker(fx.hub.url, fx.hub.adminToken, { name: 'daemon-1', autoProvide: true });
    writeTestBrokerCredentials(dataDir, joined);
    const first = startDaemon(['--data-dir', dataDir, '--port', '0', '--max-agents', '3']);
    await waitUntil(async () => (await admin.getBroker(joined.brokerId)).status === 'online');
    expect((await admin.getBroker(joined.brokerId)).capacity.maxAgents).toBe(3);

    const project = (await admin.registerProject({ name: 'daemon' })).project;
    await admin.createTemplate({ name: 'sleeper', projectId: project.id, harness: 'command', command: ['sleep', '60'] });
    const agent = await admin.createAgent({ projectId: project.id, name: 'a1', template: 'sleeper' });
    expect(agent.brokerId).toBe(joined.brokerId);
    await waitUntil(async () => (await admin.getAgent(agent.id)).phase === 'running');

    const drained = await graft('broker', 'drain', joined.brokerId);
    expect(drained.stdout).toBe(`Broker daemon-1 (${joined.brokerId}) is draining; 1 agent(s) keep running there.\n`);
    const waiting = await admin.createAgent({ projectId: project.id, name: 'a2', template: 'sleeper' });
    expect(waiting.pendingReason).toBe('draining');
    expect((await graft('broker', 'undrain', joined.brokerId)).stdout).toMatch(/is online\.$/m);
    await waitUntil(async () => (await admin.getAgent(waiting.id)).phase === 'running');

    first.child.kill('SIGTERM');
    const stopped = await first.ended;
    expect(stopped.code).toBe(0);
    await waitUntil(async () => (await admin.getBroker(joined.brokerId)).status === 'offline');
    // The agents outlived the daemon; a new start adopts them and the hub sees them running again.
    const second = startDaemon(['--data-dir', dataDir, '--port', '0']);
    await waitUntil(async () => (await admin.getBroker(joined.brokerId)).status === 'online');
    await waitUntil(async () => (await admin.getAgent(agent.id)).activity === 'idle');

    const rotated = await graft('broker', 'rotate-secret', joined.brokerId);
    expect(rotated.stdout).toMatch(/^New secret for broker .*\n\n {2}[A-Za-z0-9_-]{43}\n/);
    expect((await graft('broker', 'rm', joined.brokerId)).stdout).toBe(`Deleted broker ${joined.brokerId}.\n`);
    const revoked = await second.ended;
    expect(revoked.code).toBe(1);
    expect(revoked.stderr).toMatch(/the hub revoked this broker/);
  }, 60_000);
});
