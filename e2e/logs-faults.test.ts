import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraftClient } from '@graft/client';
import { decodeLogChunk } from '@graft/protocol';
import { createFreshDatabase, eventually, type FreshDatabase, type HubProcess, startHubProcess } from '@graft/testkit';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { freePort } from './support/free-port.js';
import { TestBrokers } from './support/test-brokers.js';

// No log byte lost or repeated while the hub is killed and restarted and the broker is killed and
// restarted mid-transfer: a follower that reconnects with Last-Event-ID gets exactly what the agent
// wrote (sha256 per stream), and so does the archive.
/** 500,000 lines of ~100 bytes on each stream: 100 MB in all. */
const LINES = Number(process.env.GRAFT_E2E_LOG_LINES ?? 500_000);
let database: FreshDatabase;
const hubs: HubProcess[] = [];
let brokers: TestBrokers;
let env: Record<string, string>;
let hubUrl: string;
let archiveDir: string;


beforeAll(async () => {
  database = await createFreshDatabase(inject('pgAdminUrl'));
  archiveDir = mkdtempSync(join(tmpdir(), 'graft-e2e-archive-'));
  const port = await freePort();
  env = {
    GRAFT_HUB_PORT: String(port),
    GRAFT_ADMIN_TOKEN: randomBytes(32).toString('hex'),
    GRAFT_MASTER_KEY: randomBytes(32).toString('hex'),
    GRAFT_LOG_ARCHIVE_DIR: archiveDir,
  };
  hubs.push(await startHubProcess({ databaseUrl: database.url, env }));
  hubUrl = `http://127.0.0.1:${port}`;
  brokers = new TestBrokers(hubUrl, env.GRAFT_ADMIN_TOKEN ?? '');
});

afterAll(async () => {
  await brokers?.cleanup();
  for (const hub of hubs) await hub.stop('SIGKILL');
  await database?.drop();
  rmSync(archiveDir, { recursive: true, force: true });
});

/** What the agent writes: numbered lines on stdout and stderr, each ~100 bytes. */
function expectedStream(name: 'out' | 'err'): string {
  const parts: string[] = [];
  const pad = 'p'.repeat(80);
  for (let i = 1; i <= LINES; i++) parts.push(`${name} ${i} ${pad}\n`);
  return parts.join('');
}

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');

/** An SSE follower that reconnects with Last-Event-ID after every failure, until the log's `end` event. */
async function follow(agentId: string, token: string): Promise<{ stdout: Buffer[]; stderr: Buffer[]; reconnects: number; ids: number[] }> {
  const out = { stdout: [] as Buffer[], stderr: [] as Buffer[], reconnects: 0, ids: [] as number[] };
  let last = 0;
  const deadline = Date.now() + 240_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${hubUrl}/api/v1/agents/${agentId}/logs`, {
        headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...(last > 0 ? { 'last-event-id': String(last) } : {}) },
      });
      if (res.status !== 200 || !res.body) throw new Error(`status ${res.status}`);
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(piece, { stream: true });
        for (let sep = buffered.indexOf('\n\n'); sep >= 0; sep = buffered.indexOf('\n\n')) {
          const event = buffered.slice(0, sep);
          buffered = buffered.slice(sep + 2);
          if (event.startsWith('event: end')) return out;
          const id = /^id: (\d+)$/m.exec(event)?.[1];
          const data = /^data: (.*)$/m.exec(event)?.[1];
          if (!id || !data) continue;
          const chunk = JSON.parse(data) as { seq: number; stream: 'stdout' | 'stderr' | 'system'; data: string };
          out.ids.push(chunk.seq);
          last = chunk.seq;
          if (chunk.stream === 'stdout' || chunk.stream === 'stderr') out[chunk.stream].push(Buffer.from(chunk.data, 'utf8'));
        }
      }
    } catch {
      // The hub went away mid-stream: reconnect from the last event seen.
    }
    out.reconnects++;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error('follower did not see the end of the log in time');
}

it('loses and repeats no byte of 100 MB across 5 hub restarts and a broker restart: follower and archive match the producer', async () => {
  const admin = new GraftClient({ baseUrl: hubUrl, token: env.GRAFT_ADMIN_TOKEN ?? '', timeoutMs: 5_000 });
  const projectId = (await admin.registerProject({ name: 'log-faults' })).project.id;
  const node = await brokers.add('log-node', { register: { projectIds: [projectId] } });
  const pad = 'p'.repeat(80);
  const producer = `awk 'BEGIN { for (i = 1; i <= ${LINES}; i++) { print "out " i " ${pad}"; print "err " i " ${pad}" > "/dev/stderr" } }'; : ${brokers.marker}`;
  await admin.createTemplate({ name: 'producer', projectId, harness: 'command', command: ['sh', '-c', producer] });
  const agent = await admin.createAgent({ projectId, name: 'producer', template: 'producer' });
  const following = follow(agent.id, env.GRAFT_ADMIN_TOKEN ?? '');

  // Faults while the broker ships: the hub killed five times, the broker once (after the second).
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 1_200));
    await hubs.at(-1)?.stop('SIGKILL');
    hubs.push(await startHubProcess({ databaseUrl: database.url, env }));
    if (i === 1) {
      const restarted = await brokers.restart(node);
      await restarted.waitForLog((l) => l.event === 'tunnel.connected', 30_000);
    }
  }

  const got = await following;
  const outExpected = expectedStream('out');
  const errExpected = expectedStream('err');
  const stdout = Buffer.concat(got.stdout);
  const stderr = Buffer.concat(got.stderr);
  expect(stdout.length).toBe(Buffer.byteLength(outExpected));
  expect(sha(stdout)).toBe(sha(outExpected));
  expect(sha(stderr)).toBe(sha(errExpected));
  // Every sequence number once, in order.
  expect(got.ids.every((id, i) => i === 0 || id === (got.ids[i - 1] ?? 0) + 1)).toBe(true);
  expect(got.reconnects).toBeGreaterThanOrEqual(5);

  // The archive holds the same bytes.
  const dir = join(archiveDir, projectId, agent.id);
  await eventually(
    async () => {
      const a = await admin.getAgent(agent.id);
      expect(a.phase).toBe('stopped');
      const files = readdirSync(dir).filter((f) => f.endsWith('.log')).sort();
      const streams = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
      let lastSeq = 0;
      for (const f of files) {
        const data = readFileSync(join(dir, f));
        for (let pos = 0; pos < data.length; ) {
          const len = data.readUInt32BE(pos);
          const decoded = decodeLogChunk(data.subarray(pos + 4, pos + 4 + len));
          if (!decoded.ok) throw new Error(decoded.reason);
          expect(decoded.chunk.seq).toBe(lastSeq + 1);
          lastSeq = decoded.chunk.seq;
          if (decoded.chunk.stream !== 'system') streams[decoded.chunk.stream].push(decoded.chunk.data);
          pos += 4 + len;
        }
      }
      expect(sha(Buffer.concat(streams.stdout))).toBe(sha(outExpected));
      expect(sha(Buffer.concat(streams.stderr))).toBe(sha(errExpected));
    },
    { timeoutMs: 60_000 },
  );
}, 300_000);
