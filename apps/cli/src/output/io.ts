/** Where commands write: stdout for results, stderr for diagnostics. Lines get their newline added. */
export interface Io {
  out(line: string): void;
  err(line: string): void;
}

/** Prints a value as indented JSON, exactly as the hub sent it. */
export function printJson(io: Io, value: unknown): void {
  io.out(JSON.stringify(value, null, 2));
}
