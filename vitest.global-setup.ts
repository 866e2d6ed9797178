import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type PodmanService, prepareTestAgentImage, startPodmanService, startTestPostgres, startTestRedis, type TestPostgres, type TestRedis } from '@graft/testkit';
import type { TestProject } from 'vitest/node';

let pg: TestPostgres | undefined;
let podman: PodmanService | undefined;
let redis: TestRedis | undefined;

/** Test images are cached here (gitignored) across runs; a run starting from nothing builds them once. */
const IMAGE_CACHE = join(dirname(fileURLToPath(import.meta.url)), '.tools', 'podman-test-images');

/** The run's container engine: a private Podman service that sees the (cached) test agent image. */
async function startContainers(): Promise<{ service: PodmanService; image: string }> {
  const { image, store } = await prepareTestAgentImage(IMAGE_CACHE);
  return { service: await startPodmanService({ imageStores: [store] }), image };
}

/**
 * One Postgres server for the whole run (each test file creates its own database on it), one
 * Podman service with the test agent image (the docker runtime's tests create labelled containers
 * on it), and one Redis (the Redis adapters' tests use their own key prefixes and topics on it).
 * Both start at once; a machine without podman fails here with how to install it.
 */
export async function setup(project: TestProject): Promise<void> {
  const [pgResult, containers, redisResult] = await Promise.allSettled([startTestPostgres(), startContainers(), startTestRedis()]);
  if (pgResult.status === 'fulfilled') pg = pgResult.value;
  if (containers.status === 'fulfilled') podman = containers.value.service;
  if (redisResult.status === 'fulfilled') redis = redisResult.value;
  if (pgResult.status === 'rejected' || containers.status === 'rejected' || redisResult.status === 'rejected') await teardown();
  if (pgResult.status === 'rejected') throw pgResult.reason;
  if (containers.status === 'rejected') throw containers.reason;
  if (redisResult.status === 'rejected') throw redisResult.reason;
  project.provide('pgAdminUrl', pgResult.value.adminUrl);
  project.provide('dockerSocket', containers.value.service.socketPath);
  project.provide('testAgentImage', containers.value.image);
  project.provide('redisUrl', redisResult.value.url);
}

/** Stops what this run started (by their handles, which stop their PIDs). */
export async function teardown(): Promise<void> {
  await Promise.all([pg?.stop(), podman?.stop(), redis?.stop()]);
  pg = undefined;
  podman = undefined;
  redis = undefined;
}
