import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import type { Agent, BrokerRuntime } from '@graft/protocol';
import { devLogin, eventually, type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WebSocket } from 'ws';
import { type TestBroker, TestBrokers } from './support/test-brokers.js';

// Interactive terminals into running agents, relayed hub → tunnel → broker → runtime, and an agent's
// log over a WebSocket; both refused before the upgrade when the caller may not have them.
let fixture: HubFixture;
let brokers: TestBrokers;
let admin: GraftClient;

beforeAll(async () => {
  fixture = await startHubFixture(inject('pgAdminUrl'));
  brokers = new TestBrokers(fixture.hub.url, fixture.hub.adminToken);
  admin = new GraftClient({ baseUrl: fixture.hub.url, token: fixture.hub.adminToken, timeoutMs: 10_000 });
});

afterAll(async () => {
  await brokers?.cleanup();
  await fixture?.stop();
});

const wsUrl = (path: string) => `${fixture.hub.url.replace(/^http/, 'ws')}${path}`;

/** One viewer of a terminal: what it received so far, and ways to wait for output and its close. */
interface Viewer {
  ws: WebSocket;
  text(): string;
  type(input: string): void;
  resize(cols: number, rows: number): void;
  waitFor(re: RegExp, ms?: number): Promise<RegExpMatchArray>;
  closed: Promise<{ code: number; reason: string }>;
}

/** Opens a WebSocket; resolves once open, or with the HTTP refusal (status and parsed body). */
function connect(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket } | { status: number; body: { error: { code: string; message: string } } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve({ ws }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
    });
    ws.once('error', reject);
  });
}

async function attach(agentId: string, query = 'cols=100&rows=30', token: string | null = fixture.hub.adminToken): Promise<Viewer> {
  const opened = await connect(wsUrl(`/api/v1/agents/${agentId}/attach?${query}`), token ? { authorization: `Bearer ${token}` } : {});
  if (!('ws' in opened)) throw new Error(`attach refused: ${opened.status} ${JSON.stringify(opened.body)}`);
  const { ws } = opened;
  let out = '';
  ws.on('message', (data: Buffer, isBinary) => {
    if (isBinary) out += data.toString('utf8');
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
  return {
    ws,
    text: () => out,
    type: (input) => ws.send(Buffer.from(input), { binary: true }),
    resize: (cols, rows) => ws.send(JSON.stringify({ type: 'resize', cols, rows })),
    waitFor: async (re, ms = 10_000) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const m = out.match(re);
        if (m) return m;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; the terminal showed ${JSON.stringify(out.slice(-2000))}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    closed,
  };
}

const running = (id: string) =>
  eventually(
    async () => {
      const a: Agent = await admin.getAgent(id);
      expect(a.phase).toBe('running');
      return a;
    },
    { timeoutMs: 60_000 },
  );

/** Container ids running the agent on the Podman service of the run. */
function runningContainers(agentId: string): Promise<string[]> {
  const filters = encodeURIComponent(JSON.stringify({ label: [`graft.agent-id=${agentId}`], status: ['running'] }));
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath: inject('dockerSocket'), path: `/v1.41/containers/json?filters=${filters}` }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => (res.statusCode === 200 ? resolve((JSON.parse(body) as Array<{ Id: string }>).map((c) => c.Id)) : reject(new Error(`docker API ${res.statusCode}: ${body}`))));
    });
    req.once('error', reject);
    req.end();
  });
}

const RUNTIMES: BrokerRuntime[] = ['process', 'bwrap', 'docker'];

describe.each(RUNTIMES)('attach to an agent in the %s runtime', (runtime) => {
  let broker: TestBroker;
  let projectId: string;
  let agentId: string;

  /** Whether the agent's own process still runs on the node (not just what the hub believes). */
  const agentProcessRuns = async (): Promise<boolean> => {
    if (runtime === 'docker') return (await runningContainers(agentId)).length === 1;
    const pidFile = join(broker.dataDir, 'agents', runtime, agentId, 'pid');
    if (!existsSync(pidFile)) return false;
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8').trim()), 0);
      return true;
    } catch {
      return false;
    }
  };

  beforeAll(async () => {
    projectId = (await admin.registerProject({ name: `attach-${runtime}` })).project.id;
    const dockerEnv: Record<string, string> = runtime === 'docker' ? { DOCKER_HOST: `unix://${inject('dockerSocket')}`, GRAFT_BROKER_DOCKER_IMAGE: inject('testAgentImage') } : {};
    broker = await brokers.add(`attach-${runtime}`, { register: { projectIds: [projectId] }, env: { GRAFT_BROKER_RUNTIMES: runtime, ...dockerEnv } });
    await admin.createTemplate({ name: 'idle', projectId, harness: 'command', command: ['sh', '-c', `exec sleep 600 # ${brokers.marker}`], runtime, network: runtime === 'process' });
    agentId = (await admin.createAgent({ projectId, name: 'idle', template: 'idle' })).id;
    await running(agentId);
  }, 120_000);

  it('gives a real shell in the agent, resizes it, serves two viewers at once, and closing one leaves the agent running', async () => {
    const one = await attach(agentId);
    one.type('echo "v=$((6*7))"; printf \'ok-%s\\n\' "$GRAFT_AGENT_ID"; stty size; echo "pid=$$"\r');
    await one.waitFor(/v=42/);
    await one.waitFor(new RegExp(`ok-${agentId}`));
    await one.waitFor(/\b30 100\b/);
    const shellPid = (await one.waitFor(/pid=(\d+)/))[1];
    // The shell runs where the agent does: in its workspace (the container's /workspace; the host dir, at the same path inside a bwrap sandbox).
    one.type('echo "cwd=$(pwd)"\r');
    const cwd = (await one.waitFor(/cwd=(\/\S*)/))[1];
    expect(cwd).toBe(runtime === 'docker' ? '/workspace' : join(broker.dataDir, 'agents', runtime, agentId, 'workspace'));

    one.resize(132, 43);
    one.type('stty size\r');
    await one.waitFor(/\b43 132\b/);

    // A second viewer, through ?token= (as a browser would): its own shell, at its own size.
    const two = await attach(agentId, `cols=90&rows=20&token=${encodeURIComponent(fixture.hub.adminToken)}`, null);
    two.type('echo "second=$((40+2))"; stty size\r');
    await two.waitFor(/second=42/);
    await two.waitFor(/\b20 90\b/);
    expect(one.text()).not.toContain('second=42');
    one.type('echo "first-again=$((1+1))"\r');
    await one.waitFor(/first-again=2/);
    expect(two.text()).not.toContain('first-again=2');

    // Closing the first viewer ends its shell and nothing else.
    one.ws.close();
    await one.closed;
    two.type(`for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 ${shellPid} 2>/dev/null || break; sleep 0.2; done; kill -0 ${shellPid} 2>/dev/null && echo "old=alive" || echo "old=gone"\r`);
    await two.waitFor(/old=gone/);
    expect((await admin.getAgent(agentId)).phase).toBe('running');
    expect(await agentProcessRuns()).toBe(true);
    two.type('echo "still=$((2*3))"\r');
    await two.waitFor(/still=6/);

    // The shell exiting closes its viewer normally; the agent runs on.
    two.type('exit\r');
    const closed = await two.closed;
    expect(closed.code).toBe(1000);
    expect((await admin.getAgent(agentId)).phase).toBe('running');
    expect(await agentProcessRuns()).toBe(true);
  });

  it('is refused before the upgrade without rights, with the API error body', async () => {
    const url = wsUrl(`/api/v1/agents/${agentId}/attach`);
    const anonymous = await connect(url);
    expect(anonymous).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    const badToken = await connect(`${url}?token=not-a-token`);
    expect(badToken).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });

    const outsider = await devLogin(fixture.hub.url, `outsider-${runtime}@example.com`);
    expect(await connect(url, { authorization: `Bearer ${outsider.token}` })).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    const viewer = await devLogin(fixture.hub.url, `viewer-${runtime}@example.com`);
    await admin.putMember(projectId, viewer.user.id, 'viewer');
    expect(await connect(url, { authorization: `Bearer ${viewer.token}` })).toMatchObject({ status: 403, body: { error: { code: 'forbidden' } } });
    const member = await devLogin(fixture.hub.url, `member-${runtime}@example.com`);
    await admin.putMember(projectId, member.user.id, 'member');
    const allowed = await connect(url, { authorization: `Bearer ${member.token}` });
    expect('ws' in allowed).toBe(true);
    if ('ws' in allowed) allowed.ws.close();

    const unknown = await connect(wsUrl('/api/v1/agents/00000000-0000-4000-8000-000000000000/attach'), { authorization: `Bearer ${fixture.hub.adminToken}` });
    expect(unknown).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
    const elsewhere = await connect(wsUrl('/api/v1/no-such-socket'), { authorization: `Bearer ${fixture.hub.adminToken}` });
    expect(elsewhere).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });
  });
});

describe('logs over a WebSocket', () => {
  it('streams JSON chunks from ?since= to an end frame, then closes 1000; a finished agent cannot be attached to', async () => {
    const projectId = (await admin.registerProject({ name: 'attach-logs' })).project.id;
    await brokers.add('attach-logs', { register: { projectIds: [projectId] }, env: { GRAFT_BROKER_RUNTIMES: 'process' } });
    await admin.createTemplate({
      name: 'talker',
      projectId,
      harness: 'command',
      command: ['sh', '-c', `for i in 1 2 3 4 5; do echo "line-$i"; sleep 0.1; done; echo oops >&2; sleep 0.5 # ${brokers.marker}`],
    });
    const id = (await admin.createAgent({ projectId, name: 'talker', template: 'talker' })).id;

    const read = async (query: string): Promise<{ frames: Array<Record<string, unknown>>; close: { code: number; reason: string } }> => {
      const opened = await connect(wsUrl(`/api/v1/agents/${id}/logs${query}`), { authorization: `Bearer ${fixture.hub.adminToken}` });
      if (!('ws' in opened)) throw new Error(`logs refused: ${opened.status}`);
      const frames: Array<Record<string, unknown>> = [];
      opened.ws.on('message', (data: Buffer, isBinary) => {
        expect(isBinary).toBe(false);
        frames.push(JSON.parse(data.toString('utf8')) as Record<string, unknown>);
      });
      const close = await new Promise<{ code: number; reason: string }>((resolve) => opened.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })));
      return { frames, close };
    };

    // Followed live from the start (the agent is still writing), to the end.
    const all = await read('?since=0');
    expect(all.close.code).toBe(1000);
    const end = all.frames.at(-1);
    const chunks = all.frames.slice(0, -1) as Array<{ seq: number; stream: string; at: string; data: string }>;
    expect(chunks.length).toBeGreaterThan(0);
    const stdout = chunks
      .filter((c) => c.stream === 'stdout')
      .map((c) => c.data)
      .join('');
    expect(stdout).toBe('line-1\nline-2\nline-3\nline-4\nline-5\n');
    expect(chunks.some((c) => c.stream === 'stderr' && c.data.includes('oops'))).toBe(true);
    for (const c of chunks) expect(Number.isNaN(Date.parse(c.at))).toBe(false);
    const seqs = chunks.map((c) => c.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(end).toEqual({ type: 'end', lastSeq: seqs.at(-1) });

    // From the middle of a finished log: only what follows, and the same end.
    const first = seqs[0] as number;
    const later = await read(`?since=${first}`);
    expect(later.close.code).toBe(1000);
    expect(later.frames.slice(0, -1).map((c) => c.seq)).toEqual(seqs.slice(1));
    expect(later.frames.at(-1)).toEqual(end);

    // Refused before the upgrade without a token.
    expect(await connect(wsUrl(`/api/v1/agents/${id}/logs`))).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
    // The agent ended: nothing to attach to.
    expect(await connect(wsUrl(`/api/v1/agents/${id}/attach`), { authorization: `Bearer ${fixture.hub.adminToken}` })).toMatchObject({
      status: 409,
      body: { error: { code: 'conflict' } },
    });
  });
});
