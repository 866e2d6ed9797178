import { connect } from 'node:net';
import { type HubProcess, startHubProcess } from '@graft/testkit';
import { afterAll, describe, expect, it } from 'vitest';

// The hub as `npm start` runs it: embedded Postgres, no DATABASE_URL.
let hub: HubProcess | undefined;

afterAll(async () => {
  await hub?.stop('SIGKILL');
});

/** Sends a request whose body arrives in two parts, calling `between` after the first part. */
function slowRequest(port: number, token: string, between: () => void): Promise<string> {
  const body = JSON.stringify({ name: 'graceful' });
  const head = `POST /api/v1/projects/register HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(head + body.slice(0, 5));
      setTimeout(() => {
        between();
        setTimeout(() => socket.write(body.slice(5)), 300);
      }, 200);
    });
    let answer = '';
    socket.on('data', (d) => {
      answer += d.toString('utf8');
    });
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

describe('hub shutdown on embedded Postgres', () => {
  it('finishes a request that is in flight when SIGTERM arrives, then exits 0', async () => {
    hub = await startHubProcess({});
    expect(hub.logs.find((l) => l.event === 'embedded_postgres.started')).toBeDefined();
    const running = hub;
    let exitCode: Promise<number | null> | undefined;
    const answer = await slowRequest(running.port, running.adminToken, () => {
      exitCode = running.stop('SIGTERM', 20_000);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 201 /);
    expect(answer).toContain('"created":true');
    expect(await exitCode).toBe(0);
    const events = running.logs.map((l) => l.event);
    expect(events).toContain('hub.stopped');
    expect(events.indexOf('hub.signal')).toBeLessThan(events.indexOf('hub.stopped'));
  });
});
