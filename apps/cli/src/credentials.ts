import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliError } from './errors.js';

/** What `graft login` stores. */
export interface Credentials {
  hubUrl: string;
  token: string;
}

/** Path of the credentials file inside a config directory. */
export function credentialsPath(configDir: string): string {
  return join(configDir, 'credentials.json');
}

/** Reads stored credentials; undefined when nobody has logged in yet. */
export function readCredentials(configDir: string): Credentials | undefined {
  const file = credentialsPath(configDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError('credentials_unreadable', `cannot read ${file}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError('credentials_invalid', `${file} is not valid JSON: run graft login again`);
  }
  const c = parsed as Partial<Credentials> | null;
  if (typeof c?.hubUrl !== 'string' || typeof c.token !== 'string') {
    throw new CliError('credentials_invalid', `${file} lacks hubUrl or token: run graft login again`);
  }
  return { hubUrl: c.hubUrl, token: c.token };
}

/** Stores credentials: directory 0700, file 0600, replaced atomically so a crash never leaves half a token. */
export function writeCredentials(configDir: string, credentials: Credentials): string {
  mkdirSync(configDir, { recursive: true, mode: 0o700 });
  const file = credentialsPath(configDir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  // The mode given to writeFileSync only applies to new files; make sure, whatever was there.
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

/** Removes stored credentials; false when there were none. */
export function removeCredentials(configDir: string): boolean {
  const file = credentialsPath(configDir);
  try {
    rmSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
