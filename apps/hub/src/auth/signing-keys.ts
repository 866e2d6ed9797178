import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import type { Database } from '@graft/db';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { SecretBox } from '../domain/secret-box.js';

/** One HMAC key for JWTs. */
export interface SigningKey {
  kid: string;
  /**
   * A secret KeyObject, not a Buffer: given a Buffer, jsonwebtoken first tries to read it as a
   * public key and fails, which costs ~0.4 ms on every verify (a KeyObject: ~10 µs).
   */
  secret: KeyObject;
  createdAt: Date;
}

const aad = (kid: string) => `signing-key:${kid}`;
const RELOAD_INTERVAL_MS = 1000;

/**
 * JWT signing keys kept in Postgres (encrypted with the master key) so every replica signs and
 * verifies with the same keys. The newest key signs; all keys verify, so rotation needs no
 * downtime. An unknown kid triggers one reload, which is how replicas learn of a rotation.
 */
export class SigningKeyStore {
  private keys = new Map<string, SigningKey>();
  private current: SigningKey | undefined;
  private lastReloadAt = 0;
  private reloading: Promise<void> | undefined;

  constructor(
    private readonly db: Kysely<Database>,
    private readonly box: SecretBox,
  ) {}

  /** Loads keys, creating the first one if there is none (race-free across replicas). */
  async init(): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await sql`SELECT pg_advisory_xact_lock(${0x6b657973})`.execute(trx);
      const any = await trx.selectFrom('signing_keys').select('kid').limit(1).executeTakeFirst();
      if (!any) await this.insertKey(trx);
    });
    await this.reload();
  }

  /** Adds a new signing key; older keys keep verifying until they are dropped. */
  async rotate(): Promise<SigningKey> {
    const key = await this.insertKey(this.db);
    await this.reload();
    return key;
  }

  /** The key that signs new tokens. */
  signingKey(): SigningKey {
    if (!this.current) throw new Error('signing keys not initialised');
    return this.current;
  }

  /**
   * The key for a kid. An unknown kid (a rotation on another replica) triggers a reload, but at
   * most one per second and shared by concurrent callers, so tokens with made-up kids cannot turn
   * every request into a database round trip.
   */
  async verificationKey(kid: string): Promise<SigningKey | undefined> {
    const k = this.keys.get(kid);
    if (k) return k;
    this.reloading ??= (async () => {
      const wait = this.lastReloadAt + RELOAD_INTERVAL_MS - Date.now();
      if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
      try {
        await this.reload();
      } finally {
        this.reloading = undefined;
      }
    })();
    await this.reloading;
    return this.keys.get(kid);
  }

  private async insertKey(db: Kysely<Database>): Promise<SigningKey> {
    const kid = `k${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
    const secret = randomBytes(32);
    const row = await db
      .insertInto('signing_keys')
      .values({ kid, secret_enc: this.box.seal(secret.toString('base64'), aad(kid)) })
      .returning('created_at')
      .executeTakeFirstOrThrow();
    return { kid, secret: createSecretKey(secret), createdAt: row.created_at };
  }

  private async reload(): Promise<void> {
    const rows = await this.db.selectFrom('signing_keys').selectAll().orderBy('created_at', 'asc').orderBy('kid', 'asc').execute();
    const keys = new Map<string, SigningKey>();
    let newest: SigningKey | undefined;
    for (const r of rows) {
      const k = { kid: r.kid, secret: createSecretKey(Buffer.from(this.box.open(r.secret_enc, aad(r.kid)), 'base64')), createdAt: r.created_at };
      keys.set(k.kid, k);
      newest = k;
    }
    this.keys = keys;
    this.current = newest;
    this.lastReloadAt = Date.now();
  }
}
