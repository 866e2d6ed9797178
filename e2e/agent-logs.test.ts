import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import { type Agent, decodeLogChunk } from '@graft/protocol';
import { eventually, type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TestBrokers } from './support/test-brokers.js';

// Agents' output from the runtime's files through the broker's spool and the tunnel into the hub,
// read back as text, per stream, as a tail, followed live and over SSE.
let fixture: HubFixture;
let brokers: TestBrokers;
let admin: GraftClient;
let projectId: string;
const SECRET = 's3cr3t-Value-9f2c';

beforeAll(async () => {
  fixture = await startHubFixture(inject('pgAdminUrl'));
  brokers = new TestBrokers(fixture.hub.url, fixture.hub.adminToken);
  admin = new GraftClient({ baseUrl: fixture.hub.url, token: fixture.hub.adminToken, timeoutMs: 10_000 });
  projectId = (await admin.registerProject({ name: 'logs' })).project.id;
  await admin.putSecret(projectId, 'API_TOKEN', SECRET);
  await brokers.add('logs-node', { register: { projectIds: [projectId] } });
});

afterAll(async () => {
  await brokers?.cleanup();
  await fixture?.stop();
});

/** The stdout bytes of an archive object (length-prefixed tunnel frames), decoded independently of the hub's code. */
function decodeArchiveFile(data: Buffer): string {
  let out = '';
  for (let pos = 0; pos < data.length; ) {
    const len = data.readUInt32BE(pos);
    const decoded = decodeLogChunk(data.subarray(pos + 4, pos + 4 + len));
    if (!decoded.ok) throw new Error(decoded.reason);
    if (decoded.chunk.stream === 'stdout') out += decoded.chunk.data.toString('utf8');
    pos += 4 + len;
  }
  return out;
}

async function logs(id: string, query = '', headers: Record<string, string> = {}): Promise<{ status: number; text: string; type: string | null }> {
  const res = await fetch(`${fixture.hub.url}/api/v1/agents/${id}/logs${query}`, { headers: { authorization: `Bearer ${fixture.hub.adminToken}`, ...headers } });
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
}

const finished = (id: string) =>
  eventually(
    async () => {
      const a: Agent = await admin.getAgent(id);
      expect(['stopped', 'error']).toContain(a.phase);
      return a;
    },
    { timeoutMs: 30_000 },
  );

describe('agent logs', () => {
  it('keeps stdout and stderr apart, in order, with the project secrets redacted before they leave the node', async () => {
    const script = [
      'for i in $(seq 1 300); do echo "out $i"; done',
      'echo "err 1" >&2',
      'echo "token is $API_TOKEN"',
      'printf "%s" "$API_TOKEN" | base64',
      'echo "err 2 $API_TOKEN" >&2',
      `: ${brokers.marker}`,
    ].join('; ');
    await admin.createTemplate({ name: 'talker', projectId, harness: 'command', command: ['sh', '-c', script] });
    const a = await admin.createAgent({ projectId, name: 'talker', template: 'talker' });
    await finished(a.id);
    const expectedOut = `${Array.from({ length: 300 }, (_, i) => `out ${i + 1}`).join('\n')}\ntoken is [REDACTED:API_TOKEN]\n[REDACTED:API_TOKEN]\n`;
    const stdout = await eventually(
      async () => {
        const r = await logs(a.id, '?stream=stdout');
        expect(r.text).toBe(expectedOut);
        return r;
      },
      { timeoutMs: 10_000 },
    );
    expect(stdout.type).toContain('text/plain');
    expect((await logs(a.id, '?stream=stderr')).text).toBe('err 1\nerr 2 [REDACTED:API_TOKEN]\n');
    const all = await logs(a.id);
    expect(all.text).not.toContain(SECRET);
    expect(all.text.length).toBe(expectedOut.length + 'err 1\nerr 2 [REDACTED:API_TOKEN]\n'.length);
    expect((await logs(a.id, '?stream=stdout&tail=2')).text).toBe('token is [REDACTED:API_TOKEN]\n[REDACTED:API_TOKEN]\n');
    expect((await logs(a.id, '?tail=0')).text).toBe('');
    // A follower of a finished agent gets everything and the response ends.
    expect((await logs(a.id, '?stream=stdout&follow=1')).text).toBe(expectedOut);
  });

  it('streams live output with follow=1 and ends when the agent finishes', async () => {
    await admin.createTemplate({ name: 'ticker', projectId, harness: 'command', command: ['sh', '-c', `for i in 1 2 3 4 5; do echo "tick $i"; sleep 0.3; done; : ${brokers.marker}`] });
    const a = await admin.createAgent({ projectId, name: 'ticker', template: 'ticker' });
    const started = Date.now();
    const r = await logs(a.id, '?follow=1');
    expect(r.text).toBe('tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n');
    // It was open while the agent ran (about 1.5 s), not answered at once.
    expect(Date.now() - started).toBeGreaterThan(1_000);
  });

  it('speaks SSE with the sequence number as event id, and resumes after Last-Event-ID without gaps or repeats', async () => {
    await admin.createTemplate({ name: 'counter', projectId, harness: 'command', command: ['sh', '-c', `for i in $(seq 1 50); do echo "n $i"; sleep 0.01; done; : ${brokers.marker}`] });
    const a = await admin.createAgent({ projectId, name: 'counter', template: 'counter' });
    await finished(a.id);
    const first = await logs(a.id, '', { accept: 'text/event-stream' });
    expect(first.type).toContain('text/event-stream');
    const events = first.text.split('\n\n').filter((e) => e.startsWith('id: '));
    const parsed = events.map((e) => {
      const id = Number(/^id: (\d+)/.exec(e)?.[1]);
      const data = JSON.parse(/\ndata: (.*)$/m.exec(e)?.[1] ?? '{}') as { seq: number; data: string; stream: string };
      return { id, ...data };
    });
    expect(parsed.every((p) => p.id === p.seq)).toBe(true);
    expect(parsed.map((p) => p.data).join('')).toBe(`${Array.from({ length: 50 }, (_, i) => `n ${i + 1}`).join('\n')}\n`);
    expect(first.text).toContain('event: end');
    // Resume from the middle: exactly the rest.
    const middle = parsed[Math.floor(parsed.length / 2)];
    const rest = await logs(a.id, '', { accept: 'text/event-stream', 'last-event-id': String(middle?.id) });
    const restData = rest.text
      .split('\n\n')
      .filter((e) => e.startsWith('id: '))
      .map((e) => (JSON.parse(/\ndata: (.*)$/m.exec(e)?.[1] ?? '{}') as { data: string }).data)
      .join('');
    expect(restData).toBe(parsed.filter((p) => p.id > (middle?.id ?? 0)).map((p) => p.data).join(''));
  });

  it('archives a finished agent\'s log (byte-identical), serves it from the archive, and keeps it readable after the agent is deleted', async () => {
    // About 7 MB: more than one archive batch (4 MiB each), so reads must go from batch to batch.
    const lines = Array.from({ length: 200_000 }, (_, i) => `line ${i + 1} ${'x'.repeat(i % 50)}`);
    await admin.createTemplate({ name: 'bulk', projectId, harness: 'command', command: ['sh', '-c', `awk 'BEGIN { for (i = 1; i <= 200000; i++) { s = ""; for (j = 0; j < (i - 1) % 50; j++) s = s "x"; print "line " i " " s } }'; : ${brokers.marker}`] });
    const a = await admin.createAgent({ projectId, name: 'bulk', template: 'bulk' });
    await finished(a.id);
    const expected = `${lines.join('\n')}\n`;
    const sha = (t: string) => createHash('sha256').update(t).digest('hex');
    const archiveDir = join(fixture.hub.dataDir, 'log-archive', projectId, a.id);
    // The archiver moves the closed log out of Postgres within a few sweeps.
    await eventually(() => expect(existsSync(archiveDir) && readdirSync(archiveDir).some((f) => f.endsWith('.log'))).toBe(true), { timeoutMs: 20_000 });
    await eventually(async () => expect(readdirSync(archiveDir).filter((f) => f.endsWith('.log')).length).toBeGreaterThanOrEqual(2), { timeoutMs: 20_000 });
    const archived = readdirSync(archiveDir)
      .sort()
      .map((f) => decodeArchiveFile(readFileSync(join(archiveDir, f))))
      .join('');
    expect(sha(archived)).toBe(sha(expected));
    const served = await logs(a.id, '?stream=stdout');
    expect(sha(served.text)).toBe(sha(expected));
    expect((await logs(a.id, '?tail=1')).text).toBe(`${lines.at(-1)}\n`);
    await admin.deleteAgent(a.id);
    await eventually(async () => expect((await admin.listAgents({ projectId })).items.map((x) => x.id)).not.toContain(a.id), { timeoutMs: 15_000 });
    expect(sha((await logs(a.id)).text)).toBe(sha(expected));
  });

  it('lets an agent read its own log only, and nobody without a token', async () => {
    const [a, b] = (await admin.listAgents({ projectId })).items;
    if (!a || !b) throw new Error('two agents expected');
    const anonymous = await fetch(`${fixture.hub.url}/api/v1/agents/${a.id}/logs`);
    expect(anonymous.status).toBe(401);
    const { token } = await admin.mintAgentToken(a.id);
    const own = await fetch(`${fixture.hub.url}/api/v1/agents/${a.id}/logs`, { headers: { authorization: `Bearer ${token}` } });
    expect(own.status).toBe(200);
    expect((await own.text()).length).toBeGreaterThan(0);
    const other = await fetch(`${fixture.hub.url}/api/v1/agents/${b.id}/logs`, { headers: { authorization: `Bearer ${token}` } });
    expect(other.status).toBe(403);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe('forbidden');
  });
});
