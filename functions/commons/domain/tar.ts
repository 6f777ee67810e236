// A build context as one POSIX ustar archive: one object to write and one to read per run instead of
// one per file (the CodeBuild buildspec and the local runner unpack it with `tar -x`). Regular files
// only, mode 0644, owner 0:0, mtime 0: identical contexts are byte-identical archives.
const BLOCK = 512;
const encoder = new TextEncoder();

function field(header: Uint8Array, offset: number, length: number, value: string): void {
  const bytes = encoder.encode(value);
  if (bytes.length > length) throw new Error(`tar header field too long: ${value}`);
  header.set(bytes, offset);
}

/** `size` octal digits and a NUL, as ustar numeric fields are written. */
const octal = (n: number, size: number) => `${n.toString(8).padStart(size - 1, '0')}\0`;

/** Splits a path into ustar's name (≤ 100 bytes) and prefix (≤ 155 bytes) at a slash. */
function splitPath(path: string): { name: string; prefix: string } {
  if (encoder.encode(path).length <= 100) return { name: path, prefix: '' };
  for (let i = path.indexOf('/'); i !== -1; i = path.indexOf('/', i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (encoder.encode(prefix).length <= 155 && encoder.encode(name).length <= 100) return { name, prefix };
  }
  throw new Error(`path too long for a tar archive: ${path}`);
}

function header(path: string, size: number): Uint8Array {
  const h = new Uint8Array(BLOCK);
  const { name, prefix } = splitPath(path);
  field(h, 0, 100, name);
  field(h, 100, 8, octal(0o644, 8));
  field(h, 108, 8, octal(0, 8));
  field(h, 116, 8, octal(0, 8));
  field(h, 124, 12, octal(size, 12));
  field(h, 136, 12, octal(0, 12));
  field(h, 148, 8, '        '); // the checksum counts its own field as spaces
  field(h, 156, 1, '0');
  field(h, 257, 6, 'ustar\0');
  field(h, 263, 2, '00');
  field(h, 345, 155, prefix);
  const sum = h.reduce((a, b) => a + b, 0);
  field(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

/** The archive of `files` (relative paths → contents), in the order given. */
export function tarArchive(files: Record<string, string | Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (const [path, content] of Object.entries(files)) {
    if (!path || path.startsWith('/') || path.split('/').some((s) => s === '..' || s === '.' || s === '')) {
      throw new Error(`not a relative file path: ${path}`);
    }
    const data = typeof content === 'string' ? encoder.encode(content) : content;
    const padded = Math.ceil(data.length / BLOCK) * BLOCK;
    parts.push(header(path, data.length), data);
    if (padded > data.length) parts.push(new Uint8Array(padded - data.length));
    total += BLOCK + padded;
  }
  parts.push(new Uint8Array(2 * BLOCK)); // end of archive
  total += 2 * BLOCK;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
