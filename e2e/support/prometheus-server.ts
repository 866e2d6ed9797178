import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';

/** One endpoint Prometheus scrapes at `/metrics`. */
export interface ScrapeTarget {
  /** The `job` label (`hub`, `broker`). */
  job: string;
  /** `host:port`. */
  address: string;
  /** Extra labels on every series of the target (e.g. `name`). */
  labels?: Record<string, string>;
}

/** One series of an instant query's answer. */
export interface QuerySample {
  metric: Record<string, string>;
  value: number;
}

/** A Prometheus server (Debian's package) of one test file. */
export interface PrometheusServer {
  url: string;
  pid: number;
  /** Runs an instant PromQL query; throws on a query error. */
  query(expr: string): Promise<QuerySample[]>;
  /** Stops the server by its PID and removes its config and TSDB. */
  stop(): Promise<void>;
}

/**
 * Writes prometheus.yml (1 s scrape interval, one static target per entry) and starts `prometheus`
 * on an ephemeral loopback port with a temp TSDB; resolves once `/-/ready` answers. Hub and broker
 * `/metrics` need no credentials; targets appear with `up` a few seconds after the start.
 */
export async function startPrometheus(targets: readonly ScrapeTarget[]): Promise<PrometheusServer> {
  if (spawnSync('prometheus', ['--version'], { stdio: 'ignore' }).error) throw new Error('prometheus is required by the cluster tests; install it with: apt-get install -y prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'graft-e2e-prometheus-'));
  const jobs = [...new Set(targets.map((t) => t.job))];
  // JSON is YAML: no YAML writer needed.
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
    scrape_configs: jobs.map((job) => ({
      job_name: job,
      static_configs: targets.filter((t) => t.job === job).map((t) => ({ targets: [t.address], labels: t.labels ?? {} })),
    })),
  };
  writeFileSync(join(dir, 'prometheus.yml'), JSON.stringify(config, null, 2));
  const port = await freePort();
  const child: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let output = '';
  child.stderr?.on('data', (c: Buffer) => {
    output += c.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) }).then(
      (r) => r.ok,
      () => false,
    );
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus did not become ready on ${url}: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    pid: child.pid ?? -1,
    stop,
    query: async (expr) => {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(5_000) });
      const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
      if (body.status !== 'success' || !body.data) throw new Error(`prometheus query ${expr} failed: ${body.error ?? res.status}`);
      if (body.data.resultType !== 'vector') throw new Error(`prometheus query ${expr} gave a ${body.data.resultType}, not a vector`);
      return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
  };
}
