// The files of the builder image and its buildspec: one list for the local image build
// (functions/local/builder-image.ts), the CDK asset of the image (infra/constructs/builder-image.ts) and
// the CodeBuild projects, which load the same buildspec.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const BUILDER_DIR = dirname(fileURLToPath(import.meta.url));
export const BUILDSPEC_FILE = join(BUILDER_DIR, 'buildspec.yml');

/** What the Containerfile COPYs, besides buildspec.json (made from buildspec.yml). */
export const BUILDER_CONTEXT_FILES = [
  'Containerfile',
  'common.sh',
  'build-image.sh',
  'export-image.sh',
  'eks-job.sh',
  'codebuild-run.sh',
  'storage-setup.sh',
] as const;

/** Where the image keeps the buildspec as JSON (runners that are not CodeBuild read it there). */
export const IMAGE_BUILDSPEC = '/usr/local/lib/imagebuilder/buildspec.json';

export interface BuildSpec {
  version: number | string;
  env?: {
    shell?: string;
    variables?: Record<string, string>;
    'exported-variables'?: string[];
    'secrets-manager'?: Record<string, string>;
    'parameter-store'?: Record<string, string>;
  };
  phases: Record<string, { commands?: string[]; finally?: string[]; 'on-failure'?: string }>;
}

/** functions/builder/buildspec.yml, parsed. */
export function loadBuildspec(): BuildSpec {
  return parse(readFileSync(BUILDSPEC_FILE, 'utf8')) as BuildSpec;
}

export const buildspecJson = (): string => `${JSON.stringify(loadBuildspec(), null, 2)}\n`;
