// C0 controls, DEL and C1 controls: anything that could move the cursor or recolour a terminal.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** Makes hub-supplied text safe to print in one terminal cell: no escape sequences, no line breaks. */
export function sanitizeCell(text: string): string {
  return text.replace(CONTROL, (c) => {
    if (c === '\n') return '\\n';
    if (c === '\t') return ' ';
    if (c === '\r') return '\\r';
    return '?';
  });
}
