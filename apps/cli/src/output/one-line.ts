/** Folds a multi-line message into one line, so every failure is exactly one line on stderr. */
export function oneLine(message: string): string {
  return message
    .trim()
    .split(/\s*\n\s*/)
    .join(' ');
}
