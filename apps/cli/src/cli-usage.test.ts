import { describe, expect, it } from 'vitest';
import { ERROR_LINE, runCli, tempConfigDir } from './test-support/run-cli.js';

const GROUPS: Record<string, string[]> = {
  hub: ['start', 'migrate'],
  projects: ['register', 'ls', 'show'],
  templates: ['create', 'ls', 'show'],
  agents: ['ls', 'show', 'create', 'suspend', 'start', 'restart', 'stop', 'rm'],
  'api-keys': ['create', 'ls', 'revoke'],
  broker: ['register', 'join', 'ls', 'show'],
};
const TOP_LEVEL = ['login', 'logout', 'whoami'];

const env = () => ({ GRAFT_CONFIG_DIR: tempConfigDir() });

describe('graft usage', () => {
  it('prints help with examples for the program and every command group, exit 0', async () => {
    const paths = [[], ...Object.keys(GROUPS).map((g) => [g])];
    const runs = await Promise.all(paths.map((p) => runCli([...p, '--help'], env())));
    runs.forEach((run, i) => {
      const path = paths[i] ?? [];
      expect(run.code, `graft ${path.join(' ')} --help`).toBe(0);
      expect(run.stderr).toBe('');
      expect(run.stdout).toContain(`Usage: graft${path.length ? ` ${path.join(' ')}` : ''} [options] [command]`);
      expect(run.stdout).toContain('Examples:');
      for (const sub of path.length ? (GROUPS[path[0] ?? ''] ?? []) : [...TOP_LEVEL, ...Object.keys(GROUPS)]) expect(run.stdout).toMatch(new RegExp(`^  ${sub}\\b`, 'm'));
    });
  });

  it('prints help for every subcommand, exit 0', async () => {
    const paths = [...TOP_LEVEL.map((c) => [c]), ...Object.entries(GROUPS).flatMap(([g, subs]) => subs.map((s) => [g, s]))];
    const runs = await Promise.all(paths.map((p) => runCli([...p, '--help'], env())));
    runs.forEach((run, i) => {
      const path = (paths[i] ?? []).join(' ');
      expect(run.code, `graft ${path} --help`).toBe(0);
      expect(run.stdout).toContain(`Usage: graft ${path}`);
      // Every command has a real description, not just a usage line.
      expect(run.stdout.split('\n')[2]?.length ?? 0).toBeGreaterThan(10);
    });
    const loginHelp = runs[0]?.stdout ?? '';
    expect(loginHelp).toContain('--hub <url>');
    expect(loginHelp).toContain('--token <token>');
  });

  it('`graft help <group>` works like --help', async () => {
    const run = await runCli(['help', 'agents'], env());
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: graft agents');
  });

  it('exits 2 with one line on stderr for an unknown command, suggesting the close one', async () => {
    const run = await runCli(['projectz', 'ls'], env());
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe("graft: unknown command 'projectz' (Did you mean projects?)\n");
  });

  it('exits 2 for an unknown subcommand, an unknown option, a missing argument and bad flag values', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['agents', 'explode', 'x'], /unknown command 'explode'/],
      [['projects', 'ls', '--colour'], /unknown option '--colour'/],
      [['projects', 'show'], /missing required argument 'project'/],
      [['projects', 'ls', '--limit', '0'], /--limit <n>.*must be an integer from 1 to 500/],
      [['agents', 'ls', '--phase', 'sleeping'], /--phase <phase>.*Allowed choices are created/],
      [['projects', 'register', 'web', '--label', 'novalue'], /expected key=value/],
      [['api-keys', 'create', '--name', 'k', '--scope', 'admin'], /allowed: read, write/],
      [['api-keys', 'create', '--name', 'k', '--expires', 'tomorrow'], /expected an ISO 8601 date/],
      [['templates', 'create', 't', '--harness', 'command', '--command', '"unclosed'], /unterminated double quote/],
      [['templates', 'create', 't'], /required option '--harness <harness>' not specified/],
      [['projects', 'ls', '--hub', 'ftp://example.com', '--token', 'x'], /hub URL must use http or https/],
    ];
    const runs = await Promise.all(cases.map(([args]) => runCli(args, env())));
    runs.forEach((run, i) => {
      const [args, message] = cases[i] ?? [[], /./];
      expect(run.code, `graft ${args.join(' ')}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(/^graft: [^\n]+\n$/);
      expect(run.stderr).toMatch(message);
    });
  });

  it('a group without a subcommand shows its help on stderr and exits 2', async () => {
    const run = await runCli(['templates'], env());
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('Usage: graft templates');
  });

  it('without any hub configured, fails with exit 1 and says how to log in', async () => {
    const run = await runCli(['projects', 'ls'], env());
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(ERROR_LINE);
    expect(run.stderr).toContain('graft login --hub URL --token T');
    expect(run.stderr).toContain('code not_configured');
  });

  it('reports an unreachable hub as a network error on one line', async () => {
    const run = await runCli(['projects', 'ls', '--hub', 'http://127.0.0.1:1', '--token', 'x'], env());
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(ERROR_LINE);
    expect(run.stderr).toContain('cannot reach the hub at http://127.0.0.1:1');
  });

  it('ignores a leading -- (what `pnpm graft -- <args>` passes on)', async () => {
    const run = await runCli(['--', 'projects', '--help'], env());
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('Usage: graft projects');
  });

  it('prints its version', async () => {
    const run = await runCli(['--version'], env());
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});
