import type {} from 'vitest';

// Values the vitest global setup provides to every test file (`inject('pgAdminUrl')`).
// Declared here, once, so every package that imports @graft/testkit sees the same types.
declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the run's Postgres; each test file creates its own database on it. */
    pgAdminUrl: string;
    /** API socket of the run's private Podman service (Docker-compatible), for the docker runtime's tests. */
    dockerSocket: string;
    /** A local image on that service with busybox and node, for agents in the docker runtime's tests. */
    testAgentImage: string;
    /** URL of the run's Redis (`redis://127.0.0.1:<port>`), for the Redis adapters' tests. */
    redisUrl: string;
  }
}

/** The keys the global setup provides, for code that wants to check them at run time. */
export const PROVIDED_KEYS = ['pgAdminUrl', 'dockerSocket', 'testAgentImage', 'redisUrl'] as const;
