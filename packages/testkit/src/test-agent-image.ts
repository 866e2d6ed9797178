import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, mkdtemp, readdir, realpath, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { requirePodman, unmountUnder, writePodmanConfig } from './podman-service.js';

/** The test agent image and the read-only image store holding it. */
export interface TestAgentImage {
  /** Image reference, `localhost/graft-test-agent:<key>`. */
  image: string;
  /** Graph root holding the image; give it to startPodmanService as an image store. */
  store: string;
}

/** Bumped whenever the recipe below changes, so cached stores built by an older recipe are not reused. */
const RECIPE_VERSION = 3;
const IMAGE_NAME = 'localhost/graft-test-agent';
const COMPLETE_MARKER = '.graft-complete';
const IMAGE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];
/** A half-built store (a run killed mid-build) is removed after this long. */
const STALE_BUILD_MS = 60 * 60 * 1000;
/** A store of another key (older recipe, podman or node) is removed once unused for this long. */
const UNUSED_STORE_MS = 24 * 60 * 60 * 1000;

/** busybox-static has no `printenv`; the runtime contract uses it. */
const PRINTENV = String.raw`#!/bin/sh
# printenv [NAME...]: prints the named variables; exit 1 if one is unset.
[ $# -eq 0 ] && exec env
status=0
for name in "$@"; do
  case $name in ''|[0-9]*|*[!A-Za-z0-9_]*) status=1; continue ;; esac
  if eval "[ -n \"\${$name+set}\" ]"; then eval "printf '%s\n' \"\$$name\""; else status=1; fi
done
exit $status
`;

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) throw result.error;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr}`);
  return result.stdout;
}

/** Shared libraries (and the loader) a dynamic executable needs, from `ldd`; none for a static one. */
function sharedLibraries(file: string): string[] {
  const result = spawnSync('ldd', [file], { encoding: 'utf8' });
  if (result.status !== 0) return [];
  const libs = new Set<string>();
  for (const line of result.stdout.split('\n')) {
    const path = /(?:=>\s*)?(\/\S+)\s+\(0x[0-9a-f]+\)/.exec(line)?.[1];
    if (path !== undefined) libs.add(path);
  }
  return [...libs];
}

function findBusybox(): string {
  const found = BUSYBOX_CANDIDATES.find((path) => existsSync(path));
  if (found === undefined) throw new Error('busybox is missing (the test agent image is made from it). Install it with: apt-get install -y busybox-static');
  return found;
}

/** The file at `source` (symlinks resolved: ldd names the loader and libraries by their links) at `target`: hard-linked (instant on one filesystem), else copied. */
async function place(source: string, target: string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const file = await realpath(source);
  try {
    await link(file, target);
  } catch {
    await copyFile(file, target);
  }
}

async function buildRootfs(rootfs: string, busybox: string, node: string, libs: string[]): Promise<void> {
  for (const dir of ['bin', 'sbin', 'usr/bin', 'usr/local/bin', 'etc', 'root', 'tmp', 'workspace']) await mkdir(join(rootfs, dir), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await place(busybox, join(rootfs, 'bin/busybox'));
  const applets = run(busybox, ['--list'])
    .split('\n')
    .map((a) => a.trim())
    .filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox');
  await Promise.all(applets.map((applet) => symlink('busybox', join(rootfs, 'bin', applet))));
  await writeFile(join(rootfs, 'bin/printenv'), PRINTENV, { mode: 0o755 });
  // Where `#!/usr/bin/env node` scripts (graft-agent) look for it.
  await symlink('/bin/busybox', join(rootfs, 'usr/bin/env'));
  await place(node, join(rootfs, 'usr/bin/node'));
  for (const lib of libs) await place(lib, join(rootfs, lib));
  await writeFile(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await writeFile(join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
}

/** Resolves when `child` ends; rejects when it cannot be spawned. */
function closed(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve(code));
  });
}

/** `tar -C rootfs -c . | podman import` into a fresh graph root `store`. */
async function importRootfs(store: string, rootfs: string, image: string): Promise<void> {
  // podman refuses a run root longer than 50 characters, so it goes to a short temp dir.
  const runDir = await mkdtemp(join(tmpdir(), 'graft-pi-'));
  try {
    const config = await writePodmanConfig(runDir);
    const args = ['--root', store, '--runroot', join(runDir, 'run'), 'import', '--quiet', '--change', `ENV PATH=${IMAGE_PATH}`, '--change', 'CMD ["/bin/sh"]', '-', image];
    const tar = spawn('tar', ['-C', rootfs, '-c', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const podman = spawn('podman', args, { env: { ...process.env, ...config.env }, stdio: ['pipe', 'ignore', 'pipe'] });
    let errors = '';
    for (const stream of [tar.stderr, podman.stderr]) stream.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    // podman failing early closes its stdin; its exit status reports that, not the broken pipe.
    podman.stdin.on('error', () => {});
    tar.stdout.pipe(podman.stdin);
    const [tarStatus, podmanStatus] = await Promise.all([closed(tar), closed(podman)]);
    if (tarStatus !== 0 || podmanStatus !== 0) throw new Error(`importing the test agent image failed (tar ${tarStatus}, podman import ${podmanStatus}): ${errors}`);
  } finally {
    unmountUnder(runDir);
    unmountUnder(store);
    await rm(runDir, { recursive: true, force: true });
  }
}

/**
 * The image every docker-runtime test runs agents in: busybox (all applets, plus `printenv`) and the
 * Node running the tests with its shared libraries, so `script` agents and `graft-agent` run inside.
 * Built offline (no registry) with `podman import` into a read-only image store under `cacheDir`,
 * keyed by the recipe, podman's version and the source files, so later runs reuse it at no cost and a
 * machine starting from nothing builds it once (≈ 2 s). Concurrent runs race safely: each builds in
 * its own directory and renames it into place; the loser discards its copy.
 */
export async function prepareTestAgentImage(cacheDir: string): Promise<TestAgentImage> {
  const podmanVersion = requirePodman();
  const busybox = findBusybox();
  const node = process.execPath;
  const libs = [...new Set([...sharedLibraries(busybox), ...sharedLibraries(node)])].sort();
  const hash = createHash('sha256').update(`recipe ${RECIPE_VERSION}\n${podmanVersion}\n${IMAGE_PATH}\n`);
  for (const file of [busybox, node, ...libs]) {
    const info = await stat(file);
    hash.update(`${file} ${info.size} ${info.mtimeMs} ${info.ino}\n`);
  }
  const key = hash.digest('hex').slice(0, 16);
  const image = `${IMAGE_NAME}:${key}`;
  const store = join(cacheDir, key);
  if (existsSync(join(store, COMPLETE_MARKER))) {
    // Records the use, so pruning (by another key's build) spares a store a concurrent run still uses.
    const now = new Date();
    await utimes(join(store, COMPLETE_MARKER), now, now).catch(() => {});
    return { image, store };
  }

  await mkdir(cacheDir, { recursive: true });
  const build = await mkdtemp(join(cacheDir, '.build-'));
  try {
    const rootfs = join(build, 'rootfs');
    await buildRootfs(rootfs, busybox, node, libs);
    const built = join(build, 'store');
    await importRootfs(built, rootfs, image);
    await writeFile(join(built, COMPLETE_MARKER), `${image}\n`);
    try {
      await rename(built, store);
    } catch (err) {
      // Another run renamed its store into place first; its image is the same.
      if (!existsSync(join(store, COMPLETE_MARKER))) throw err;
    }
  } finally {
    await rm(build, { recursive: true, force: true });
  }
  await pruneCache(cacheDir, key);
  return { image, store };
}

/** Removes stores of other keys unused for a day, and builds abandoned an hour ago. */
async function pruneCache(cacheDir: string, keep: string): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    if (name === keep) continue;
    const path = join(cacheDir, name);
    const building = name.startsWith('.build-');
    const info = await stat(building ? path : join(path, COMPLETE_MARKER)).catch(() => stat(path).catch(() => null));
    if (info === null || Date.now() - info.mtimeMs < (building ? STALE_BUILD_MS : UNUSED_STORE_MS)) continue;
    await rm(path, { recursive: true, force: true });
  }
}
