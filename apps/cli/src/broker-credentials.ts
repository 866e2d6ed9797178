import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliError } from './errors.js';

/** What `graft broker join` stores for the broker daemon (`graft broker start`) to use. */
export interface BrokerCredentials {
  hubUrl: string;
  brokerId: string;
  secretKey: string;
  joinedAt: string;
}

/** Path of the broker's credentials file inside its data directory. */
export function brokerCredentialsPath(dataDir: string): string {
  return join(dataDir, 'credentials.json');
}

/** Refuses when the data dir already holds a broker's credentials (a second join would orphan that broker). */
export function assertNoBrokerCredentials(dataDir: string): void {
  const file = brokerCredentialsPath(dataDir);
  if (existsSync(file)) {
    throw new CliError(
      'credentials_exist',
      `${file} already exists: this data dir belongs to a broker that has joined already; use another --data-dir, or pass --force to replace it (the old broker's secret is then lost)`,
    );
  }
}

/**
 * Writes the broker's credentials: directory 0700, file 0600. Without `force` the file is created
 * exclusively, so a join racing another one on the same data dir cannot replace its secret; with
 * `force` it is replaced atomically through a temp file.
 */
export function writeBrokerCredentials(dataDir: string, credentials: BrokerCredentials, force: boolean): string {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  // mkdir's mode applies only to a new directory; the secret must not sit in a readable one.
  chmodSync(dataDir, 0o700);
  const file = brokerCredentialsPath(dataDir);
  const text = `${JSON.stringify(credentials, null, 2)}\n`;
  if (!force) {
    try {
      writeFileSync(file, text, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') assertNoBrokerCredentials(dataDir);
      throw err;
    }
    return file;
  }
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  return file;
}
