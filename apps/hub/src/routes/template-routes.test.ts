import { GraftClient } from '@graft/client';
import type { ErrorBody, Template, TemplateVersion } from '@graft/protocol';
import { apiFailure, apiRequest, type HubFixture, startHubFixture } from '@graft/testkit';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

let fx: HubFixture;
let admin: GraftClient;
let alice: GraftClient;
let bob: GraftClient;
let carol: GraftClient;
let aliceToken: string;
let projectA: string;
let projectB: string;

const failure = apiFailure;

/** Raw request, for asserting exact status codes the typed client hides. */
const call = (method: string, path: string, token: string, body?: unknown) => apiRequest(fx.hub.url, token, method, path, body);

beforeAll(async () => {
  fx = await startHubFixture(inject('pgAdminUrl'));
  admin = new GraftClient({ baseUrl: fx.hub.url, token: fx.hub.adminToken });
  const anon = new GraftClient({ baseUrl: fx.hub.url });
  const [a, b, c] = await Promise.all([anon.devLogin('alice@tpl.test'), anon.devLogin('bob@tpl.test'), anon.devLogin('carol@tpl.test')]);
  aliceToken = a.token;
  alice = anon.withToken(a.token);
  bob = anon.withToken(b.token);
  carol = anon.withToken(c.token);
  projectA = (await alice.registerProject({ name: 'tpl-a' })).project.id;
  projectB = (await bob.registerProject({ name: 'tpl-b' })).project.id;
});
afterAll(async () => {
  await fx?.stop();
});

describe('template routes', () => {
  it('creates a template with version 1 and a sha256 content hash, and reads it back', async () => {
    const t = await alice.createTemplate({ name: 'coder', projectId: projectA, harness: 'command', command: ['echo', 'hi'], env: { A: '1' } });
    expect(t).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      name: 'coder',
      projectId: projectA,
      latestVersion: 1,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
      latest: {
        templateId: t.id,
        version: 1,
        harness: 'command',
        command: ['echo', 'hi'],
        env: { A: '1' },
        contentHash: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
        createdAt: expect.any(String),
        createdBy: expect.any(String),
      },
    });
    expect(await alice.getTemplate(t.id)).toEqual(t);
    expect(await alice.getTemplateVersion(t.id, 1)).toEqual(t.latest);
  });

  it('adds immutable versions: new content is 201 v2 with another hash, identical content is 200 with the latest', async () => {
    const t = await alice.createTemplate({ name: 'versioned', projectId: projectA, harness: 'command', command: ['one'] });
    const v2 = await call('POST', `/api/v1/templates/${t.id}/versions`, aliceToken, { harness: 'command', command: ['two'] });
    expect(v2.status).toBe(201);
    const v2body = v2.body as TemplateVersion;
    expect(v2body.version).toBe(2);
    expect(v2body.command).toEqual(['two']);
    expect(v2body.contentHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(v2body.contentHash).not.toBe(t.latest.contentHash);

    // Same content with keys in another order is the same content.
    const same = await call('POST', `/api/v1/templates/${t.id}/versions`, aliceToken, { command: ['two'], harness: 'command' });
    expect(same.status).toBe(200);
    expect(same.body).toEqual(v2body);
    expect((await alice.getTemplate(t.id)).latestVersion).toBe(2);

    // Version 1 is untouched by later versions.
    expect(await alice.getTemplateVersion(t.id, 1)).toEqual(t.latest);
    expect(await alice.getTemplateVersion(t.id, 2)).toEqual(v2body);
  });

  it('answers 404 for a version that does not exist and 400 for a malformed version number', async () => {
    const t = await alice.createTemplate({ name: 'few-versions', projectId: projectA, harness: 'script' });
    const missing = await call('GET', `/api/v1/templates/${t.id}/versions/99`, aliceToken);
    expect(missing.status).toBe(404);
    expect((missing.body as ErrorBody).error.code).toBe('not_found');
    for (const bad of ['abc', '0', '-1', '1.5']) {
      const r = await call('GET', `/api/v1/templates/${t.id}/versions/${bad}`, aliceToken);
      expect(r.status, `version ${bad}`).toBe(400);
      const err = (r.body as ErrorBody).error;
      expect(err.code).toBe('validation_error');
      expect(JSON.stringify(err.details)).toContain('params.n');
    }
  });

  it('refuses a duplicate name in the same project (409) but allows it in another project', async () => {
    await alice.createTemplate({ name: 'dup', projectId: projectA, harness: 'command' });
    const e = await failure(alice.createTemplate({ name: 'dup', projectId: projectA, harness: 'script' }));
    expect(e.status).toBe(409);
    expect(e.code).toBe('conflict');
    const other = await bob.createTemplate({ name: 'dup', projectId: projectB, harness: 'command' });
    expect(other.projectId).toBe(projectB);
  });

  it('lets only platform admins create global templates, and refuses duplicate global names', async () => {
    const e = await failure(alice.createTemplate({ name: 'global-x', harness: 'command' }));
    expect(e.status).toBe(403);
    expect(e.code).toBe('forbidden');
    const r = await call('POST', '/api/v1/templates', fx.hub.adminToken, { name: 'global-x', harness: 'command' });
    expect(r.status).toBe(201);
    expect((r.body as Template).projectId).toBeNull();
    const dup = await failure(admin.createTemplate({ name: 'global-x', harness: 'script' }));
    expect(dup.status).toBe(409);
    expect(dup.code).toBe('conflict');
    // Anyone may read a global template, but only admins may version it.
    const g = r.body as Template;
    expect((await carol.getTemplate(g.id)).name).toBe('global-x');
    const v = await failure(alice.createTemplateVersion(g.id, { harness: 'script' }));
    expect(v.status).toBe(403);
    expect(v.code).toBe('forbidden');
  });

  it('rejects an invalid harness with 400 naming the field', async () => {
    const r = await call('POST', '/api/v1/templates', aliceToken, { name: 'bad-harness', projectId: projectA, harness: 'emacs' });
    expect(r.status).toBe(400);
    const err = (r.body as ErrorBody).error;
    expect(err.code).toBe('validation_error');
    const issues = (err.details as { issues: Array<{ path: string }> }).issues;
    expect(issues.map((i) => i.path)).toContain('body.harness');
    const v = await call('POST', `/api/v1/templates/${(await alice.createTemplate({ name: 'ok-harness', projectId: projectA, harness: 'command' })).id}/versions`, aliceToken, {
      harness: 'command',
      resources: { memoryMb: 1 },
    });
    expect(v.status).toBe(400);
    expect(((v.body as ErrorBody).error.details as { issues: Array<{ path: string }> }).issues.map((i) => i.path)).toContain('body.resources.memoryMb');
  });

  it('lists global templates and those of visible projects; non-members see neither the list entries nor the template', async () => {
    const secret = await bob.createTemplate({ name: 'bobs-only', projectId: projectB, harness: 'codex' });
    const global = await admin.createTemplate({ name: 'everyone', harness: 'claude-code' });

    const carolSees = (await carol.listTemplates({ limit: 500 })).items.map((t) => t.id);
    expect(carolSees).toContain(global.id);
    expect(carolSees).not.toContain(secret.id);
    const carolGet = await failure(carol.getTemplate(secret.id));
    expect(carolGet.status).toBe(404);
    expect(carolGet.code).toBe('not_found');
    const carolVersion = await failure(carol.getTemplateVersion(secret.id, 1));
    expect(carolVersion.status).toBe(404);
    const carolFilter = await failure(carol.listTemplates({ projectId: projectB }));
    expect(carolFilter.status).toBe(404);
    expect(carolFilter.code).toBe('not_found');
    const carolNewVersion = await failure(carol.createTemplateVersion(secret.id, { harness: 'command' }));
    expect(carolNewVersion.status).toBe(404);

    const bobSees = (await bob.listTemplates({ limit: 500 })).items;
    expect(bobSees.map((t) => t.id)).toEqual(expect.arrayContaining([secret.id, global.id]));
    expect(bobSees.every((t) => t.projectId === null || t.projectId === projectB)).toBe(true);
    const bobsEntry = bobSees.find((t) => t.id === secret.id);
    expect(bobsEntry?.latest).toEqual(secret.latest);

    const narrowed = (await bob.listTemplates({ projectId: projectB, limit: 500 })).items;
    expect(narrowed.length).toBeGreaterThan(0);
    expect(narrowed.every((t) => t.projectId === projectB)).toBe(true);
    expect(narrowed.map((t) => t.id)).toContain(secret.id);

    const adminSees = (await admin.listTemplates({ limit: 500 })).items.map((t) => t.id);
    expect(adminSees).toEqual(expect.arrayContaining([secret.id, global.id]));
  });

  it('pages through a project template list without duplicates or gaps', async () => {
    const p = (await alice.registerProject({ name: 'tpl-paging' })).project.id;
    const created: string[] = [];
    for (let i = 0; i < 5; i++) created.push((await alice.createTemplate({ name: `page-${i}`, projectId: p, harness: 'command' })).id);
    const seen: string[] = [];
    const pageSizes: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await alice.listTemplates({ projectId: p, limit: 2, ...(cursor ? { cursor } : {}) });
      pageSizes.push(page.items.length);
      seen.push(...page.items.map((t) => t.id));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(pageSizes).toEqual([2, 2, 1]);
    expect(seen).toEqual([...created].sort());
    const bad = await failure(alice.listTemplates({ projectId: p, cursor: 'garbage' }));
    expect(bad.status).toBe(400);
    expect(bad.code).toBe('validation_error');
  });

  it('numbers 10 concurrent new versions 2..11 with no gaps or duplicates', async () => {
    const t = await alice.createTemplate({ name: 'racy', projectId: projectA, harness: 'command', command: ['v1'] });
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => call('POST', `/api/v1/templates/${t.id}/versions`, aliceToken, { harness: 'command', command: [`run-${i}`] })),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(201));
    const versions = answers.map((a) => (a.body as TemplateVersion).version).sort((x, y) => x - y);
    expect(versions).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect((await alice.getTemplate(t.id)).latestVersion).toBe(11);
    // Each stored version holds exactly the content that was answered for it.
    for (const a of answers) {
      const v = a.body as TemplateVersion;
      expect(await alice.getTemplateVersion(t.id, v.version)).toEqual(v);
    }
  });
});
