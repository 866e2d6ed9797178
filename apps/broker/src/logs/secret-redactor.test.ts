import { describe, expect, it } from 'vitest';
import { type Secret, SecretRedactor } from './secret-redactor.js';

/** mulberry32: a seeded PRNG so that every run checks the same corpus. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type FormKind = 'raw' | 'base64' | 'base64-nopad' | 'base64url' | 'base64url-pad' | 'base64-wrapped' | 'json';

const formCache = new Map<string, { kind: FormKind; bytes: Buffer }[]>();

/** The forms the redactor promises to recognise, written from the spec rather than from the implementation. */
function formsOf(value: string): { kind: FormKind; bytes: Buffer }[] {
  let forms = formCache.get(value);
  if (forms === undefined) {
    forms = computeForms(value);
    formCache.set(value, forms);
  }
  return forms;
}

function computeForms(value: string): { kind: FormKind; bytes: Buffer }[] {
  const raw = Buffer.from(value, 'utf8');
  const b64 = raw.toString('base64');
  const unpadded = b64.split('=')[0] as string;
  const url = unpadded.replaceAll('+', '-').replaceAll('/', '_');
  return [
    { kind: 'raw', bytes: raw },
    { kind: 'base64', bytes: Buffer.from(b64) },
    { kind: 'base64-nopad', bytes: Buffer.from(unpadded) },
    { kind: 'base64url', bytes: Buffer.from(url) },
    { kind: 'base64url-pad', bytes: Buffer.from(url + b64.slice(unpadded.length)) },
    { kind: 'base64-wrapped', bytes: Buffer.from((b64.match(/.{1,76}/g) ?? []).join('\n')) },
    { kind: 'json', bytes: Buffer.from(JSON.stringify(value).slice(1, -1)) },
  ];
}

interface Redaction {
  start: number;
  end: number;
  secret: number;
}

/**
 * Obviously-correct, non-streaming reference: find every occurrence of every form, then walk the
 * input left to right taking, at each position, the longest form starting there (first-listed
 * secret on ties) and skipping past it.
 */
function reference(secrets: readonly Secret[], input: Buffer): { output: Buffer; redactions: Redaction[] } {
  const best = new Map<number, { len: number; secret: number }>();
  secrets.forEach((secret, index) => {
    if (Buffer.byteLength(secret.value) < 4) return;
    for (const { bytes } of formsOf(secret.value)) {
      for (let at = input.indexOf(bytes); at >= 0; at = input.indexOf(bytes, at + 1)) {
        const seen = best.get(at);
        if (seen === undefined || bytes.length > seen.len) best.set(at, { len: bytes.length, secret: index });
      }
    }
  });
  const parts: Buffer[] = [];
  const redactions: Redaction[] = [];
  let kept = 0;
  let pos = 0;
  while (pos < input.length) {
    const hit = best.get(pos);
    if (hit === undefined) {
      pos++;
      continue;
    }
    parts.push(input.subarray(kept, pos), Buffer.from(`[REDACTED:${(secrets[hit.secret] as Secret).name}]`));
    redactions.push({ start: pos, end: pos + hit.len, secret: hit.secret });
    pos += hit.len;
    kept = pos;
  }
  parts.push(input.subarray(kept));
  return { output: Buffer.concat(parts), redactions };
}

/** Feeds `chunks` into `r` and returns everything it emitted, checking the hold-back bound after each push. */
function stream(r: SecretRedactor, chunks: readonly Buffer[], maxPending: number): { out: Buffer; pendingOk: boolean } {
  const outs: Buffer[] = [];
  let pendingOk = true;
  for (const c of chunks) {
    outs.push(Buffer.from(r.push(c)));
    if (r.pending > maxPending) pendingOk = false;
  }
  outs.push(r.flush());
  if (r.pending !== 0) pendingOk = false;
  return { out: Buffer.concat(outs), pendingOk };
}

function splitAt(input: Buffer, cuts: readonly number[]): Buffer[] {
  const sorted = [...cuts].sort((x, y) => x - y);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of sorted) {
    chunks.push(input.subarray(from, cut));
    from = cut;
  }
  chunks.push(input.subarray(from));
  return chunks;
}

function longestForm(secrets: readonly Secret[]): number {
  let longest = 0;
  for (const s of secrets) {
    if (Buffer.byteLength(s.value) < 4) continue;
    for (const f of formsOf(s.value)) longest = Math.max(longest, f.bytes.length);
  }
  return longest;
}

/** Redacts `input` delivered in one piece and at every single split offset; all must agree. */
function redactAllSplits(secrets: readonly Secret[], input: Buffer): Buffer[] {
  const r = new SecretRedactor(secrets);
  const results: Buffer[] = [];
  for (let cut = 0; cut <= input.length; cut++) {
    results.push(stream(r, [input.subarray(0, cut), input.subarray(cut)], Number.POSITIVE_INFINITY).out);
  }
  return results;
}

const TOKEN = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');
const MULTILINE = `${TOKEN}+/=\n\n\r\t "\\`;
const UNICODE = ['é', 'ß', 'Ω', '日', '本', '🔑', '\u0001', '\u2028', '"', '\\', '\n', 'a', 'b', 'Z', '0', ' '];
const WORDS = ['INFO', 'ERROR', 'GET', '/api/v1/items', 'took', '12ms', 'status=200', '{"level":"info","msg":"', '"}', 'token=', 'user', 'retry', 'Zm9v', 'eyJhbGciOi'];

function secretValue(rand: () => number): string {
  const len = 4 + Math.floor(rand() * 97);
  const kind = Math.floor(rand() * 4);
  const chars = kind === 0 ? TOKEN : kind === 1 ? PRINTABLE : kind === 2 ? MULTILINE : undefined;
  let value = '';
  for (let i = 0; i < len; i++) {
    value += chars === undefined ? (UNICODE[Math.floor(rand() * UNICODE.length)] as string) : chars[Math.floor(rand() * chars.length)];
  }
  return value;
}

/** 1-4 secrets; sometimes one is a substring of another, shares its prefix, or is too short to mask. */
function secretSet(rand: () => number, setNo: number): Secret[] {
  const secrets: Secret[] = [];
  const count = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < count; k++) {
    const other = secrets[Math.floor(rand() * secrets.length)]?.value;
    const roll = rand();
    let value: string;
    if (other !== undefined && other.length >= 8 && roll < 0.15) {
      const from = Math.floor(rand() * (other.length - 4));
      value = other.slice(from, from + 4 + Math.floor(rand() * (other.length - from - 4)));
    } else if (other !== undefined && other.length >= 6 && roll < 0.3) {
      value = other.slice(0, 3 + Math.floor(rand() * (other.length - 3))) + secretValue(rand);
    } else if (roll > 0.94) {
      value = secretValue(rand).slice(0, 1 + Math.floor(rand() * 3));
    } else {
      value = secretValue(rand);
    }
    secrets.push({ name: `S${setNo}_${k}`, value });
  }
  return secrets;
}

interface GeneratedCase {
  input: Buffer;
  planted: FormKind[];
}

function generateCase(rand: () => number, secrets: readonly Secret[]): GeneratedCase {
  const parts: Buffer[] = [];
  const planted: FormKind[] = [];
  const pieces = 1 + Math.floor(rand() * 8);
  for (let p = 0; p < pieces; p++) {
    const secret = secrets[Math.floor(rand() * secrets.length)] as Secret;
    const forms = formsOf(secret.value);
    const form = forms[Math.floor(rand() * forms.length)] as { kind: FormKind; bytes: Buffer };
    const roll = rand();
    if (roll < 0.35) {
      parts.push(form.bytes);
      planted.push(form.kind);
    } else if (roll < 0.5) {
      // Near miss: a proper prefix, suffix or inner substring, or the form with one byte changed.
      const b = form.bytes;
      const cut = 1 + Math.floor(rand() * Math.max(1, b.length - 1));
      const mode = Math.floor(rand() * 4);
      if (mode === 0) parts.push(b.subarray(0, cut));
      else if (mode === 1) parts.push(b.subarray(cut));
      else if (mode === 2) parts.push(b.subarray(Math.floor(cut / 2), cut));
      else {
        const changed = Buffer.from(b);
        changed[cut - 1] = ((changed[cut - 1] as number) + 1) & 0xff;
        parts.push(changed);
      }
    } else if (roll < 0.6) {
      parts.push(Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 24) }, () => Math.floor(rand() * 256))));
    } else {
      let text = '';
      const words = 1 + Math.floor(rand() * 8);
      for (let w = 0; w < words; w++) {
        text += rand() < 0.7 ? WORDS[Math.floor(rand() * WORDS.length)] : TOKEN.slice(Math.floor(rand() * 60)).slice(0, 1 + Math.floor(rand() * 6));
        text += rand() < 0.15 ? '\n' : rand() < 0.1 ? '' : ' ';
      }
      if (rand() < 0.1) text += 'héllo wörld 日本 🔑 ';
      parts.push(Buffer.from(text));
    }
  }
  return { input: Buffer.concat(parts), planted };
}

describe('SecretRedactor', () => {
  it('masks every form of a secret in a generated corpus, however the stream is split, exactly like a whole-input reference', () => {
    const rand = prng(0x5ec7e7);
    const SETS = 2_000;
    const CASES_PER_SET = 5;
    const failures: string[] = [];
    const plantedKinds = new Map<FormKind, number>();
    let cases = 0;
    let variants = 0;
    let redactions = 0;
    let straddles = 0;
    for (let set = 0; set < SETS; set++) {
      const secrets = secretSet(rand, set);
      const r = new SecretRedactor(secrets);
      const longest = longestForm(secrets);
      const active = secrets.filter((s) => Buffer.byteLength(s.value) >= 4);
      if (r.longestPattern !== longest) failures.push(`set ${set}: longestPattern ${r.longestPattern} != ${longest}`);
      for (let c = 0; c < CASES_PER_SET; c++) {
        const { input, planted } = generateCase(rand, secrets);
        cases++;
        for (const kind of planted) plantedKinds.set(kind, (plantedKinds.get(kind) ?? 0) + 1);
        const expected = reference(secrets, input);
        redactions += expected.redactions.length;

        // Outside the redactions the input survives byte for byte; each redaction covers exactly one form of its secret.
        const masked: Buffer[] = [];
        let kept = 0;
        for (const red of expected.redactions) {
          const covered = input.subarray(red.start, red.end);
          if (!formsOf((secrets[red.secret] as Secret).value).some((f) => f.bytes.equals(covered))) failures.push(`set ${set} case ${c}: redaction is not a form`);
          masked.push(input.subarray(kept, red.start), Buffer.from([0]));
          kept = red.end;
        }
        masked.push(input.subarray(kept));
        const withoutMarkers = Buffer.concat(masked);
        for (const s of active) {
          for (const f of formsOf(s.value)) {
            if (withoutMarkers.includes(f.bytes)) failures.push(`set ${set} case ${c}: a ${f.kind} form of ${s.name} survived`);
          }
        }

        const splits: Buffer[][] = [[input]];
        if (cases % 200 === 0) {
          for (let cut = 0; cut <= input.length; cut++) splits.push(splitAt(input, [cut]));
          splits.push(Array.from(input, (byte) => Buffer.from([byte])));
        } else {
          const cuts = Array.from({ length: 1 + Math.floor(rand() * 8) }, () => Math.floor(rand() * (input.length + 1)));
          splits.push(splitAt(input, cuts));
        }
        for (const chunks of splits) {
          variants++;
          const { out, pendingOk } = stream(r, chunks, Math.max(0, longest - 1));
          if (!out.equals(expected.output)) failures.push(`set ${set} case ${c}: split ${chunks.map((x) => x.length).join('+')} differs`);
          if (!pendingOk) failures.push(`set ${set} case ${c}: held back more than ${Math.max(0, longest - 1)} bytes`);
          let offset = 0;
          for (const chunk of chunks.slice(0, -1)) {
            offset += chunk.length;
            if (expected.redactions.some((red) => red.start < offset && offset < red.end)) straddles++;
          }
        }
        if (failures.length > 20) break;
      }
      if (failures.length > 20) break;
    }
    expect(failures).toEqual([]);
    expect(cases).toBeGreaterThanOrEqual(10_000);
    expect(variants).toBeGreaterThanOrEqual(20_000);
    expect(redactions).toBeGreaterThan(10_000);
    expect(straddles).toBeGreaterThan(5_000);
    for (const kind of ['raw', 'base64', 'base64-nopad', 'base64url', 'base64url-pad', 'base64-wrapped', 'json'] as const) {
      expect(plantedKinds.get(kind) ?? 0, kind).toBeGreaterThan(500);
    }
  });

  it('stays exact with many long, heavily overlapping secrets (deep automaton states, far beyond its dense rows)', () => {
    const rand = prng(0xdee9);
    const pick = (s: string, len: number) => {
      const from = Math.floor(rand() * (s.length - len));
      return s.slice(from, from + len);
    };
    const base = Array.from({ length: 600 }, () => 'abc'[Math.floor(rand() * 3)]).join('');
    const secrets = Array.from({ length: 40 }, (_, k) => ({ name: `DEEP${k}`, value: pick(base, 20 + Math.floor(rand() * 80)) }));
    const forms = secrets.flatMap((s) => formsOf(s.value).map((f) => f.bytes.toString()));
    const r = new SecretRedactor(secrets);
    const longest = longestForm(secrets);
    let redactions = 0;
    for (let c = 0; c < 20; c++) {
      let text = '';
      while (text.length < 4000) text += rand() < 0.8 ? pick(base, 1 + Math.floor(rand() * 120)) : pick(forms[Math.floor(rand() * forms.length)] as string, 5);
      const input = Buffer.from(text);
      const expected = reference(secrets, input);
      redactions += expected.redactions.length;
      const cuts = Array.from({ length: 30 }, () => Math.floor(rand() * (input.length + 1)));
      const { out, pendingOk } = stream(r, splitAt(input, cuts), longest - 1);
      expect(out.equals(expected.output)).toBe(true);
      expect(pendingOk).toBe(true);
    }
    expect(redactions).toBeGreaterThan(200);
  });

  it('masks an occurrence split over several writes exactly once and holds back only a possible secret start', () => {
    const r = new SecretRedactor([{ name: 'API_KEY', value: 'sk-live-0123456789' }]);
    expect(r.push(Buffer.from('key=sk-li')).toString()).toBe('key=');
    expect(r.pending).toBe(5);
    expect(r.push(Buffer.from('ve-01234')).toString()).toBe('');
    expect(r.push(Buffer.from('56789 done s')).toString()).toBe('[REDACTED:API_KEY] done ');
    expect(r.pending).toBe(1);
    expect(r.flush().toString()).toBe('s');
    expect(r.pending).toBe(0);
  });

  it('covers base64 (padded, unpadded, 76-column wrapped), base64url and JSON-escaped forms', () => {
    const pem = `-----BEGIN KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8AgEAAkEA "quoted" \\ back\n-----END KEY-----`;
    const secrets = [
      { name: 'PEM', value: pem },
      { name: 'PW', value: 'p?>~s' },
    ];
    const wrapped = `${(Buffer.from(pem).toString('base64').match(/.{1,76}/g) ?? []).join('\n')}\n`;
    expect(wrapped.split('\n').length).toBeGreaterThan(2);
    const pwB64 = Buffer.from('p?>~s').toString('base64');
    expect(pwB64).toMatch(/[+/].*=$/);
    const input = [
      `$ cat key | base64\n${wrapped}`,
      `{"level":"info","msg":"loaded ${JSON.stringify(pem).slice(1, -1)}"}\n`,
      `b64=${pwB64} nopad=${pwB64.replace(/=+$/, '')} url=${Buffer.from('p?>~s').toString('base64url')}\n`,
    ].join('');
    const expected = [
      '$ cat key | base64\n[REDACTED:PEM]\n',
      '{"level":"info","msg":"loaded [REDACTED:PEM]"}\n',
      'b64=[REDACTED:PW] nopad=[REDACTED:PW] url=[REDACTED:PW]\n',
    ].join('');
    for (const out of redactAllSplits(secrets, Buffer.from(input))) expect(out.toString()).toBe(expected);
  });

  it('leaves prefixes, suffixes, substrings and near-copies of a secret alone', () => {
    const value = 'hunter2-Secret!';
    const b64 = Buffer.from(value).toString('base64');
    const input = Buffer.from(
      [value.slice(0, -1), value.slice(1), value.slice(3, 10), `${value.slice(0, 7)}x${value.slice(8)}`, b64.slice(0, -2), b64.slice(1), value.toUpperCase()].join(' | '),
    );
    for (const out of redactAllSplits([{ name: 'PW', value }], input)) expect(out.equals(input)).toBe(true);
  });

  it('prefers the leftmost match, then the longest, when secrets overlap', () => {
    const long = { name: 'LONG', value: 'abcdefgh' };
    const inner = { name: 'INNER', value: 'cdef' };
    const cases: [Secret[], string, string][] = [
      [[inner, long], 'x abcdefgh y cdef z', 'x [REDACTED:LONG] y [REDACTED:INNER] z'],
      [[long, inner], 'abcdef abcdefgh', 'ab[REDACTED:INNER] [REDACTED:LONG]'],
      // Sharing a prefix: each secret only matches in full.
      [
        [
          { name: 'A', value: 'token-alpha-1234' },
          { name: 'B', value: 'token-beta-5678' },
        ],
        'token-alpha-5678 token-beta-5678 token-alpha-1234 token-',
        'token-alpha-5678 [REDACTED:B] [REDACTED:A] token-',
      ],
      // The earlier start wins even when a later-starting match is longer; the remainder is plain text.
      [
        [
          { name: 'HEAD', value: 'xxabcd' },
          { name: 'TAIL', value: 'abcd-and-more' },
        ],
        '1xxabcd-and-more2',
        '1[REDACTED:HEAD]-and-more2',
      ],
      // Same bytes for two secrets: the one listed first is named.
      [
        [
          { name: 'FIRST', value: 'same-value' },
          { name: 'SECOND', value: 'same-value' },
        ],
        '<same-value>',
        '<[REDACTED:FIRST]>',
      ],
    ];
    for (const [secrets, input, expected] of cases) {
      for (const out of redactAllSplits(secrets, Buffer.from(input))) expect(out.toString()).toBe(expected);
    }
  });

  it('passes binary data and invalid UTF-8 through unchanged, masking a secret embedded in it', () => {
    const rand = prng(7);
    const noise = Buffer.from(Array.from({ length: 4096 }, () => Math.floor(rand() * 256)));
    const invalid = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xe2, 0x82, 0xf0, 0x9f, 0x94, 0x00, 0x80]);
    const secret = 'bin-secret-🔑-value';
    const r = new SecretRedactor([{ name: 'K', value: secret }]);
    const input = Buffer.concat([noise, invalid, Buffer.from(secret), invalid, noise]);
    const expected = Buffer.concat([noise, invalid, Buffer.from('[REDACTED:K]'), invalid, noise]);
    const chunks = splitAt(input, [1, 2, 4097, 4100, 4100 + invalid.length + 5, 4107 + invalid.length, 6000]);
    expect(stream(r, chunks, Number.POSITIVE_INFINITY).out.equals(expected)).toBe(true);
    expect(stream(r, [noise, invalid], Number.POSITIVE_INFINITY).out.equals(Buffer.concat([noise, invalid]))).toBe(true);
  });

  it('never holds back more than the longest form minus one byte, even on input that keeps almost matching', () => {
    const secrets = [
      { name: 'A', value: 'aaaaaaaaaaaaaaaaaaab' },
      { name: 'B', value: 'abababababababababac' },
    ];
    const r = new SecretRedactor(secrets);
    const longest = longestForm(secrets);
    expect(r.longestPattern).toBe(longest);
    const rand = prng(99);
    // Prefixes of every form, some complete, glued together or separated by a stray byte, fed byte by byte.
    const forms = secrets.flatMap((s) => formsOf(s.value).map((f) => f.bytes));
    let input = Buffer.alloc(0);
    while (input.length < 20_000) {
      const form = forms[Math.floor(rand() * forms.length)] as Buffer;
      const stray = rand() < 0.5 ? [] : ['a', 'b', 'c', 'Y'].slice(Math.floor(rand() * 4)).slice(0, 1);
      input = Buffer.concat([input, form.subarray(0, 1 + Math.floor(rand() * form.length)), Buffer.from(stray.join(''))]);
    }
    let maxSeen = 0;
    const outs: Buffer[] = [];
    for (const byte of input) {
      outs.push(Buffer.from(r.push(Buffer.from([byte]))));
      maxSeen = Math.max(maxSeen, r.pending);
    }
    outs.push(r.flush());
    expect(maxSeen).toBe(longest - 1);
    expect(Buffer.concat(outs).equals(reference(secrets, input).output)).toBe(true);
  });

  it('ignores empty values and values shorter than 4 bytes but masks a 4-byte one', () => {
    const secrets = [
      { name: 'EMPTY', value: '' },
      { name: 'TINY', value: 'ab' },
      { name: 'THREE', value: 'é1' },
      { name: 'FOUR', value: 'k3y!' },
    ];
    const r = new SecretRedactor(secrets);
    expect(stream(r, [Buffer.from('ab é1 abc k3y! YWI=')], 3).out.toString()).toBe('ab é1 abc [REDACTED:FOUR] YWI=');
    const none = new SecretRedactor([{ name: 'X', value: 'no' }]);
    const chunk = Buffer.from('no secrets here');
    expect(none.push(chunk)).toBe(chunk);
    expect(none.pending).toBe(0);
  });

  it('emits held-back bytes on flush and starts afresh, so a secret split by a flush is not masked', () => {
    const r = new SecretRedactor([{ name: 'T', value: 'topsecret' }]);
    expect(r.push(Buffer.from('a top')).toString()).toBe('a ');
    expect(r.flush().toString()).toBe('top');
    expect(r.push(Buffer.from('secret topsecret')).toString()).toBe('secret [REDACTED:T]');
    expect(r.flush().length).toBe(0);
  });
});
