import { z } from 'zod';

/** `GET /healthz` response. */
export const Health = z.object({ status: z.literal('ok'), version: z.string(), uptimeSecs: z.number() });
/** `GET /healthz` response. */
export type Health = z.infer<typeof Health>;

/** `GET /readyz` response. */
export const Readiness = z.object({ status: z.enum(['ready', 'unavailable']), checks: z.record(z.string(), z.enum(['ok', 'failed'])) });
/** `GET /readyz` response. */
export type Readiness = z.infer<typeof Readiness>;
