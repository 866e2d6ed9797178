import type { GraftClient } from '@graft/client';
import { CliError } from '../errors.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether a reference is an id rather than a name. */
export function isUuid(ref: string): boolean {
  return UUID_RE.test(ref);
}

/**
 * Turns a project reference into an id: ids pass through, names are looked up among the projects
 * the caller can see. Names are not unique (projects are keyed by git remote), so a name shared by
 * several projects is refused with their ids.
 */
export async function resolveProjectId(client: GraftClient, ref: string): Promise<string> {
  if (isUuid(ref)) return ref.toLowerCase();
  const matches: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listProjects({ limit: 500, ...(cursor ? { cursor } : {}) });
    for (const p of page.items) if (p.name === ref) matches.push(p.id);
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  if (matches.length === 0) throw new CliError('not_found', `no project named ${ref} among yours (graft projects ls lists them)`);
  if (matches.length > 1) throw new CliError('ambiguous', `several projects are named ${ref}: ${matches.join(', ')}; pass the id instead`);
  return matches[0] as string;
}
