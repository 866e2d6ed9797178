/** Severity of a log event. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Structured fields attached to an event; ids belong here, never in the event name. */
export type LogFields = Record<string, unknown>;

/** Where log lines go; stdout by default, a buffer in tests. */
export type LogSink = (line: string) => void;

/** A JSON-lines logger: every call writes one event with a stable name and its fields. */
export interface Logger {
  debug(event: string, fields?: LogFields): void;
  info(event: string, fields?: LogFields): void;
  warn(event: string, fields?: LogFields): void;
  error(event: string, fields?: LogFields): void;
  /** A logger whose events all carry these fields (typically `component`). */
  child(fields: LogFields): Logger;
}

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  level?: LogLevel;
  sink?: LogSink;
  base?: LogFields;
}

function serialiseError(err: unknown): unknown {
  if (err instanceof Error) {
    const out: Record<string, unknown> = { name: err.name, message: err.message, stack: err.stack };
    const code = (err as { code?: unknown }).code;
    if (code !== undefined) out.code = code;
    return out;
  }
  return err;
}

/** Creates a logger writing JSON lines `{ts, level, event, ...fields}`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = LEVEL_RANK[options.level ?? 'info'];
  const sink: LogSink = options.sink ?? ((line) => process.stdout.write(`${line}\n`));
  const base = options.base ?? {};
  const write = (level: LogLevel, event: string, fields?: LogFields) => {
    if (LEVEL_RANK[level] < min) return;
    const record: Record<string, unknown> = { ts: new Date().toISOString(), level, event, ...base };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) record[k] = k === 'err' || v instanceof Error ? serialiseError(v) : v;
    }
    sink(JSON.stringify(record));
  };
  return {
    debug: (e, f) => write('debug', e, f),
    info: (e, f) => write('info', e, f),
    warn: (e, f) => write('warn', e, f),
    error: (e, f) => write('error', e, f),
    child: (fields) => createLogger({ level: options.level ?? 'info', sink, base: { ...base, ...fields } }),
  };
}
