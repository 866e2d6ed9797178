import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TunnelCloseCode } from '@graft/protocol';
import { createFreshDatabase, type FreshDatabase, type HubProcess, registerAndJoinBroker, SimBroker, startHubProcess, waitUntil } from '@graft/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { createBrokerMetrics } from '../apps/broker/src/broker-metrics.js';
import { loadBrokerConfig } from '../apps/broker/src/config.js';
import { loadHubConfig } from '../apps/hub/src/config.js';
import { createHubMetrics } from '../apps/hub/src/http/metrics.js';
import { freePort } from './support/free-port.js';
import { renderGraftNginxConf } from './support/nginx-balancer.js';

// The deployment material under deploy/: every file parses, agrees with the others (ports, paths,
// variable names, metric names) and with the code, and the nginx config really fronts two replicas.

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEPLOY = join(ROOT, 'deploy');
const read = (path: string): string => readFileSync(join(DEPLOY, path), 'utf8');

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
/** A mapping inside parsed YAML/JSON; fails the test, naming the path, when it is not one. */
function obj(v: unknown, what: string): Obj {
  if (!isObj(v)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
}
function list(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list, got ${JSON.stringify(v)}`);
  return v;
}

/** YAML 1.1 merge keys (`<<: *hub`) resolved, as compose does; duplicate keys are errors. */
const yaml = (path: string): unknown => parseYaml(read(path), { merge: true, uniqueKeys: true, prettyErrors: true });

/** KEY=value lines of an env file (comments and blank lines skipped). */
function envFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of read(path).split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

/** Placeholders of the examples, replaced by what an operator would put there. */
function filled(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, /^CHANGE_ME_64_HEX/.test(v) ? randomBytes(32).toString('hex') : v]));
}

/** Names of the variables an app's config.ts reads (the keys of its zod env schema). */
function configKeys(path: string): Set<string> {
  return new Set([...readFileSync(join(ROOT, path), 'utf8').matchAll(/^\s+([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1] ?? ''));
}

/** Every variable any process of ours reads: the hub, the broker, the broker image's entrypoint. */
const KNOWN_VARS = new Set([
  ...configKeys('apps/hub/src/config.ts'),
  ...configKeys('apps/broker/src/config.ts'),
  ...[...read('docker/broker-entrypoint.sh').matchAll(/\$\{?([A-Z][A-Z0-9_]+)/g)].map((m) => m[1] ?? ''),
]);

function expectKnownVars(vars: Iterable<string>, where: string): void {
  const unknown = [...vars].filter((v) => !KNOWN_VARS.has(v));
  expect(unknown, `${where} sets variables no Graft process reads`).toEqual([]);
}

// --- compose ---------------------------------------------------------------------------------

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  env_file?: Array<string | { path: string; required?: boolean }>;
  environment?: Record<string, string>;
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  profiles?: string[];
}

function composeServices(): Record<string, ComposeService> {
  return obj(obj(yaml('compose/compose.yaml'), 'compose.yaml').services, 'services') as Record<string, ComposeService>;
}

function envFilesOf(s: ComposeService): string[] {
  return (s.env_file ?? []).map((e) => (typeof e === 'string' ? e : e.path));
}

/** What a compose service's processes see: its env files (from their examples), then `environment`. */
function composeEnv(s: ComposeService): Record<string, string> {
  const examples: Record<string, string> = { '.env': 'compose/env.example', 'broker.env': 'compose/broker.env.example' };
  const fromFiles = envFilesOf(s).map((f) => {
    const example = examples[f];
    if (!example) throw new Error(`no example for env file ${f}`);
    return envFile(example);
  });
  return filled(Object.assign({}, ...fromFiles, s.environment ?? {}));
}

describe('deploy/compose/compose.yaml', () => {
  it('has the cluster services, each with a healthcheck, the one-shot migration before the replicas', () => {
    const services = composeServices();
    for (const name of ['postgres', 'redis', 'migrate', 'hub1', 'hub2', 'nginx', 'broker']) expect(Object.keys(services)).toContain(name);
    for (const name of ['postgres', 'redis', 'hub1', 'hub2', 'nginx', 'broker']) {
      expect(services[name]?.healthcheck?.test.length, `${name} healthcheck`).toBeGreaterThan(1);
    }
    expect(services.migrate?.command).toEqual(['hub', 'migrate']);
    for (const hub of ['hub1', 'hub2']) {
      const s = services[hub];
      expect(s?.command).toEqual(['hub', 'start']);
      expect(s?.depends_on?.migrate?.condition).toBe('service_completed_successfully');
      expect(s?.depends_on?.redis?.condition).toBe('service_healthy');
    }
    expect(services.migrate?.depends_on?.postgres?.condition).toBe('service_healthy');
    expect(services.nginx?.depends_on?.hub1?.condition).toBe('service_healthy');
    expect(services.nginx?.depends_on?.hub2?.condition).toBe('service_healthy');
  });

  it('gives migrate and both replicas the same valid hub configuration, in cluster mode', () => {
    const services = composeServices();
    const [migrate, hub1, hub2] = [services.migrate, services.hub1, services.hub2];
    if (!migrate || !hub1 || !hub2) throw new Error('hub services missing');
    expect(envFilesOf(hub1)).toEqual(['.env']);
    expect(envFilesOf(hub2)).toEqual(envFilesOf(hub1));
    expect(envFilesOf(migrate)).toEqual(envFilesOf(hub1));
    expect(hub2.environment).toEqual(hub1.environment);
    expect(hub1.image).toBe(migrate.image);
    const example = envFile('compose/env.example');
    for (const key of ['DATABASE_URL', 'REDIS_URL', 'GRAFT_MASTER_KEY']) expect(Object.keys(example)).toContain(key);
    expectKnownVars(Object.keys(example).filter((k) => k !== 'POSTGRES_PASSWORD' && k !== 'GRAFT_HTTP_PORT'), 'compose/env.example');
    // The two compose-only ones are used by compose.yaml itself.
    expect(read('compose/compose.yaml')).toContain('${POSTGRES_PASSWORD');
    expect(read('compose/compose.yaml')).toContain('${GRAFT_HTTP_PORT');
    // DATABASE_URL carries the password Postgres is started with.
    expect(new URL(example.DATABASE_URL ?? '').password).toBe(example.POSTGRES_PASSWORD);

    const config = loadHubConfig(composeEnv(hub1));
    expect(config.redisUrl).toMatch(/^redis:\/\/redis:/);
    expect(config.storage.databaseUrl).toMatch(/@postgres:5432\//);
    expect(config.http).toMatchObject({ host: '0.0.0.0', port: 8080 });
    // The fs archive is the volume every replica mounts.
    if (config.logArchive.kind !== 'fs') throw new Error('expected the fs log archive');
    const archiveDir = config.logArchive.dir;
    for (const hub of [hub1, hub2]) expect(hub.volumes?.map((v) => v.split(':')[1])).toContain(archiveDir);
  });

  it('keeps the database and master key away from the broker, whose settings are valid', () => {
    const broker = composeServices().broker;
    if (!broker) throw new Error('broker service missing');
    expect(envFilesOf(broker)).toEqual(['broker.env']);
    const env = composeEnv(broker);
    expect(env.GRAFT_MASTER_KEY).toBeUndefined();
    expect(env.DATABASE_URL).toBeUndefined();
    expect(Object.keys(env)).toEqual(expect.arrayContaining(['GRAFT_HUB_URL', 'GRAFT_BROKER_ID', 'GRAFT_BROKER_JOIN_TOKEN']));
    expectKnownVars(Object.keys(env), 'the compose broker');
    const config = loadBrokerConfig(env);
    expect(config.api).toEqual({ host: '0.0.0.0', port: 9800 });
    expect(broker.volumes?.map((v) => v.split(':')[1])).toContain(config.dataDir);
  });

  it('builds from files that exist and mounts the nginx config and monitoring files that exist', () => {
    const services = composeServices();
    const composeDir = join(DEPLOY, 'compose');
    for (const [name, s] of Object.entries(services)) {
      if (s.build) expect(existsSync(join(composeDir, s.build.context, s.build.dockerfile)), `${name} dockerfile`).toBe(true);
      for (const v of s.volumes ?? []) {
        const source = v.split(':')[0] ?? '';
        if (source.startsWith('.')) expect(existsSync(join(composeDir, source)), `${name} mounts ${source}`).toBe(true);
      }
    }
    expect(services.nginx?.volumes).toContain('../nginx/graft.conf:/etc/nginx/conf.d/default.conf:ro');
    expect(services.prometheus?.profiles).toEqual(['monitoring']);
  });
});

// --- kubernetes ------------------------------------------------------------------------------

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Obj;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: Array<{ name?: string; containerPort: number }>;
  env?: Array<{ name: string; value?: string; valueFrom?: unknown }>;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface PodSpec {
  terminationGracePeriodSeconds?: number;
  containers: Container[];
  initContainers?: Container[];
  volumes?: Array<{ name: string; hostPath?: { path: string }; secret?: { secretName: string }; persistentVolumeClaim?: { claimName: string } }>;
}
interface PodTemplate {
  metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}

function kustomization(): { resources: string[]; images: Array<{ name: string }>; namespace: string } {
  return yaml('k8s/kustomization.yaml') as { resources: string[]; images: Array<{ name: string }>; namespace: string };
}

function k8sObjects(): K8sObject[] {
  const out: K8sObject[] = [];
  for (const file of kustomization().resources) {
    for (const doc of parseAllDocuments(read(join('k8s', file)))) {
      expect(doc.errors, file).toEqual([]);
      const o = doc.toJS() as K8sObject | null;
      if (o) out.push(o);
    }
  }
  return out;
}

function k8s(kind: string, name: string): K8sObject {
  const found = k8sObjects().find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/k8s`);
  return found;
}

function podTemplate(o: K8sObject): PodTemplate {
  return obj(o.spec, `${o.kind} ${o.metadata.name} spec`).template as PodTemplate;
}

function container(o: K8sObject, name: string): Container {
  const c = podTemplate(o).spec.containers.find((x) => x.name === name);
  if (!c) throw new Error(`${o.kind} ${o.metadata.name} has no container ${name}`);
  return c;
}

/** A probe's port as a number (named ports resolved against the container's). */
function probePort(c: Container, probe: Probe | undefined): number | undefined {
  const port = probe?.httpGet?.port;
  return typeof port === 'number' ? port : c.ports?.find((p) => p.name === port)?.containerPort;
}

/** The environment a container gets from its ConfigMaps and Secrets (Secrets from their examples). */
function k8sEnv(c: Container): Record<string, string> {
  const secretExamples: Record<string, string> = { 'graft-hub': 'k8s/hub-secret.example.yaml', 'graft-broker-join': 'k8s/broker-join-secret.example.yaml' };
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, k8s('ConfigMap', from.configMapRef.name).data);
    if (from.secretRef) {
      const example = secretExamples[from.secretRef.name];
      if (!example) throw new Error(`no example for Secret ${from.secretRef.name}`);
      Object.assign(env, (yaml(example) as K8sObject).stringData);
    }
  }
  for (const e of c.env ?? []) env[e.name] = e.value ?? 'node-a';
  return filled(env);
}

describe('deploy/k8s', () => {
  it('lists resources that exist and parse into named Kubernetes objects, using only the images it maps', () => {
    const k = kustomization();
    expect(k.namespace).toBe('graft');
    for (const file of k.resources) expect(existsSync(join(DEPLOY, 'k8s', file)), file).toBe(true);
    const objects = k8sObjects();
    for (const o of objects) {
      expect(o.apiVersion, o.metadata?.name).toMatch(/^[a-z.]*\/?v\d/);
      expect(o.metadata.name).toMatch(/^[a-z0-9-]+$/);
    }
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(kinds).toEqual(
      expect.arrayContaining(['Namespace/graft', 'Deployment/graft-hub', 'Service/graft-hub', 'Job/graft-hub-migrate', 'DaemonSet/graft-broker', 'PodDisruptionBudget/graft-hub']),
    );
    const mapped = k.images.map((i) => i.name);
    for (const o of objects.filter((x) => isObj(x.spec) && 'template' in x.spec)) {
      const spec = podTemplate(o).spec;
      for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) expect(mapped, `${o.metadata.name}/${c.name}`).toContain(c.image);
    }
  });

  it('runs N hub replicas with readiness on /readyz, liveness on /healthz and a preStop pause inside the grace period', () => {
    const deploy = k8s('Deployment', 'graft-hub');
    expect(obj(deploy.spec, 'spec').replicas).toBe(2);
    const hub = container(deploy, 'hub');
    expect(hub.args).toEqual(['hub', 'start']);
    expect(hub.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(hub.livenessProbe?.httpGet?.path).toBe('/healthz');
    const config = loadHubConfig(k8sEnv(hub));
    expect(probePort(hub, hub.readinessProbe)).toBe(config.http.port);
    expect(probePort(hub, hub.livenessProbe)).toBe(config.http.port);
    expect(config.http.host).toBe('0.0.0.0');
    expect(config.redisUrl).toBeDefined();
    const pause = hub.lifecycle?.preStop?.exec?.command;
    expect(pause?.[0]).toBe('sleep');
    const grace = podTemplate(deploy).spec.terminationGracePeriodSeconds ?? 30;
    // The hub's own shutdown deadline is 15 s (main.ts, graft hub start).
    expect(grace).toBeGreaterThan(Number(pause?.[1]) + 15);
    const annotations = podTemplate(deploy).metadata.annotations ?? {};
    expect(annotations['prometheus.io/scrape']).toBe('true');
    expect(Number(annotations['prometheus.io/port'])).toBe(config.http.port);
    // The shared archive is the volume mounted where the config points.
    if (config.logArchive.kind === 'fs') expect(hub.volumeMounts?.map((m) => m.mountPath)).toContain(config.logArchive.dir);
  });

  it('routes the Service and the PodDisruptionBudget to the hub pods', () => {
    const labels = podTemplate(k8s('Deployment', 'graft-hub')).metadata.labels;
    for (const [kind, selector] of [
      ['Service', obj(k8s('Service', 'graft-hub').spec, 'spec').selector],
      ['PodDisruptionBudget', obj(obj(k8s('PodDisruptionBudget', 'graft-hub').spec, 'spec').selector, 'selector').matchLabels],
    ] as const) {
      for (const [k, v] of Object.entries(obj(selector, kind))) expect(labels[k], `${kind} selector ${k}`).toBe(v);
    }
    const port = list(obj(k8s('Service', 'graft-hub').spec, 'spec').ports, 'ports')[0];
    const hub = container(k8s('Deployment', 'graft-hub'), 'hub');
    expect(hub.ports?.map((p) => p.name)).toContain(obj(port, 'port').targetPort);
  });

  it('migrates with a Job of the same image and configuration as the replicas', () => {
    const job = k8s('Job', 'graft-hub-migrate');
    const migrate = container(job, 'migrate');
    const hub = container(k8s('Deployment', 'graft-hub'), 'hub');
    expect(migrate.args).toEqual(['hub', 'migrate']);
    expect(migrate.image).toBe(hub.image);
    expect(migrate.envFrom).toEqual(hub.envFrom);
  });

  it('runs a broker per node that joins with its token from a Secret and keeps its data dir on the node at the same path', () => {
    const ds = k8s('DaemonSet', 'graft-broker');
    const broker = container(ds, 'broker');
    const env = k8sEnv(broker);
    expectKnownVars(Object.keys(env), 'the broker DaemonSet');
    const config = loadBrokerConfig(env);
    expect(probePort(broker, broker.livenessProbe)).toBe(config.api.port);
    expect(broker.livenessProbe?.httpGet?.path).toBe('/healthz');
    expect(config.api.host).toBe('0.0.0.0');
    const volumes = podTemplate(ds).spec.volumes ?? [];
    const dataMount = broker.volumeMounts?.find((m) => m.mountPath === config.dataDir);
    const dataVolume = volumes.find((v) => v.name === dataMount?.name);
    expect(dataVolume?.hostPath?.path).toBe(config.dataDir);
    const joinMount = broker.volumeMounts?.find((m) => m.mountPath === env.GRAFT_BROKER_JOIN_DIR);
    expect(volumes.find((v) => v.name === joinMount?.name)?.secret?.secretName).toBe('graft-broker-join');
    expect(broker.env?.find((e) => e.name === 'GRAFT_NODE_NAME')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'spec.nodeName' } });
    // The Secret's keys are what the entrypoint looks for: <node>.broker-id and <node>.token.
    const keys = Object.keys((yaml('k8s/broker-join-secret.example.yaml') as K8sObject).stringData ?? {});
    expect(keys).toEqual(['node-a.broker-id', 'node-a.token']);
    expect(read('docker/broker-entrypoint.sh')).toContain('$GRAFT_BROKER_JOIN_DIR/$GRAFT_NODE_NAME.token');
  });

  it('sets only variables the hub reads, in its ConfigMap and Secret template', () => {
    expectKnownVars(Object.keys(k8s('ConfigMap', 'graft-hub').data ?? {}), 'k8s/hub-config.yaml');
    expectKnownVars(Object.keys((yaml('k8s/hub-secret.example.yaml') as K8sObject).stringData ?? {}), 'k8s/hub-secret.example.yaml');
  });
});

// --- nginx -----------------------------------------------------------------------------------

/** nginx on PATH, or a failure that says so (this check is not optional). */
function nginxBinary(): string {
  const probe = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  if (probe.error) throw new Error(`nginx is not on PATH (${probe.error.message}): install it (apt-get install nginx) to check deploy/nginx/graft.conf`);
  return 'nginx';
}

/** graft.conf with its upstream servers and listen address replaced; fails when the patterns are gone. */
function renderNginx(upstreams: string[], listen: string): string {
  const conf = read('nginx/graft.conf');
  const servers = [...conf.matchAll(/^\s*server\s+([a-z0-9.-]+:\d+)[^;]*;/gm)].map((m) => m[1]);
  expect(servers.length, 'upstream servers in graft.conf').toBe(upstreams.length);
  expect(conf).toMatch(/^\s*listen 80;$/m);
  return renderGraftNginxConf(upstreams, [listen]);
}

function nginxMain(dir: string, include: string): string {
  return `pid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nworker_processes 1;\nevents { worker_connections 256; }\nhttp {\n  access_log off;\n  include ${include};\n}\n`;
}

describe('deploy/nginx/graft.conf', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('passes nginx -t', () => {
    const nginx = nginxBinary();
    dir = mkdtempSync(join(tmpdir(), 'graft-nginx-t-'));
    writeFileSync(join(dir, 'graft.conf'), renderNginx(['127.0.0.1:8080', '127.0.0.1:8081'], '127.0.0.1:8088'));
    writeFileSync(join(dir, 'nginx.conf'), nginxMain(dir, join(dir, 'graft.conf')));
    const r = spawnSync(nginx, ['-t', '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain('test is successful');
  });

  it('fronts exactly the compose hub replicas, with the body limit of the hub', () => {
    const conf = read('nginx/graft.conf');
    const upstreams = [...conf.matchAll(/^\s*server\s+([a-z0-9.-]+:\d+)/gm)].map((m) => m[1]);
    const services = composeServices();
    const hubs = Object.entries(services)
      .filter(([, s]) => s.command?.join(' ') === 'hub start')
      .map(([name, s]) => `${name}:${s.environment?.GRAFT_HUB_PORT}`);
    expect(upstreams.sort()).toEqual(hubs.sort());
    const limit = /BODY_LIMIT = '(\d+)mb'/.exec(readFileSync(join(ROOT, 'apps/hub/src/http/create-app.ts'), 'utf8'))?.[1];
    expect(limit).toBeDefined();
    expect(conf).toMatch(new RegExp(`^\\s*client_max_body_size ${limit}m;`, 'm'));
  });
});

describe('two hub replicas behind deploy/nginx/graft.conf', () => {
  let database: FreshDatabase | undefined;
  let hubs: HubProcess[] = [];
  let nginx: ChildProcess | undefined;
  let dir: string | undefined;
  let url = '';
  const adminToken = randomBytes(32).toString('hex');
  const brokers: SimBroker[] = [];

  beforeAll(async () => {
    const bin = nginxBinary();
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    database = await createFreshDatabase(inject('pgAdminUrl'));
    const masterKey = randomBytes(32).toString('hex');
    const env = { REDIS_URL: inject('redisUrl'), GRAFT_REDIS_PREFIX: `deploy-${randomBytes(6).toString('hex')}`, GRAFT_ADMIN_TOKEN: adminToken, GRAFT_MASTER_KEY: masterKey, GRAFT_HUB_PUBLIC_URL: url };
    const dbUrl = database.url;
    hubs = await Promise.all([0, 1].map(() => startHubProcess({ databaseUrl: dbUrl, env })));
    dir = mkdtempSync(join(tmpdir(), 'graft-nginx-'));
    // Started as root, nginx's workers run as nobody and must reach their temp dirs under this one.
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, 'graft.conf'), renderNginx(hubs.map((h) => `127.0.0.1:${h.port}`), `127.0.0.1:${port}`));
    writeFileSync(join(dir, 'nginx.conf'), nginxMain(dir, join(dir, 'graft.conf')));
    const started = spawn(bin, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    nginx = started;
    let stderr = '';
    started.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    await waitUntil(async () => {
      if (started.exitCode !== null) throw new Error(`nginx exited with ${started.exitCode}: ${stderr}`);
      return fetch(`${url}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
    }, 10_000);
  });

  afterAll(async () => {
    await Promise.all(brokers.map((b) => b.close()));
    if (nginx && nginx.exitCode === null) {
      const exited = new Promise((ok) => nginx?.once('exit', ok));
      nginx.kill('SIGTERM');
      await exited;
    }
    await Promise.all(hubs.map((h) => h.stop()));
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('proxies the API and hides /metrics, which each replica serves without authentication', async () => {
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    const me = await fetch(`${url}/api/v1/auth/me`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(me.status).toBe(200);
    expect(me.headers.get('x-request-id')).toMatch(/^[0-9a-f]{32}$/);
    expect((await fetch(`${url}/metrics`)).status).toBe(404);
    for (const hub of hubs) {
      const direct = await fetch(`${hub.url}/metrics`);
      expect(direct.status).toBe(200);
      expect(await direct.text()).toContain('graft_http_request_duration_seconds');
    }
  });

  it('carries a broker join and its signed tunnel upgrade, and hands the tunnel to the other replica when one stops', async () => {
    const joined = await registerAndJoinBroker(url, adminToken, { name: 'behind-nginx', autoProvide: true });
    const first = new SimBroker({ hubUrl: url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    brokers.push(first);
    const dial = await first.connect();
    expect(dial.ok).toBe(true);
    const owner = await waitUntil(async () => hubs.find((h) => h.logs.some((l) => l.event === 'tunnel.connected' && l.brokerId === joined.brokerId)));
    const other = hubs.find((h) => h !== owner);
    expect(await owner.stop('SIGTERM', 20_000)).toBe(0);
    await waitUntil(async () => first.closes.includes(TunnelCloseCode.goingAway));
    // nginx skips the stopped replica (connection refused) and the broker lands on the other one.
    const second = new SimBroker({ hubUrl: url, brokerId: joined.brokerId, secretKey: joined.secretKey });
    brokers.push(second);
    expect((await second.connect()).ok).toBe(true);
    await waitUntil(async () => other?.logs.some((l) => l.event === 'tunnel.connected' && l.brokerId === joined.brokerId));
    for (let i = 0; i < 4; i++) expect((await fetch(`${url}/readyz`)).status).toBe(200);
  });
});

// --- systemd ---------------------------------------------------------------------------------

const UNITS = ['graft-hub.service', 'graft-hub-migrate.service', 'graft-broker.service'];

/** [Section] → key → values (a key may repeat). */
function parseUnit(source: string, file: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  source.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const section = /^\[([A-Za-z]+)\]$/.exec(line);
    if (section?.[1]) {
      current = new Map();
      sections.set(section[1], current);
      return;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    if (!kv?.[1] || kv[2] === undefined || !current) throw new Error(`${file}:${i + 1}: not a key=value line in a section: ${line}`);
    current.set(kv[1], [...(current.get(kv[1]) ?? []), kv[2]]);
  });
  return sections;
}

describe('deploy/systemd', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('has units systemd accepts without a warning (systemd-analyze verify, else a parse of the sections)', () => {
    const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    for (const unit of UNITS) {
      const source = read(join('systemd', unit));
      const sections = parseUnit(source, unit);
      expect([...sections.keys()], unit).toEqual(['Unit', 'Service', 'Install']);
      if (analyze.error) continue;
      // verify checks that ExecStart's binary exists: point it at this node.
      const d = mkdtempSync(join(tmpdir(), 'graft-units-'));
      dir = d;
      writeFileSync(join(d, unit), source.replaceAll('/usr/bin/node ', `${process.execPath} `));
      const r = spawnSync('systemd-analyze', ['verify', join(d, unit)], { encoding: 'utf8', env: { ...process.env, SYSTEMD_LOG_COLOR: '0' } });
      expect(r.status, `${unit}: ${r.stderr}`).toBe(0);
      // Unknown keys and bad values are only warnings (exit 0): any output is a failure here.
      expect(`${r.stdout}${r.stderr}`.trim(), unit).toBe('');
      rmSync(d, { recursive: true, force: true });
    }
  });

  it('run graft hub start|migrate and graft broker start from an environment file, hardened, stopping with SIGTERM in time', () => {
    const units = new Map(UNITS.map((u) => [u, parseUnit(read(join('systemd', u)), u)]));
    const key = (unit: string, k: string): string | undefined => units.get(unit)?.get('Service')?.get(k)?.at(-1);
    expect(key('graft-hub.service', 'ExecStart')).toMatch(/ hub start$/);
    expect(key('graft-hub-migrate.service', 'ExecStart')).toMatch(/ hub migrate$/);
    expect(key('graft-hub-migrate.service', 'Type')).toBe('oneshot');
    expect(key('graft-broker.service', 'ExecStart')).toMatch(/ broker start$/);
    expect(key('graft-hub.service', 'EnvironmentFile')).toBe('/etc/graft/hub.env');
    expect(key('graft-hub-migrate.service', 'EnvironmentFile')).toBe('/etc/graft/hub.env');
    expect(key('graft-broker.service', 'EnvironmentFile')).toMatch(/^-?\/etc\/graft\/broker\.env$/);
    for (const unit of ['graft-hub.service', 'graft-broker.service']) {
      expect(key(unit, 'Restart'), unit).toBe('on-failure');
      expect(key(unit, 'KillSignal'), unit).toBe('SIGTERM');
    }
    // Longer than the hub's own 15 s shutdown deadline.
    expect(Number.parseInt(key('graft-hub.service', 'TimeoutStopSec') ?? '0', 10)).toBeGreaterThan(15);
    // Agents outlive a broker restart: only the daemon gets the signal.
    expect(key('graft-broker.service', 'KillMode')).toBe('process');
    for (const unit of UNITS) {
      expect(key(unit, 'NoNewPrivileges'), unit).toBe('yes');
      expect(key(unit, 'ProtectSystem'), unit).toBe('strict');
      expect(key(unit, 'PrivateTmp'), unit).toBe('yes');
      // The data dir the unit gives the process is the one it may write.
      const dataDir = units.get(unit)?.get('Service')?.get('Environment')?.find((e) => /^GRAFT_(BROKER_)?DATA_DIR=/.test(e))?.split('=')[1];
      expect(dataDir, `${unit} data dir`).toMatch(/^\/var\/lib\//);
      expect(units.get(unit)?.get('Service')?.get('ReadWritePaths'), unit).toContain(dataDir);
    }
    // The broker keeps what bwrap needs: no namespace restrictions, no private /proc.
    for (const k of ['RestrictNamespaces', 'PrivateUsers', 'ProtectKernelTunables', 'ProtectProc']) expect(key('graft-broker.service', k), k).toBeUndefined();
  });

  it('ships environment files the hub and the broker accept', () => {
    const hubEnv = filled(envFile('systemd/hub.env.example'));
    expectKnownVars(Object.keys(hubEnv), 'systemd/hub.env.example');
    const hub = loadHubConfig(hubEnv);
    expect(hub.redisUrl).toBeDefined();
    expect(hub.storage.databaseUrl).toBeDefined();
    const brokerEnv = envFile('systemd/broker.env.example');
    expectKnownVars(Object.keys(brokerEnv), 'systemd/broker.env.example');
    expect(loadBrokerConfig(brokerEnv).agents.runtimes).toEqual(['process', 'bwrap']);
  });
});

// --- grafana and prometheus ------------------------------------------------------------------

interface Panel {
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: Array<{ expr: string; datasource?: { uid: string } }>;
}

/** Names of the series the hub and the broker register (histograms add _bucket, _sum, _count). */
function registeredMetricNames(): Set<string> {
  const hub = createHubMetrics({
    replicaId: 'test',
    agents: async () => [],
    pending: async () => [],
    heartbeatAges: async () => [],
    jobCounts: async () => ({}),
  });
  const broker = createBrokerMetrics(() => new Map());
  return new Set([...hub.registry.getMetricsAsArray(), ...broker.registry.getMetricsAsArray()].map((m) => m.name));
}

describe('deploy/grafana/graft-dashboard.json', () => {
  const dashboard = JSON.parse(read('grafana/graft-dashboard.json')) as {
    schemaVersion: number;
    uid: string;
    panels: Panel[];
    templating: { list: Array<{ name: string; type: string; query: string }> };
  };

  it('queries only metrics the hub or the broker registers', () => {
    const registered = registeredMetricNames();
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr);
    expect(exprs.length).toBeGreaterThan(20);
    const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\bgraft_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))));
    expect(used.size).toBeGreaterThan(20);
    const missing = [...used].filter((name) => !registered.has(name)).sort();
    expect(missing, 'metrics on the dashboard that neither createHubMetrics nor createBrokerMetrics registers').toEqual([]);
  });

  it('is a Grafana dashboard on a Prometheus data source variable, with panels that do not overlap', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
    const variable = dashboard.templating.list.find((v) => v.type === 'datasource');
    expect(variable?.query).toBe('prometheus');
    const ref = `\${${variable?.name}}`;
    for (const p of dashboard.panels.filter((x) => x.type !== 'row')) {
      expect(p.datasource?.uid, p.title).toBe(ref);
      for (const t of p.targets ?? []) expect(t.datasource?.uid ?? ref, p.title).toBe(ref);
    }
    const cells = new Map<string, string>();
    for (const p of dashboard.panels) {
      const { x, y, w, h } = p.gridPos;
      expect(x + w, p.title).toBeLessThanOrEqual(24);
      for (let i = x; i < x + w; i++) {
        for (let j = y; j < y + h; j++) {
          const taken = cells.get(`${i},${j}`);
          expect(taken, `"${p.title}" overlaps "${taken}"`).toBeUndefined();
          cells.set(`${i},${j}`, p.title);
        }
      }
    }
  });
});

describe('deploy/prometheus', () => {
  interface ScrapeConfig {
    job_name: string;
    metrics_path?: string;
    static_configs?: Array<{ targets: string[] }>;
    kubernetes_sd_configs?: unknown[];
  }
  const scrapes = (file: string): ScrapeConfig[] => (yaml(file) as { scrape_configs: ScrapeConfig[] }).scrape_configs;

  it('scrapes every compose hub replica and the broker on the ports they listen on', () => {
    const services = composeServices();
    const jobs = new Map(scrapes('prometheus/prometheus.yml').map((s) => [s.job_name, s]));
    const hubTargets = jobs.get('graft-hub')?.static_configs?.flatMap((c) => c.targets) ?? [];
    const hubServices = Object.entries(services).filter(([, s]) => s.command?.join(' ') === 'hub start');
    expect(hubTargets.sort()).toEqual(hubServices.map(([name, s]) => `${name}:${loadHubConfig(composeEnv(s)).http.port}`).sort());
    const broker = services.broker;
    if (!broker) throw new Error('broker service missing');
    expect(jobs.get('graft-broker')?.static_configs?.flatMap((c) => c.targets)).toEqual([`broker:${loadBrokerConfig(composeEnv(broker)).api.port}`]);
    for (const job of jobs.values()) expect(job.metrics_path ?? '/metrics').toBe('/metrics');
  });

  it('discovers the Kubernetes pods by the annotations the manifests carry', () => {
    const jobs = scrapes('prometheus/prometheus-kubernetes.yml');
    expect(jobs.map((j) => j.job_name).sort()).toEqual(['graft-broker', 'graft-hub']);
    for (const j of jobs) expect(j.kubernetes_sd_configs?.length, j.job_name).toBe(1);
    const source = read('prometheus/prometheus-kubernetes.yml');
    for (const o of [k8s('Deployment', 'graft-hub'), k8s('DaemonSet', 'graft-broker')]) {
      expect(source).toContain(`regex: ${podTemplate(o).metadata.labels['app.kubernetes.io/name']}`);
      expect(podTemplate(o).metadata.annotations?.['prometheus.io/scrape']).toBe('true');
    }
  });
});

// --- docker ----------------------------------------------------------------------------------

/** Instructions of a Dockerfile: continuation lines joined, comments dropped. */
function dockerfile(path: string): Array<{ op: string; args: string }> {
  const out: Array<{ op: string; args: string }> = [];
  let pending = '';
  for (const raw of read(path).split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && pending === '')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = pending + line;
    pending = '';
    const m = /^([A-Z]+)\s+(.*)$/.exec(full);
    if (m?.[1] && m[2] !== undefined) out.push({ op: m[1], args: m[2] });
  }
  return out;
}

/** Paths the repository root's .dockerignore keeps out of the build context. */
function dockerIgnored(path: string): boolean {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  // `**/` is any number of directories, `*` anything but a slash; a match covers what is below it.
  const toRegex = (p: string) =>
    new RegExp(
      `^${p
        .split('**/')
        .map((part) => part.replace(/[.+^${}()|[\]]/g, '\\$&').replace(/\*/g, '[^/]*'))
        .join('(?:.*/)?')}(?:/.*)?$`,
    );
  return patterns.some((p) => toRegex(p).test(path));
}

describe('deploy/docker', () => {
  for (const [file, port] of [
    ['docker/hub.Dockerfile', 8080],
    ['docker/broker.Dockerfile', 9800],
  ] as const) {
    it(`${file}: builds on node 20 with the locked pnpm workspace, runs as a non-root user`, () => {
      const ins = dockerfile(file);
      expect(ins.find((i) => i.op === 'ARG' && i.args.startsWith('NODE_IMAGE='))?.args).toBe('NODE_IMAGE=node:20-bookworm-slim');
      expect(ins.filter((i) => i.op === 'FROM').length).toBe(2);
      const runs = ins.filter((i) => i.op === 'RUN').map((i) => i.args);
      expect(runs.some((r) => r.includes('pnpm install --frozen-lockfile'))).toBe(true);
      expect(runs.some((r) => /pnpm -r .*build/.test(r))).toBe(true);
      expect(runs.some((r) => r.includes('pnpm --filter @graft/cli --prod deploy /out'))).toBe(true);
      const lastFrom = ins.map((i) => i.op).lastIndexOf('FROM');
      const user = ins.slice(lastFrom).findLast((i) => i.op === 'USER')?.args;
      expect(user).toBeDefined();
      expect(user).not.toMatch(/^(root|0)(:|$)/);
      expect(ins.find((i) => i.op === 'EXPOSE')?.args).toBe(String(port));
      // Every file copied from the build context is there and not excluded by .dockerignore.
      for (const copy of ins.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))) {
        const sources = copy.args.split(/\s+/).slice(0, -1);
        for (const s of sources.filter((x) => x !== '.')) {
          expect(existsSync(join(ROOT, s)), `${file} copies ${s}`).toBe(true);
          expect(dockerIgnored(s), `${file} copies ${s}, which .dockerignore excludes`).toBe(false);
        }
      }
      expect(dockerIgnored('apps/hub/dist/main.js')).toBe(true);
      expect(dockerIgnored('apps/hub/node_modules/express/index.js')).toBe(true);
      expect(dockerIgnored('deploy/compose/.env')).toBe(true);
    });
  }

  describe('healthchecks of the images and the compose services', () => {
    let server: Server | undefined;
    afterEach(async () => {
      await new Promise((ok) => (server ? server.close(ok) : ok(undefined)));
      server = undefined;
    });

    /** Runs a healthcheck's argv with `env` (asynchronously: the probed server is in this process). */
    function run(argv: string[], env: Record<string, string>): Promise<number | null> {
      const [cmd = '', ...args] = argv;
      const child = spawn(cmd === 'node' ? process.execPath : cmd, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: 'ignore', timeout: 10_000 });
      return new Promise((ok) => child.once('exit', (code) => ok(code)));
    }

    /** The exec form of a Dockerfile's HEALTHCHECK. */
    function runHealthcheck(file: string, env: Record<string, string>): Promise<number | null> {
      const hc = dockerfile(file).find((i) => i.op === 'HEALTHCHECK')?.args ?? '';
      return run(JSON.parse(hc.slice(hc.indexOf('CMD ') + 4)) as string[], env);
    }

    /** A compose service's healthcheck (`CMD` form), in the service's environment with the port moved. */
    function runComposeHealthcheck(service: string, env: Record<string, string>): Promise<number | null> {
      const s = composeServices()[service];
      const [form, ...argv] = s?.healthcheck?.test ?? [];
      expect(form).toBe('CMD');
      return run(argv, { ...composeEnv(s ?? {}), ...env });
    }

    it('probe /healthz on the port from the environment, and fail when nothing answers', async () => {
      const paths: string[] = [];
      const s = createServer((req, res) => {
        paths.push(req.url ?? '');
        res.writeHead(req.url === '/healthz' ? 200 : 404).end();
      });
      server = s;
      await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
      const port = String((s.address() as AddressInfo).port);
      expect(await runHealthcheck('docker/hub.Dockerfile', { GRAFT_HUB_PORT: port })).toBe(0);
      expect(await runHealthcheck('docker/broker.Dockerfile', { GRAFT_BROKER_PORT: port, GRAFT_BROKER_HOST: '0.0.0.0' })).toBe(0);
      expect(await runComposeHealthcheck('hub1', { GRAFT_HUB_PORT: port })).toBe(0);
      expect(await runComposeHealthcheck('broker', { GRAFT_BROKER_PORT: port })).toBe(0);
      expect(paths).toEqual(['/healthz', '/healthz', '/healthz', '/healthz']);
      const closed = String(await freePort());
      expect(await runHealthcheck('docker/hub.Dockerfile', { GRAFT_HUB_PORT: closed })).toBe(1);
      expect(await runHealthcheck('docker/broker.Dockerfile', { GRAFT_BROKER_PORT: closed })).toBe(1);
      expect(await runComposeHealthcheck('hub1', { GRAFT_HUB_PORT: closed })).toBe(1);
    });
  });

  describe('broker-entrypoint.sh', () => {
    let dir = '';
    afterEach(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
      dir = '';
    });

    /**
     * Runs the entrypoint with a stand-in `graft` on PATH that records its arguments (and fails a
     * join when told to); returns the exit status, stderr and the recorded calls.
     */
    function entrypoint(env: Record<string, string>, args: string[] = [], failJoin = false): { status: number | null; stderr: string; calls: string[] } {
      dir = mkdtempSync(join(tmpdir(), 'graft-entrypoint-'));
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      const log = join(dir, 'calls');
      writeFileSync(
        join(bin, 'graft'),
        `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nif [ "$1 $2" = "broker join" ] && [ -n "${failJoin ? '1' : ''}" ]; then exit 1; fi\nexit 0\n`,
      );
      chmodSync(join(bin, 'graft'), 0o755);
      const script = join(dir, 'entrypoint.sh');
      copyFileSync(join(DEPLOY, 'docker/broker-entrypoint.sh'), script);
      const r = spawnSync('sh', [script, ...args], { env: { PATH: `${bin}:/usr/bin:/bin`, GRAFT_BROKER_DATA_DIR: join(dir, 'data'), ...env }, encoding: 'utf8' });
      const calls = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : [];
      return { status: r.status, stderr: r.stderr, calls };
    }

    it('joins with the token from the environment, then starts the daemon', () => {
      const r = entrypoint({ GRAFT_HUB_URL: 'http://nginx', GRAFT_BROKER_ID: 'b-1', GRAFT_BROKER_JOIN_TOKEN: 'gjt_x', GRAFT_BROKER_RUNTIMES: 'process,docker', GRAFT_BROKER_MAX_AGENTS: '3' });
      expect(r.status, r.stderr).toBe(0);
      expect(r.calls).toEqual([`broker join --hub http://nginx --broker-id b-1 --token gjt_x --data-dir ${join(dir, 'data')} --runtimes process,docker --max-agents 3`, 'broker start']);
    });

    it("joins with the node's own token from the join directory", () => {
      const joinDir = mkdtempSync(join(tmpdir(), 'graft-join-'));
      try {
        writeFileSync(join(joinDir, 'node-a.broker-id'), 'b-a');
        writeFileSync(join(joinDir, 'node-a.token'), 'gjt_a');
        writeFileSync(join(joinDir, 'node-b.token'), 'gjt_b');
        const r = entrypoint({ GRAFT_HUB_URL: 'http://hub', GRAFT_BROKER_JOIN_DIR: joinDir, GRAFT_NODE_NAME: 'node-a', GRAFT_BROKER_HOSTNAME: 'node-a' });
        expect(r.status, r.stderr).toBe(0);
        expect(r.calls).toEqual([`broker join --hub http://hub --broker-id b-a --token gjt_a --data-dir ${join(dir, 'data')} --hostname node-a`, 'broker start']);
      } finally {
        rmSync(joinDir, { recursive: true, force: true });
      }
    });

    it('skips the join once the data dir holds credentials', () => {
      const data = mkdtempSync(join(tmpdir(), 'graft-data-'));
      try {
        writeFileSync(join(data, 'credentials.json'), '{}');
        const r = entrypoint({ GRAFT_BROKER_DATA_DIR: data, GRAFT_HUB_URL: 'http://hub', GRAFT_BROKER_ID: 'b', GRAFT_BROKER_JOIN_TOKEN: 'used' });
        expect(r.status).toBe(0);
        expect(r.calls).toEqual(['broker start']);
      } finally {
        rmSync(data, { recursive: true, force: true });
      }
    });

    it('refuses to start without credentials or a token, and never starts after a failed join', () => {
      const none = entrypoint({});
      expect(none.status).toBe(2);
      expect(none.stderr).toContain('graft broker register');
      expect(none.calls).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
      const noHub = entrypoint({ GRAFT_BROKER_ID: 'b', GRAFT_BROKER_JOIN_TOKEN: 't' });
      expect(noHub.status).toBe(2);
      expect(noHub.calls).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
      const failed = entrypoint({ GRAFT_HUB_URL: 'http://hub', GRAFT_BROKER_ID: 'b', GRAFT_BROKER_JOIN_TOKEN: 't' }, [], true);
      expect(failed.status).not.toBe(0);
      expect(failed.calls).toHaveLength(1);
      expect(failed.calls[0]).toMatch(/^broker join /);
    });

    it('leaves bootstrap registration to graft broker start, and runs graft with any arguments given', () => {
      const boot = entrypoint({ GRAFT_BROKER_BOOTSTRAP_HUB_URL: 'http://hub', GRAFT_BROKER_BOOTSTRAP_TOKEN: 'k' });
      expect(boot.status).toBe(0);
      expect(boot.calls).toEqual(['broker start']);
      rmSync(dir, { recursive: true, force: true });
      const passthrough = entrypoint({}, ['broker', 'ls', '--json']);
      expect(passthrough.status).toBe(0);
      expect(passthrough.calls).toEqual(['broker ls --json']);
    });
  });
});
