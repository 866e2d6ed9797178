import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

/** What to run on a Debian/Ubuntu machine that lacks what the docker runtime's tests need. */
export const PODMAN_INSTALL_HINT =
  'apt-get install -y --no-install-recommends podman runc uidmap catatonit netavark aardvark-dns busybox-static iptables';

/** A private rootful Podman API service (Docker-compatible) for one test run. */
export interface PodmanService {
  /** Its API socket, for dockerode (`new Docker({ socketPath })`). */
  socketPath: string;
  pid: number;
  /** Private state: storage, run root, events log, configuration. Removed by stop(). */
  dir: string;
  /** Removes every container it holds, stops the service by its PID and removes its state. */
  stop(): Promise<void>;
}

/** Options of {@link startPodmanService}. */
export interface PodmanServiceOptions {
  /** Read-only image stores (graph roots) the service sees besides its own, e.g. a cached test image. */
  imageStores?: string[];
}

/** Where the podman CLI and service find their private configuration. */
export interface PodmanConfig {
  env: Record<string, string>;
}

const INIT_PATHS = ['/usr/libexec/podman/catatonit', '/usr/bin/catatonit', '/usr/libexec/catatonit/catatonit'];
const PING_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;

/** Fails with what to install when podman (or its container init) is missing; CI gets a louder message. */
export function requirePodman(): string {
  const probe = spawnSync('podman', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) {
    const ci = process.env.CI === 'true' ? 'CI: this job must install podman before running tests. ' : '';
    throw new Error(
      `${ci}podman is required by the docker runtime tests (they run agents in real containers) but was not found or does not run: ` +
        `${probe.error?.message ?? probe.stderr}. Install it with: ${PODMAN_INSTALL_HINT}`,
    );
  }
  return probe.stdout.trim();
}

function initPath(): string {
  const found = INIT_PATHS.find((path) => existsSync(path));
  if (found === undefined) throw new Error(`catatonit (the container init) is missing from ${INIT_PATHS.join(', ')}. Install it with: ${PODMAN_INSTALL_HINT}`);
  return found;
}

/**
 * Writes containers.conf and storage.conf keeping every piece of state under `dir`, with the settings
 * this kind of machine needs (docs: ENVIRONMENT.md, "Containers"): runc on hybrid cgroups without
 * systemd, file events, ulimits the sandbox allows, host network by default, file locks (so no lock
 * segment in /dev/shm is shared with other podman instances), exec sessions kept 5 s instead of 5 min.
 */
export async function writePodmanConfig(dir: string, options: PodmanServiceOptions = {}): Promise<PodmanConfig> {
  await mkdir(join(dir, 'tmp'), { recursive: true });
  const containersConf = join(dir, 'containers.conf');
  const storageConf = join(dir, 'storage.conf');
  const q = (value: string) => JSON.stringify(value);
  await writeFile(
    containersConf,
    [
      '[containers]',
      'netns="host"',
      'log_driver="k8s-file"',
      'default_ulimits=["nofile=4096:4096","nproc=4096:4096"]',
      `init_path=${q(initPath())}`,
      '[network]',
      'network_backend="netavark"',
      `network_config_dir=${q(join(dir, 'networks'))}`,
      '[engine]',
      'cgroup_manager="cgroupfs"',
      'events_logger="file"',
      `events_logfile_path=${q(join(dir, 'events.log'))}`,
      'runtime="runc"',
      'lock_type="file"',
      // conmon of an exec stays this long after the exec ended (for its exit code); podman's 300 s outlives a test run.
      'exit_command_delay=5',
      `tmp_dir=${q(join(dir, 'tmp'))}`,
      '',
    ].join('\n'),
  );
  await writeFile(
    storageConf,
    [
      '[storage]',
      'driver="overlay"',
      `runroot=${q(join(dir, 'run'))}`,
      `graphroot=${q(join(dir, 'storage'))}`,
      '[storage.options]',
      `additionalimagestores=[${(options.imageStores ?? []).map(q).join(',')}]`,
      '',
    ].join('\n'),
  );
  return { env: { CONTAINERS_CONF: containersConf, CONTAINERS_STORAGE_CONF: storageConf } };
}

/** One call of the service's API; resolves with the status and body. */
function api(socketPath: string, method: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { host: 'podman' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function waitForPing(socketPath: string, child: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + PING_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await readFile(logPath, 'utf8').catch(() => '');
      throw new Error(`podman system service exited (${child.exitCode ?? child.signalCode}) before answering:\n${log}`);
    }
    const ok = await api(socketPath, 'GET', '/_ping').then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`podman system service did not answer on ${socketPath} within ${PING_TIMEOUT_MS} ms`);
    await delay(20);
  }
}

async function removeAllContainers(socketPath: string): Promise<void> {
  const listed = await api(socketPath, 'GET', '/containers/json?all=true');
  if (listed.status !== 200) throw new Error(`listing containers failed (${listed.status}): ${listed.body}`);
  const ids = (JSON.parse(listed.body) as Array<{ Id: string }>).map((c) => c.Id);
  await Promise.all(
    ids.map(async (id) => {
      // Killed first: a forced removal would grant each container its stop timeout (10 s) after SIGTERM.
      await api(socketPath, 'POST', `/containers/${id}/kill?signal=SIGKILL`);
      await api(socketPath, 'DELETE', `/containers/${id}?force=true&v=true`);
    }),
  );
}

/** Lazily unmounts whatever podman left mounted under `dir`, so removing it cannot reach into a mount. */
export function unmountUnder(dir: string): void {
  const mountinfo = existsSync('/proc/self/mountinfo') ? readFileSync('/proc/self/mountinfo', 'utf8') : '';
  const points = mountinfo
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of points) spawnSync('umount', ['-l', point]);
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * Starts `podman system service` (rootful) on a socket in a fresh temp dir, with private
 * configuration and storage so nothing leaks into the machine's podman state, and waits until it
 * answers `/_ping`. Throws with install instructions when podman is missing.
 */
export async function startPodmanService(options: PodmanServiceOptions = {}): Promise<PodmanService> {
  requirePodman();
  const dir = await mkdtemp(join(tmpdir(), 'graft-podman-'));
  const socketPath = join(dir, 'podman.sock');
  const logPath = join(dir, 'service.log');
  let child: ChildProcess | undefined;
  try {
    const config = await writePodmanConfig(dir, options);
    const log = openSync(logPath, 'a');
    child = spawn('podman', ['system', 'service', '--time=0', `unix://${socketPath}`], {
      env: { ...process.env, ...config.env },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    const started = child;
    started.once('error', () => {});
    await waitForPing(socketPath, started, logPath);
    const pid = started.pid;
    if (pid === undefined) throw new Error('podman system service has no pid');
    let stopping: Promise<void> | undefined;
    return {
      socketPath,
      pid,
      dir,
      stop: () => {
        stopping ??= (async () => {
          try {
            await removeAllContainers(socketPath);
          } finally {
            started.kill('SIGTERM');
            const escalate = setTimeout(() => started.kill('SIGKILL'), STOP_TIMEOUT_MS);
            await exited(started);
            clearTimeout(escalate);
            unmountUnder(dir);
            await rm(dir, { recursive: true, force: true });
          }
        })();
        return stopping;
      },
    };
  } catch (err) {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
