import { GraftClient } from '@graft/client';
import type { Agent, DeleteAgentResponse, Page, Project, ProjectDetail, RegisterProjectResponse, Template, TemplateVersion } from '@graft/protocol';
import { type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ERROR_LINE, jsonOf, runCli, tempConfigDir } from './test-support/run-cli.js';

let fx: HubFixture;
let env: Record<string, string>;
const graft = (...args: string[]) => runCli(args, env);

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  const { token } = await new GraftClient({ baseUrl: fx.hub.url }).devLogin('cli-resources@example.com');
  env = { GRAFT_CONFIG_DIR: tempConfigDir() };
  const login = await runCli(['login', '--hub', fx.hub.url, '--token', token], env);
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
});
afterAll(async () => {
  await fx?.stop();
});

/** Splits table output into its header line and rows of cells (cells are separated by 2+ spaces). */
function tableOf(stdout: string): { header: string[]; rows: string[][] } {
  const [head = '', ...rest] = stdout.trimEnd().split('\n');
  const cells = (line: string) => line.trim().split(/ {2,}/);
  return { header: cells(head), rows: rest.map(cells) };
}

describe('graft projects', () => {
  let project: Project;

  it('register creates a project and prints it; --json prints {project, created}', async () => {
    const run = await graft('projects', 'register', 'web', '--git-remote', 'git@github.com:acme/web.git', '--label', 'team=core', '--label', 'tier=1');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Registered project web \([0-9a-f-]{36}\)\.\n/);
    expect(run.stdout).toMatch(/^Labels: +team=core,tier=1$/m);
    expect(run.stdout).toMatch(/^Your role: +admin$/m);

    // The same remote maps to the same project: registering again is not a new one.
    const again = jsonOf<RegisterProjectResponse>(await graft('projects', 'register', 'web', '--git-remote', 'git@github.com:acme/web.git', '--json'));
    expect(again.created).toBe(false);
    expect(again.project.labels).toEqual({ team: 'core', tier: '1' });
    project = again.project;
    expect(run.stdout).toContain(project.id);
  });

  it('ls prints an aligned table, and --json the raw page', async () => {
    await graft('projects', 'register', 'api');
    const run = await graft('projects', 'ls');
    expect(run.code).toBe(0);
    const { header, rows } = tableOf(run.stdout);
    expect(header).toEqual(['ID', 'NAME', 'ROLE', 'GIT REMOTE', 'LABELS', 'AGE']);
    expect(rows.map((r) => r[1]).sort()).toEqual(['api', 'web']);
    expect(rows.find((r) => r[0] === project.id)).toEqual([project.id, 'web', 'admin', project.gitRemote, 'team=core,tier=1', expect.stringMatching(/^\d+[smhd]$/)]);
    // Columns line up: every row's NAME starts where the header's does.
    const lines = run.stdout.trimEnd().split('\n');
    const nameAt = lines[0]?.indexOf('NAME');
    for (const line of lines.slice(1)) expect(line.slice(nameAt ?? 0)).toMatch(/^(web|api) /);

    const page = jsonOf<Page<Project>>(await graft('projects', 'ls', '--json'));
    expect(page.nextCursor).toBeNull();
    expect(page.items.map((p) => p.name).sort()).toEqual(['api', 'web']);
  });

  it('show accepts an id or a unique name; --json prints the detail with stats', async () => {
    const byId = await graft('projects', 'show', project.id);
    expect(byId.code).toBe(0);
    expect(byId.stdout).toMatch(/^ID: +[0-9a-f-]{36}$/m);
    expect(byId.stdout).toMatch(/^Agents: +0$/m);
    const byName = await graft('projects', 'show', 'web');
    // Same output either way, up to the ages, which may tick between the two runs.
    const ageless = (text: string) => text.replace(/\(\d+[smhd] ago\)/g, '(ago)');
    expect(ageless(byName.stdout)).toBe(ageless(byId.stdout));
    const detail = jsonOf<ProjectDetail>(await graft('projects', 'show', 'web', '--json'));
    expect(detail.id).toBe(project.id);
    expect(detail.stats).toEqual({ agentsByPhase: {}, agentsTotal: 0, lastActivityAt: null });
  });

  it('register keeps the remote as typed for cloning; update sets auto-suspend of stalled agents and log retention', async () => {
    const shown = await graft('projects', 'show', 'web');
    expect(shown.stdout).toMatch(/^Clone URL: +git@github\.com:acme\/web\.git$/m);
    expect(shown.stdout).toMatch(/^Auto-suspend stalled: +off$/m);
    const on = await graft('projects', 'update', 'web', '--auto-suspend-stalled', 'on');
    expect(on.code).toBe(0);
    expect(on.stdout).toMatch(/^Auto-suspend stalled: +on$/m);
    expect(jsonOf<Project>(await graft('projects', 'update', 'web', '--auto-suspend-stalled', 'off', '--json')).autoSuspendStalled).toBe(false);
    expect(shown.stdout).toMatch(/^Log retention: +30 days$/m);
    expect(jsonOf<Project>(await graft('projects', 'update', 'web', '--log-retention-days', '90', '--json')).logRetentionDays).toBe(90);
    const tooLong = await graft('projects', 'update', 'web', '--log-retention-days', '5000');
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toContain('validation_error');
    const bad = await graft('projects', 'update', 'web', '--auto-suspend-stalled', 'maybe');
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('takes on or off');
    const nothing = await graft('projects', 'update', 'web');
    expect(nothing.code).not.toBe(0);
    expect(nothing.stderr).toContain('nothing to update');
  });

  it('show of an unknown project fails with exit 1 and one line', async () => {
    const byName = await graft('projects', 'show', 'nope');
    expect(byName.code).toBe(1);
    expect(byName.stderr).toBe('graft: no project named nope among yours (graft projects ls lists them) (code not_found)\n');
    const byId = await graft('projects', 'show', '00000000-0000-4000-8000-000000000000');
    expect(byId.code).toBe(1);
    expect(byId.stderr).toMatch(/^graft: project not found \(code not_found, request [^)]+\)\n$/);
  });

  it('register rejects a bad name with the hub validation error (exit 1)', async () => {
    const run = await graft('projects', 'register', 'Not_Valid');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(ERROR_LINE);
    expect(run.stderr).toContain('code validation_error');
  });
});

describe('graft templates', () => {
  let template: Template;

  it('create splits --command like a shell and sends env; --json prints the template', async () => {
    const run = await graft(
      'templates', 'create', 'sleeper', '--project', 'web', '--harness', 'command', '--image', 'alpine:3',
      '--command', "sh -c 'echo hi; sleep 60'", '--command', 'extra arg', '--env', 'A=1', '--env', 'B=x=y', '--json',
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    template = jsonOf<Template>(run);
    expect(template.latest.command).toEqual(['sh', '-c', 'echo hi; sleep 60', 'extra', 'arg']);
    expect(template.latest.env).toEqual({ A: '1', B: 'x=y' });
    expect(template.latest.image).toBe('alpine:3');
    expect(template.latestVersion).toBe(1);
  });

  it('create takes the runtime, network, limits and broker labels; show explains what they mean', async () => {
    const run = await graft(
      'templates', 'create', 'boxed', '--project', 'api', '--harness', 'script', '--command', 'agent.mjs',
      '--runtime', 'docker', '--no-network', '--memory-mb', '64', '--cpus', '0.5', '--label', 'gpu=a100', '--json',
    );
    expect(run.stderr).toBe('');
    const boxed = jsonOf<Template>(run);
    expect(boxed.latest).toMatchObject({ runtime: 'docker', network: false, resources: { memoryMb: 64, cpus: 0.5 }, requirements: { labels: { gpu: 'a100' } } });
    const shown = await graft('templates', 'show', boxed.id);
    expect(shown.stdout).toMatch(/^Runtime: +docker$/m);
    expect(shown.stdout).toMatch(/^Network: +no \(hub reachable through the broker only\)$/m);
    expect(shown.stdout).toMatch(/^Broker labels: +gpu=a100$/m);
    const bad = await graft('templates', 'create', 'bad', '--project', 'api', '--harness', 'command', '--runtime', 'vm');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Allowed choices are process, docker, bwrap");
  });

  it('create prints a human summary without --json', async () => {
    const run = await graft('templates', 'create', 'echo', '--project', 'web', '--harness', 'script');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Created template echo \([0-9a-f-]{36}\), version 1\.\n/);
    expect(run.stdout).toMatch(/^Harness: +script$/m);
  });

  it('a global template needs a platform admin: forbidden for a normal user', async () => {
    const run = await graft('templates', 'create', 'global-one', '--harness', 'command');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/\(code forbidden, request [^)]+\)\n$/);
  });

  it('ls lists templates as a table and filters by --project', async () => {
    const run = await graft('templates', 'ls', '--project', 'web');
    expect(run.code).toBe(0);
    const { header, rows } = tableOf(run.stdout);
    expect(header).toEqual(['ID', 'NAME', 'PROJECT', 'VERSION', 'HARNESS', 'IMAGE', 'UPDATED']);
    expect(rows.find((r) => r[0] === template.id)?.slice(1, 6)).toEqual(['sleeper', template.projectId, '1', 'command', 'alpine:3']);
    expect(rows).toHaveLength(2);
    const page = jsonOf<Page<Template>>(await graft('templates', 'ls', '--json', '--limit', '1'));
    expect(page.items).toHaveLength(1);
    expect(page.nextCursor).toEqual(expect.any(String));
  });

  it('show prints the latest version, --version a given one, and an unknown version fails', async () => {
    const run = await graft('templates', 'show', template.id);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Command: +"sh" "-c" "echo hi; sleep 60" "extra" "arg"$/m);
    expect(run.stdout).toContain('  A=1\n  B=x=y\n');
    const v1 = jsonOf<TemplateVersion>(await graft('templates', 'show', template.id, '--version', '1', '--json'));
    expect(v1).toMatchObject({ templateId: template.id, version: 1, harness: 'command' });
    const missing = await graft('templates', 'show', template.id, '--version', '7');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^graft: template has no version 7 \(code not_found, request /);
  });
});

describe('graft agents', () => {
  let agent: Agent;

  it('create makes an agent from a template by name and prints where it waits', async () => {
    const run = await graft('agents', 'create', '--project', 'web', '--name', 'fix-login', '--template', 'sleeper@1', '--task', 'Fix the login', '--label', 'ticket=42', '--env', 'DEBUG=1');
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Created agent fix-login \([0-9a-f-]{36}\) in phase created/);
    const json = jsonOf<Agent>(await graft('agents', 'create', '--project', 'web', '--name', 'second', '--template', 'echo', '--json'));
    expect(json).toMatchObject({ name: 'second', phase: 'created', desiredState: 'running' });
    const id = run.stdout.match(/\(([0-9a-f-]{36})\)/)?.[1] ?? '';
    agent = jsonOf<Agent>(await graft('agents', 'show', id, '--json'));
    expect(agent).toMatchObject({ name: 'fix-login', task: 'Fix the login', labels: { ticket: '42' }, templateVersion: 1 });
  });

  it('ls shows a table, filters by project and phase, and --json prints the page', async () => {
    const all = await graft('agents', 'ls');
    expect(all.code).toBe(0);
    expect(tableOf(all.stdout).header).toEqual(['ID', 'NAME', 'PROJECT', 'PHASE', 'ACTIVITY', 'DESIRED', 'BROKER', 'AGE']);
    expect(tableOf(all.stdout).rows).toHaveLength(2);

    const one = await graft('agents', 'ls', '--project', 'web', '--phase', 'created', '--user', 'me');
    const { header, rows } = tableOf(one.stdout);
    expect(header).toEqual(['ID', 'NAME', 'PHASE', 'ACTIVITY', 'DESIRED', 'BROKER', 'AGE']);
    expect(rows.find((r) => r[0] === agent.id)?.slice(1, 5)).toEqual(['fix-login', 'created', '-', 'running']);

    const none = await graft('agents', 'ls', '--phase', 'running');
    expect(none.stdout).toBe('No agents found.\n');

    const page = jsonOf<Page<Agent>>(await graft('agents', 'ls', '--json', '--limit', '1'));
    expect(page.items).toHaveLength(1);
    const hint = (await graft('agents', 'ls', '--limit', '1')).stdout.trimEnd().split('\n').at(-1);
    expect(hint).toBe(`More agents: add --cursor ${page.nextCursor}`);
  });

  it('show prints the agent in detail', async () => {
    const run = await graft('agents', 'show', agent.id);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Phase: +created$/m);
    expect(run.stdout).toMatch(/^Desired state: +running \(generation \d+\)$/m);
    expect(run.stdout).toMatch(/^Task: +Fix the login$/m);
  });

  it('suspend on a created agent fails with invalid_transition, exit 1, one line', async () => {
    const run = await graft('agents', 'suspend', agent.id);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(ERROR_LINE);
    expect(run.stderr).toMatch(/^graft: cannot suspend an agent in phase created \(desired running\) \(code invalid_transition, request [^)]+\)\n$/);
  });

  it('stop changes the desired state and prints it; --json prints the agent', async () => {
    const run = await graft('agents', 'stop', agent.id);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^Agent fix-login \([0-9a-f-]{36}\): desired stopped \(generation \d+\), phase stopped\.\n$/);
    const started = jsonOf<Agent>(await graft('agents', 'start', agent.id, '--json'));
    expect(started.desiredState).toBe('running');
    expect(started.generation).toBeGreaterThan(agent.generation);
  });

  it('rm deletes an unplaced agent at once; then show fails with not_found', async () => {
    const run = await graft('agents', 'rm', agent.id);
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`Deleted agent ${agent.id}.\n`);
    const gone = await graft('agents', 'show', agent.id);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/^graft: agent not found \(code not_found, request /);
    const second = jsonOf<Page<Agent>>(await graft('agents', 'ls', '--json')).items[0];
    const json = jsonOf<DeleteAgentResponse>(await graft('agents', 'rm', second?.id ?? '', '--json'));
    expect(json).toEqual({ deleted: true, agent: null });
  });

  it('the project detail counts agents by phase', async () => {
    await graft('agents', 'create', '--project', 'web', '--name', 'counted', '--template', 'echo');
    const run = await graft('projects', 'show', 'web');
    expect(run.stdout).toMatch(/^Agents: +1 \(created=1\)$/m);
  });
});
