import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

describe('createLogger', () => {
  it('writes one JSON event per call with base and child fields', () => {
    const lines: string[] = [];
    const log = createLogger({ sink: (l) => lines.push(l) }).child({ component: 'http' });
    log.info('request.done', { requestId: 'r1', status: 200 });
    expect(lines).toHaveLength(1);
    const rec = JSON.parse(lines[0] ?? '');
    expect(rec).toMatchObject({ level: 'info', event: 'request.done', component: 'http', requestId: 'r1', status: 200 });
    expect(typeof rec.ts).toBe('string');
  });

  it('drops events below the level and serialises errors', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'warn', sink: (l) => lines.push(l) });
    log.info('ignored');
    log.error('failed', { err: new Error('boom') });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '').err.message).toBe('boom');
  });
});
