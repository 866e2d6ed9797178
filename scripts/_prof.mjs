import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { startTestPostgres, createFreshDatabase, apiRequest } from '@graft/testkit';
const scenario = process.argv[2] ?? 'get';
const pg = await startTestPostgres();
const db = await createFreshDatabase(pg.adminUrl);
const admin = randomBytes(32).toString('hex');
const hub = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir=/tmp/prof', 'apps/hub/dist/main.js'], { env: { PATH: process.env.PATH, DATABASE_URL: db.url, GRAFT_HUB_PORT: '18099', GRAFT_DATA_DIR: '/tmp/prof/data', GRAFT_MASTER_KEY: randomBytes(32).toString('hex'), GRAFT_ADMIN_TOKEN: admin, GRAFT_AUTO_MIGRATE: '1', GRAFT_LOG_LEVEL: 'warn' }, stdio: 'inherit' });
await new Promise((r) => setTimeout(r, 2500));
const base = 'http://127.0.0.1:18099';
const p = (await apiRequest(base, admin, 'POST', '/api/v1/projects/register', { name: 'p' })).body.project.id;
await apiRequest(base, admin, 'POST', '/api/v1/templates', { name: 't', projectId: p, harness: 'command' });
const a = (await apiRequest(base, admin, 'POST', '/api/v1/agents', { projectId: p, name: 'a', template: 't' })).body.id;
const tok = (await apiRequest(base, admin, 'POST', `/api/v1/agents/${a}/token`)).body.token;
for (const phase of ['provisioning', 'starting', 'running']) await apiRequest(base, tok, 'POST', `/api/v1/agents/${a}/status`, { phase });
if (scenario === 'list') {
  const pgmod = (await import('pg')).default; const c = new pgmod.Client({ connectionString: db.url }); await c.connect();
  await c.query(`INSERT INTO agents (id, project_id, name, template_id, template_version, phase, desired_state, env, labels, task) SELECT gen_random_uuid(), project_id, 'x' || g, template_id, 1, 'created', 'running', '{}', '{"team":"core"}', 'do the thing number ' || g FROM agents, generate_series(1, 200) g WHERE id = $1`, [a]);
  await c.end();
}
const opts = scenario === 'list' ? { url: `${base}/api/v1/agents?limit=50`, headers: { authorization: `Bearer ${admin}` } } : scenario === 'get'
  ? { url: `${base}/api/v1/agents/${a}`, headers: { authorization: `Bearer ${admin}` } }
  : { url: `${base}/api/v1/agents/${a}/status`, method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: JSON.stringify({ activity: 'thinking' }) };
const r = await autocannon({ ...opts, connections: 10, duration: 8 });
console.log(scenario, 'req/s', r.requests.average, 'p50', r.latency.p50, 'p99', r.latency.p99, 'non2xx', r.non2xx);
hub.kill('SIGTERM');
await new Promise((r) => hub.on('exit', r));
await db.drop(); await pg.stop();
