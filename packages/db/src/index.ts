export * from './connect.js';
export type * from './migration.js';
export { migrations } from './migrations/index.js';
export * from './migrator.js';
export type * from './schema.js';
export * from './embedded-postgres.js';
