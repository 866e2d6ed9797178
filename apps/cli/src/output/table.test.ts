import { describe, expect, it } from 'vitest';
import { formatTable } from './table.js';

describe('formatTable', () => {
  it('upper-cases headers and pads every column to its widest cell, two spaces apart, no trailing spaces', () => {
    const out = formatTable([{ header: 'id' }, { header: 'name' }, { header: 'phase' }], [
      ['a1', 'web', 'running'],
      ['b22222', 'x', 'created'],
    ]);
    expect(out).toBe(['ID      NAME  PHASE', 'a1      web   running', 'b22222  x     created'].join('\n'));
  });

  it('right-aligns columns that ask for it', () => {
    const out = formatTable([{ header: 'name' }, { header: 'n', align: 'right' }], [
      ['a', '5'],
      ['b', '120'],
    ]);
    expect(out.split('\n')).toEqual(['NAME    N', 'a       5', 'b     120']);
  });

  it('cuts cells longer than maxWidth with an ellipsis', () => {
    const out = formatTable([{ header: 'task', maxWidth: 6 }, { header: 'x' }], [['abcdefghij', 'y']]);
    expect(out.split('\n')).toEqual(['TASK    X', 'abcde…  y']);
  });

  it('neutralises line breaks and terminal escape sequences from hub data', () => {
    const out = formatTable([{ header: 'detail' }], [['line1\nline2\u001b[31mred\ttab']]);
    expect(out.split('\n')).toEqual(['DETAIL', 'line1\\nline2?[31mred tab']);
  });

  it('treats missing cells as empty and prints only the header for no rows', () => {
    expect(formatTable([{ header: 'a' }, { header: 'b' }], [['x']])).toBe('A  B\nx');
    expect(formatTable([{ header: 'a' }, { header: 'bb' }], [])).toBe('A  BB');
  });
});
