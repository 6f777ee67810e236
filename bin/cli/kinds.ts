// The three resource kinds, their names on the command line and their API paths.
import { UsageError } from './errors.js';

export type Kind = 'Repository' | 'ImageBuild' | 'ImageExport';

export const KINDS: Record<Kind, { path: string; names: string[] }> = {
  Repository: { path: '/repositories', names: ['repositories', 'repository', 'repo', 'repos'] },
  ImageBuild: { path: '/imagebuilds', names: ['imagebuilds', 'imagebuild', 'ib'] },
  ImageExport: { path: '/imageexports', names: ['imageexports', 'imageexport', 'ie'] },
};

export const isKind = (s: unknown): s is Kind => typeof s === 'string' && Object.hasOwn(KINDS, s);

export function parseKind(arg: string, allowed: readonly Kind[] = Object.keys(KINDS) as Kind[]): Kind {
  const lower = arg.toLowerCase();
  for (const kind of allowed)
    if (KINDS[kind].names.includes(lower) || kind.toLowerCase() === lower) return kind;
  const names = allowed.map((k) => KINDS[k].names.join('|')).join(', ');
  throw new UsageError(`unknown kind "${arg}" (expected one of ${names})`);
}

/** `KIND/NAME`, or `KIND` and `NAME` as two arguments. */
export function parseRef(
  arg: string,
  second: string | undefined,
  allowed?: readonly Kind[],
): { kind: Kind; name: string } {
  const slash = arg.indexOf('/');
  const [kindArg, name] = slash >= 0 ? [arg.slice(0, slash), arg.slice(slash + 1)] : [arg, second];
  if (!name) throw new UsageError(`expected KIND/NAME, got "${arg}"`);
  if (slash >= 0 && second !== undefined) throw new UsageError(`unexpected argument "${second}"`);
  return { kind: parseKind(kindArg, allowed), name };
}

/** How resources are named in output: `imagebuild/edge-os-v1`. */
export const refLabel = (kind: Kind, name: string): string => `${kind.toLowerCase()}/${name}`;

export const resourcePath = (kind: Kind, name: string): string =>
  `${KINDS[kind].path}/${encodeURIComponent(name)}`;
