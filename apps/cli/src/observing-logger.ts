import type { LogFields, Logger } from '@graft/log';

/** Wraps a logger so that every event, whatever its level, is also handed to `observe`. */
export function observingLogger(inner: Logger, observe: (event: string, fields: LogFields) => void): Logger {
  const wrap = (target: Logger): Logger => ({
    debug: (e, f) => {
      observe(e, f ?? {});
      target.debug(e, f);
    },
    info: (e, f) => {
      observe(e, f ?? {});
      target.info(e, f);
    },
    warn: (e, f) => {
      observe(e, f ?? {});
      target.warn(e, f);
    },
    error: (e, f) => {
      observe(e, f ?? {});
      target.error(e, f);
    },
    child: (fields) => wrap(target.child(fields)),
  });
  return wrap(inner);
}
