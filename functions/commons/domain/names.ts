// Names built from tenant values for AWS resources that allow fewer characters than the values hold.

/**
 * One segment of a Secrets Manager name. Secrets Manager allows ASCII letters, digits and `/_+=.@-`
 * (documented for CreateSecret's Name); org ids may hold `:` and more. Every other byte (and `=` and
 * `/` themselves) becomes `=HH` (its UTF-8 bytes in upper-case hex), which is reversible and unique.
 */
export function secretNameSegment(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9_+.@-]/.test(ch) ? ch : `=${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
