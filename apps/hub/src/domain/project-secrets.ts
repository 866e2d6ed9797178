import type { Database } from '@graft/db';
import type { Kysely } from 'kysely';
import type { SecretBox } from './secret-box.js';

/** The seal binding a secret's value to its project and name, so a sealed value cannot be moved to another. */
export const projectSecretAad = (projectId: string, name: string): string => `project:${projectId}:secret:${name}`;

/** The decrypted secrets of some projects, by project id then name: only for what goes to a broker, never into an API response or a log. */
export async function loadProjectSecrets(db: Kysely<Database>, box: SecretBox, projectIds: readonly string[]): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  if (projectIds.length === 0) return out;
  const rows = await db.selectFrom('project_secrets').select(['project_id', 'name', 'value_enc']).where('project_id', 'in', [...new Set(projectIds)]).execute();
  for (const r of rows) {
    const secrets = out.get(r.project_id) ?? {};
    secrets[r.name] = box.open(r.value_enc, projectSecretAad(r.project_id, r.name));
    out.set(r.project_id, secrets);
  }
  return out;
}
