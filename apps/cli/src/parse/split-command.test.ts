import { describe, expect, it } from 'vitest';
import { splitCommand } from './split-command.js';

describe('splitCommand', () => {
  it('splits on runs of whitespace', () => {
    expect(splitCommand('  sleep   3600 ')).toEqual(['sleep', '3600']);
  });

  it('keeps quoted text together and drops the quotes', () => {
    expect(splitCommand(`sh -c 'echo "hi"; sleep 1'`)).toEqual(['sh', '-c', 'echo "hi"; sleep 1']);
    expect(splitCommand(`node -e "console.log('a b')"`)).toEqual(['node', '-e', "console.log('a b')"]);
    expect(splitCommand(`a"b c"'d e'`)).toEqual(['ab cd e']);
  });

  it('honours backslash escapes outside quotes and only \\" \\\\ \\$ \\` inside double quotes', () => {
    expect(splitCommand('a\\ b c')).toEqual(['a b', 'c']);
    expect(splitCommand('"x\\"y\\n"')).toEqual(['x"y\\n']);
  });

  it('keeps empty quoted arguments and expands nothing', () => {
    expect(splitCommand(`printf '' $HOME *`)).toEqual(['printf', '', '$HOME', '*']);
  });

  it('rejects unterminated quotes and a trailing backslash', () => {
    expect(() => splitCommand(`echo 'oops`)).toThrow('unterminated single quote');
    expect(() => splitCommand('echo "oops')).toThrow('unterminated double quote');
    expect(() => splitCommand('echo \\')).toThrow('trailing backslash');
  });
});
