import type {} from 'vitest';

// Values the vitest global setup provides to every test file (`inject('pgAdminUrl')`).
// Declared here, once, so every package that imports @graft/testkit sees the same types.
declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the run's Postgres; each test file creates its own database on it. */
    pgAdminUrl: string;
  }
}

/** The keys the global setup provides, for code that wants to check them at run time. */
export const PROVIDED_KEYS = ['pgAdminUrl'] as const;
