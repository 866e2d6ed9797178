export * from './fresh-database.js';
export * from './hub-process.js';
export * from './test-postgres.js';
export * from './hub-fixture.js';
export * from './provided-context.js';
export * from './api-probe.js';
