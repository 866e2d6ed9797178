/** A project secret whose value must never leave the node in an agent's log output. */
export interface Secret {
  name: string;
  value: string;
}

/**
 * Values shorter than this many UTF-8 bytes are not masked: a 1-3 byte value ("a", "42", "yes")
 * occurs all over ordinary text, so masking it would destroy the log while protecting nothing.
 */
const MIN_SECRET_BYTES = 4;

/** GNU coreutils `base64` wraps its output at 76 columns; a long secret piped through it looks like that. */
const BASE64_WRAP_COLUMNS = 76;

/**
 * At most this many automaton states get a full 256-entry transition row (1 KiB each, so at most
 * 256 KiB per redactor, and there is one per agent per stream). The rows cover the shallow states,
 * where nearly all of a log's bytes are processed; deeper states (reached only while the text
 * follows a secret's prefix) fall back to trie edges plus failure links, so many or long secrets
 * (certificates) cost memory linear in their total size. Throughput measured the same from 64 rows
 * up to a full table.
 */
const MAX_DENSE_STATES = 256;

const ROOT = 0;

/**
 * The byte sequences that count as an occurrence of `value` (duplicates possible). Base64 forms
 * are the encoding of the value on its own (as `printf %s "$S" | base64` prints it), not every way
 * it can sit inside a longer base64 string: there its encoding depends on its offset modulo 3 and
 * on the neighbouring bytes, so misaligned embeddings are not recognised.
 */
function secretForms(value: string): Buffer[] {
  const raw = Buffer.from(value, 'utf8');
  const b64 = raw.toString('base64');
  const b64NoPad = b64.replace(/=+$/, '');
  const b64Url = raw.toString('base64url');
  const b64UrlPadded = b64Url + b64.slice(b64NoPad.length);
  const forms = [raw, Buffer.from(b64), Buffer.from(b64NoPad), Buffer.from(b64Url), Buffer.from(b64UrlPadded)];
  if (b64.length > BASE64_WRAP_COLUMNS) {
    const lines: string[] = [];
    for (let i = 0; i < b64.length; i += BASE64_WRAP_COLUMNS) lines.push(b64.slice(i, i + BASE64_WRAP_COLUMNS));
    forms.push(Buffer.from(lines.join('\n')));
  }
  // What a JSON encoder writes between the quotes: newlines, quotes, backslashes and control characters escaped.
  forms.push(Buffer.from(JSON.stringify(value).slice(1, -1), 'utf8'));
  return forms;
}

/**
 * Aho–Corasick automaton over bytes, immutable once built. Every node records the longest pattern
 * that ends there (its own or via failure links) and the depth of the longest suffix that can still
 * grow into a pattern, which is what decides how much of a stream must be held back.
 */
class PatternAutomaton {
  /** Pattern length ending at a state (0: none) and the index of its replacement. */
  readonly outLen: Int32Array;
  readonly outId: Int32Array;
  /** Length of the longest suffix of the state's string that is a proper prefix of some pattern. */
  readonly live: Int32Array;
  readonly fail: Int32Array;
  /** Sparse edges of every state (CSR), used for the states without a dense row. */
  readonly edgeStart: Int32Array;
  readonly edgeByte: Uint8Array;
  readonly edgeTo: Int32Array;
  /** Full transition rows of states 0..denseStates-1 (states are numbered breadth-first). */
  readonly dense: Int32Array;
  readonly denseStates: number;
  readonly longest: number;

  constructor(patterns: readonly Buffer[], owners: readonly number[]) {
    // Trie with map children while building; renumbered breadth-first afterwards.
    const children: Map<number, number>[] = [new Map()];
    const terminal: number[] = [-1];
    let longest = 0;
    patterns.forEach((pattern, p) => {
      let node = ROOT;
      for (const byte of pattern) {
        const kids = children[node] as Map<number, number>;
        let next = kids.get(byte);
        if (next === undefined) {
          next = children.length;
          children.push(new Map());
          terminal.push(-1);
          kids.set(byte, next);
        }
        node = next;
      }
      terminal[node] = owners[p] as number;
      longest = Math.max(longest, pattern.length);
    });

    const count = children.length;
    const order: number[] = [ROOT];
    const renumber = new Int32Array(count);
    for (let head = 0; head < order.length; head++) {
      for (const child of (children[order[head] as number] as Map<number, number>).values()) {
        renumber[child] = order.length;
        order.push(child);
      }
    }

    const depth = new Int32Array(count);
    this.outLen = new Int32Array(count);
    this.outId = new Int32Array(count);
    this.live = new Int32Array(count);
    this.fail = new Int32Array(count);
    this.edgeStart = new Int32Array(count + 1);
    this.edgeByte = new Uint8Array(count - 1);
    this.edgeTo = new Int32Array(count - 1);
    this.denseStates = Math.min(count, MAX_DENSE_STATES);
    this.dense = new Int32Array(this.denseStates * 256);
    this.longest = longest;

    const childOf = (state: number, byte: number): number => {
      for (let e = this.edgeStart[state] as number; e < (this.edgeStart[state + 1] as number); e++) {
        if (this.edgeByte[e] === byte) return this.edgeTo[e] as number;
      }
      return -1;
    };

    let edges = 0;
    for (let state = 0; state < count; state++) {
      this.edgeStart[state] = edges;
      for (const [byte, child] of children[order[state] as number] as Map<number, number>) {
        this.edgeByte[edges] = byte;
        this.edgeTo[edges] = renumber[child] as number;
        edges++;
      }
    }
    this.edgeStart[count] = edges;

    // Breadth-first: a state's failure target is shallower, hence already complete.
    for (let state = 0; state < count; state++) {
      const own = terminal[order[state] as number] as number;
      const f = this.fail[state] as number;
      if (own >= 0) {
        this.outLen[state] = depth[state] as number;
        this.outId[state] = own;
      } else if (state !== ROOT) {
        this.outLen[state] = this.outLen[f] as number;
        this.outId[state] = this.outId[f] as number;
      }
      const hasChildren = (this.edgeStart[state + 1] as number) > (this.edgeStart[state] as number);
      this.live[state] = hasChildren ? (depth[state] as number) : state === ROOT ? 0 : (this.live[f] as number);
      for (let e = this.edgeStart[state] as number; e < (this.edgeStart[state + 1] as number); e++) {
        const child = this.edgeTo[e] as number;
        const byte = this.edgeByte[e] as number;
        depth[child] = (depth[state] as number) + 1;
        if (state === ROOT) {
          this.fail[child] = ROOT;
          continue;
        }
        let g = f;
        let target = childOf(g, byte);
        while (target < 0 && g !== ROOT) {
          g = this.fail[g] as number;
          target = childOf(g, byte);
        }
        this.fail[child] = target < 0 ? ROOT : target;
      }
      if (state < this.denseStates) {
        const row = state * 256;
        for (let byte = 0; byte < 256; byte++) {
          const child = childOf(state, byte);
          this.dense[row + byte] = child >= 0 ? child : state === ROOT ? ROOT : (this.dense[f * 256 + byte] as number);
        }
      }
    }
  }

  /** Transition from a state without a dense row: trie edge, else follow failure links to one that has a row. */
  stepSparse(state: number, byte: number): number {
    let s = state;
    while (s >= this.denseStates) {
      for (let e = this.edgeStart[s] as number; e < (this.edgeStart[s + 1] as number); e++) {
        if (this.edgeByte[e] === byte) return this.edgeTo[e] as number;
      }
      s = this.fail[s] as number;
    }
    return this.dense[s * 256 + byte] as number;
  }
}

/**
 * Streaming masker for one byte stream (one agent's stdout or stderr): replaces every occurrence of
 * a secret's value by `[REDACTED:<name>]`, also when the occurrence is split across writes.
 *
 * Forms recognised per secret: the raw UTF-8 bytes; standard base64 with and without `=` padding,
 * and wrapped at 76 columns by LF when longer (GNU `base64` default); base64url without and with
 * padding; and the JSON-escaped form (`JSON.stringify(value).slice(1, -1)`), which differs from the
 * raw bytes for multi-line values and values with quotes, backslashes or control characters.
 * Base64 forms are matched as the encoding of the value alone, so a value embedded at an offset
 * not divisible by 3 inside a longer base64 string is not recognised.
 *
 * Empty values and values shorter than 4 UTF-8 bytes are ignored (masking them would mangle
 * ordinary text). Where forms overlap, the match starting earliest wins, and of those the longest
 * (leftmost-longest, non-overlapping); identical forms of different secrets are credited to the
 * secret listed first. A part of a secret (prefix, suffix, substring) is never masked, which also
 * means a secret overlapped by an earlier, winning match can have its unmatched rest emitted.
 *
 * Bytes are handled as bytes: everything outside a match, invalid UTF-8 included, is emitted
 * unchanged. Matching is an Aho–Corasick automaton (one table lookup per byte on the common path);
 * after a match, scanning restarts right behind it, so pathological input can rescan up to the
 * longest form's length per match.
 */
export class SecretRedactor {
  readonly #automaton: PatternAutomaton | undefined;
  readonly #replacements: Buffer[];
  /** Bytes not yet final, and the scan's state at their end (positions relative to their start). */
  #held: Buffer = Buffer.alloc(0);
  #state = ROOT;
  #candStart = -1;
  #candEnd = 0;
  #candId = 0;

  constructor(secrets: readonly Secret[]) {
    const patterns: Buffer[] = [];
    const owners: number[] = [];
    const seen = new Set<string>();
    this.#replacements = secrets.map((s) => Buffer.from(`[REDACTED:${s.name}]`, 'utf8'));
    secrets.forEach((secret, index) => {
      if (Buffer.byteLength(secret.value, 'utf8') < MIN_SECRET_BYTES) return;
      for (const form of secretForms(secret.value)) {
        const key = form.toString('latin1');
        if (seen.has(key)) continue;
        seen.add(key);
        patterns.push(form);
        owners.push(index);
      }
    });
    this.#automaton = patterns.length > 0 ? new PatternAutomaton(patterns, owners) : undefined;
  }

  /** Length in bytes of the longest form matched (0 without secrets); `pending` stays below it. */
  get longestPattern(): number {
    return this.#automaton?.longest ?? 0;
  }

  /**
   * Feeds bytes; returns the bytes that are final (redacted); holds back at most (longest pattern - 1)
   * bytes that could still begin a secret. The result may share memory with `chunk`.
   */
  push(chunk: Buffer): Buffer {
    if (this.#automaton === undefined) return chunk;
    const data = this.#held.length === 0 ? chunk : Buffer.concat([this.#held, chunk]);
    return this.#scan(this.#automaton, data, false);
  }

  /**
   * End of stream (or a pause, e.g. before shipping a chunk after a quiet period): returns whatever
   * is held back, redacted. The redactor is then back in its initial state and can take more bytes;
   * a secret whose bytes straddle the flush is therefore emitted unmasked, in two pieces.
   */
  flush(): Buffer {
    if (this.#automaton === undefined) return Buffer.alloc(0);
    return this.#scan(this.#automaton, this.#held, true);
  }

  /** How many bytes are held back now (for tests and back-pressure accounting). */
  get pending(): number {
    return this.#held.length;
  }

  /**
   * Continues the scan over `data` (held-back bytes, already scanned, followed by new ones). A
   * candidate match is committed once no match can start at or before it any more, i.e. once the
   * automaton's live suffix begins after the candidate's start; the live suffix is held back.
   */
  #scan(a: PatternAutomaton, data: Buffer, final: boolean): Buffer {
    const { dense, denseStates, outLen, outId, live } = a;
    const n = data.length;
    const parts: Buffer[] = [];
    let emitFrom = 0;
    let state = this.#state;
    let candStart = this.#candStart;
    let candEnd = this.#candEnd;
    let candId = this.#candId;
    let i = this.#held.length;
    for (;;) {
      while (i < n) {
        if (candStart < 0 && state < denseStates) {
          // Common path (no candidate, shallow state): a bare table walk until a form ends or the state gets deep.
          let s = state;
          while (i < n) {
            s = dense[(s << 8) | (data[i] as number)] as number;
            i++;
            if (s >= denseStates || outLen[s] !== 0) break;
          }
          state = s;
          const len = outLen[s] as number;
          if (len !== 0) {
            candStart = i - len;
            candEnd = i;
            candId = outId[s] as number;
            if (i - (live[s] as number) > candStart) {
              parts.push(data.subarray(emitFrom, candStart), this.#replacements[candId] as Buffer);
              emitFrom = candEnd;
              state = ROOT;
              candStart = -1;
            }
          }
          continue;
        }
        const byte = data[i] as number;
        state = state < denseStates ? (dense[(state << 8) | byte] as number) : a.stepSparse(state, byte);
        i++;
        const len = outLen[state] as number;
        if (len !== 0) {
          const start = i - len;
          // The longest match ending here is the leftmost one ending here; equal start and later end is longer.
          if (candStart < 0 || start <= candStart) {
            candStart = start;
            candEnd = i;
            candId = outId[state] as number;
          }
        }
        if (candStart >= 0 && i - (live[state] as number) > candStart) {
          parts.push(data.subarray(emitFrom, candStart), this.#replacements[candId] as Buffer);
          emitFrom = candEnd;
          // Matches seen past the committed one may overlap it; rescan behind it from scratch.
          i = candEnd;
          state = ROOT;
          candStart = -1;
        }
      }
      if (!final || candStart < 0) break;
      parts.push(data.subarray(emitFrom, candStart), this.#replacements[candId] as Buffer);
      emitFrom = candEnd;
      i = candEnd;
      state = ROOT;
      candStart = -1;
    }
    // An uncommitted candidate starts inside the live suffix, so holding that back keeps it.
    const holdFrom = final ? n : n - (live[state] as number);
    this.#held = holdFrom < n ? Buffer.from(data.subarray(holdFrom)) : Buffer.alloc(0);
    this.#state = final ? ROOT : state;
    this.#candStart = candStart < 0 ? -1 : candStart - holdFrom;
    this.#candEnd = candEnd - holdFrom;
    this.#candId = candId;
    parts.push(data.subarray(emitFrom, holdFrom));
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }
}
