import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { offsetFileOf, readNewMessages, waitForMessages } from './inbox-reader.js';

let dir: string;
let inbox: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'graft-inbox-'));
  inbox = join(dir, 'inbox.jsonl');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const line = (text: string) => `${JSON.stringify({ at: '2026-01-12T10:00:00.000Z', text })}\n`;

describe('inbox reader', () => {
  it('returns each message once, remembering the offset in <inbox>.offset', async () => {
    expect(await readNewMessages(inbox)).toEqual([]);
    appendFileSync(inbox, line('first') + line('second\nwith a newline'));
    expect((await readNewMessages(inbox)).map((m) => m.text)).toEqual(['first', 'second\nwith a newline']);
    expect(await readNewMessages(inbox)).toEqual([]);
    expect(Number(readFileSync(offsetFileOf(inbox), 'utf8'))).toBe(readFileSync(inbox).length);
    appendFileSync(inbox, line('third'));
    expect(await readNewMessages(inbox)).toEqual([{ at: '2026-01-12T10:00:00.000Z', text: 'third' }]);
  });

  it('leaves a line still being written for the next read', async () => {
    appendFileSync(inbox, `${line('done')}{"at":"x","te`);
    expect((await readNewMessages(inbox)).map((m) => m.text)).toEqual(['done']);
    appendFileSync(inbox, 'xt":"late"}\n');
    expect((await readNewMessages(inbox)).map((m) => m.text)).toEqual(['late']);
  });

  it('starts over when the inbox was recreated shorter than the offset', async () => {
    appendFileSync(inbox, line('a long first message that moves the offset far'));
    await readNewMessages(inbox);
    writeFileSync(inbox, line('new'));
    expect((await readNewMessages(inbox)).map((m) => m.text)).toEqual(['new']);
  });

  it('waits for a message, or gives up after the timeout', async () => {
    expect(await waitForMessages(inbox, 150, 20)).toEqual([]);
    setTimeout(() => appendFileSync(inbox, line('arrived')), 100);
    expect((await waitForMessages(inbox, 5_000, 20)).map((m) => m.text)).toEqual(['arrived']);
  });

  it('keeps its read position in a separate file when given one (a read-only inbox)', async () => {
    mkdirSync(join(dir, 'state'));
    const offsetFile = join(dir, 'state', 'inbox.offset');
    appendFileSync(inbox, line('one'));
    expect((await readNewMessages(inbox, offsetFile)).map((m) => m.text)).toEqual(['one']);
    expect(existsSync(offsetFileOf(inbox))).toBe(false);
    expect(Number(readFileSync(offsetFile, 'utf8'))).toBe(readFileSync(inbox).length);
    expect(await readNewMessages(inbox, offsetFile)).toEqual([]);
  });
});
