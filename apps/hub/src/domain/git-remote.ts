import { uuidv5 } from './uuid.js';

/** Namespace for project ids derived from git remotes (a fixed, random UUID). */
const PROJECT_NAMESPACE = '6f1c7a52-3d0e-4b8e-9a51-2f7e0c4d9b13';

/**
 * Normalises the spellings of one repository to one string, so that
 * `git@github.com:Org/Repo.git`, `https://github.com/org/repo` and `ssh://git@github.com/org/repo/`
 * all become `github.com/org/repo`. Local paths and file URLs keep their case (file systems care).
 */
export function normaliseGitRemote(input: string): string {
  let s = input.trim();
  if (s.startsWith('/') || s.startsWith('file://')) {
    const path = s.startsWith('file://') ? decodeURIComponent(s.slice('file://'.length)) : s;
    return `file://${path.replace(/\/+$/, '').replace(/\.git$/, '') || '/'}`;
  }
  const scp = /^(?:[^@/]+@)?([^:/]+):(?!\/)(.+)$/.exec(s);
  if (scp && !/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    s = `${scp[1]}/${scp[2]}`;
  } else {
    s = s.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/^[^@/]+@/, '');
  }
  const [hostPort = '', ...rest] = s.split('/');
  const host = hostPort.replace(/:(22|80|443)$/, '').toLowerCase();
  const path = rest
    .filter((p) => p.length > 0)
    .join('/')
    .replace(/\.git$/i, '')
    .toLowerCase();
  return path ? `${host}/${path}` : host;
}

/** Whether a string looks like something `normaliseGitRemote` understands. */
export function isPlausibleGitRemote(input: string): boolean {
  const n = normaliseGitRemote(input);
  return n.startsWith('file:///') || /^[a-z0-9.-]+(:\d+)?\/[^\s]+$/.test(n);
}

/** The deterministic project id for a normalised remote. */
export function projectIdForRemote(normalised: string): string {
  return uuidv5(normalised, PROJECT_NAMESPACE);
}
