import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tarArchive } from '../../functions/commons/domain/tar.js';

function unpack(archive: Uint8Array): { dir: string; list: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'ib-tar-'));
  writeFileSync(join(dir, 'a.tar'), archive);
  const list = execFileSync('tar', ['-tf', join(dir, 'a.tar')], { encoding: 'utf8' })
    .trim()
    .split('\n');
  execFileSync('tar', ['-xf', join(dir, 'a.tar'), '-C', dir]);
  return { dir, list };
}

describe('tarArchive', () => {
  it('is read by tar: names, contents (text and binary), empty files and long paths survive', () => {
    const long = `${'d'.repeat(90)}/${'e'.repeat(60)}/${'f'.repeat(95)}`;
    const binary = Uint8Array.from({ length: 1500 }, (_, i) => (i * 7) % 256);
    const files = {
      Containerfile: 'FROM x\n',
      'ib/system/files/0000/content': 'héllo\n',
      'ib/empty': '',
      [long]: 'deep',
      'bin/data': binary,
    };
    const { dir, list } = unpack(tarArchive(files));
    try {
      expect(list).toEqual(Object.keys(files));
      expect(readFileSync(join(dir, 'Containerfile'), 'utf8')).toBe('FROM x\n');
      expect(readFileSync(join(dir, 'ib/system/files/0000/content'), 'utf8')).toBe('héllo\n');
      expect(readFileSync(join(dir, 'ib/empty'), 'utf8')).toBe('');
      expect(readFileSync(join(dir, long), 'utf8')).toBe('deep');
      expect(new Uint8Array(readFileSync(join(dir, 'bin/data')))).toEqual(binary);
      expect(statSync(join(dir, 'Containerfile')).mode & 0o777).toBe(0o644);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is deterministic and block-aligned', () => {
    const a = tarArchive({ x: 'y', 'z/w': 'v'.repeat(513) });
    expect(a).toEqual(tarArchive({ x: 'y', 'z/w': 'v'.repeat(513) }));
    expect(a.length % 512).toBe(0);
    expect(a.length).toBe(512 + 512 + 512 + 1024 + 1024);
  });

  it('refuses paths that would leave the context or cannot be stored', () => {
    for (const bad of ['/etc/passwd', '../x', 'a/../../x', 'a//b', './a', '']) {
      expect(() => tarArchive({ [bad]: 'x' }), bad).toThrow(/not a relative file path/);
    }
    expect(() => tarArchive({ ['n'.repeat(101)]: 'x' })).toThrow(/too long/);
  });
});
