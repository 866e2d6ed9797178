/** Port: remembers which nonces each broker has used, so a captured signed request cannot be replayed. */
export interface NonceCache {
  /**
   * Returns true if `nonce` was already recorded for `brokerId` and has not expired; otherwise records it
   * until `expiresAtSecs` (Unix seconds, inclusive) and returns false. Must be atomic per (brokerId, nonce):
   * of concurrent calls with the same pair, exactly one returns false.
   */
  seen(brokerId: string, nonce: string, expiresAtSecs: number): Promise<boolean>;
}

/**
 * Default entry cap for {@link MemoryNonceCache}. An entry lives at most twice the skew window (10 min);
 * 100k entries (~15 MiB) hold ~170 signed requests/s sustained, far above what brokers send over HTTP
 * (their steady traffic runs over the tunnel), so eviction only happens under abuse.
 */
export const DEFAULT_NONCE_CACHE_MAX_ENTRIES = 100_000;

/** Options for {@link MemoryNonceCache}. */
export interface MemoryNonceCacheOptions {
  /** Entry cap; when full the oldest entry is evicted. */
  maxEntries?: number;
  /** Clock in Unix seconds; injectable for tests. */
  nowSecs?: () => number;
}

/**
 * In-process nonce cache for a single hub replica (cluster mode needs a shared adapter).
 * When full it evicts the oldest entry rather than refusing new requests: only requests with a valid
 * signature are recorded, so only a broker holding a secret can fill it, and failing closed would let one
 * such broker lock every broker out. An evicted nonce is replayable only until its timestamp leaves the
 * skew window, after which the timestamp check refuses it anyway.
 */
export class MemoryNonceCache implements NonceCache {
  readonly #entries = new Map<string, number>();
  readonly #maxEntries: number;
  readonly #nowSecs: () => number;

  constructor(options: MemoryNonceCacheOptions = {}) {
    this.#maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_NONCE_CACHE_MAX_ENTRIES);
    this.#nowSecs = options.nowSecs ?? (() => Math.floor(Date.now() / 1000));
  }

  /** Number of entries held, including expired ones not yet pruned. */
  get size(): number {
    return this.#entries.size;
  }

  async seen(brokerId: string, nonce: string, expiresAtSecs: number): Promise<boolean> {
    const now = this.#nowSecs();
    this.#prune(now);
    // Length prefix: no choice of broker id and nonce can collide with another pair's key.
    const key = `${brokerId.length}:${brokerId}${nonce}`;
    const expiresAt = this.#entries.get(key);
    if (expiresAt !== undefined && expiresAt >= now) return true;
    this.#entries.delete(key);
    while (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, expiresAtSecs);
    return false;
  }

  // Insertion order is close to expiry order (expiries differ by at most the skew window), so pruning from
  // the head until the first live entry is O(1) amortised; stragglers behind a live head are pruned later
  // and lookups ignore them, because they check the expiry themselves.
  #prune(now: number): void {
    for (const [key, expiresAt] of this.#entries) {
      if (expiresAt >= now) break;
      this.#entries.delete(key);
    }
  }
}
