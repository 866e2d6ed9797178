import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Uuid } from '@graft/protocol';
import { z } from 'zod';

/** What `graft broker join` stores in the data dir, and what the daemon runs from. */
export const BrokerCredentials = z.object({
  hubUrl: z.url(),
  brokerId: Uuid,
  secretKey: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be the 43-character secret from the join response'),
  joinedAt: z.string(),
});
/** What `graft broker join` stores in the data dir. */
export type BrokerCredentials = z.infer<typeof BrokerCredentials>;

/** A missing or unusable credentials file. */
export class CredentialsError extends Error {
  override readonly name = 'CredentialsError';
  constructor(
    readonly code: 'credentials_missing' | 'credentials_invalid',
    message: string,
  ) {
    super(message);
  }
}

/** Path of the credentials file inside a broker's data dir. */
export function credentialsPath(dataDir: string): string {
  return join(dataDir, 'credentials.json');
}

/** Reads and checks the credentials file. */
export function readBrokerCredentials(dataDir: string): BrokerCredentials {
  const file = credentialsPath(dataDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CredentialsError('credentials_missing', `${file} does not exist: join the broker first (graft broker register on the hub, then graft broker join on this node)`);
    }
    throw new CredentialsError('credentials_invalid', `cannot read ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CredentialsError('credentials_invalid', `${file} is not valid JSON`);
  }
  const parsed = BrokerCredentials.safeParse(json);
  if (!parsed.success) throw new CredentialsError('credentials_invalid', `${file} is not a broker credentials file: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** Writes the credentials file: directory 0700, file 0600, created exclusively (a joined broker's secret is never replaced silently). */
export function writeNewBrokerCredentials(dataDir: string, credentials: BrokerCredentials): string {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const file = credentialsPath(dataDir);
  writeFileSync(file, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  return file;
}
