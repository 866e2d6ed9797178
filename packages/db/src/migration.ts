/** One forward-only schema change; `id` orders them and never changes once released. */
export interface Migration {
  id: number;
  name: string;
  sql: string;
}
