/**
 * Splits a command line into argv the way a POSIX shell would, without any expansion: whitespace
 * separates words, single quotes keep everything literal, double quotes keep all but `\"` `\\`
 * `\$` and `` \` ``, and a backslash outside quotes escapes the next character.
 * Throws on an unterminated quote or a trailing backslash.
 */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  while (i < line.length) {
    const c = line[i] as string;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error('unterminated single quote');
      word += line.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      i++;
      let closed = false;
      while (i < line.length) {
        const d = line[i] as string;
        if (d === '"') {
          closed = true;
          i++;
          break;
        }
        const next = line[i + 1];
        if (d === '\\' && next !== undefined && '"\\$`'.includes(next)) {
          word += next;
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      if (!closed) throw new Error('unterminated double quote');
      inWord = true;
    } else if (c === '\\') {
      const next = line[i + 1];
      if (next === undefined) throw new Error('trailing backslash');
      word += next;
      inWord = true;
      i += 2;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i++;
    } else {
      word += c;
      inWord = true;
      i++;
    }
  }
  if (inWord) words.push(word);
  return words;
}
