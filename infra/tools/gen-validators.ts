// Generates request validators from openapi.yaml (the wire format's source of truth) as standalone ESM
// code, so Lambda bundles carry no schema compiler and pay no compile time at cold start.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import standaloneCode from 'ajv/dist/standalone/index.js';
import { parse } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Schemas (by components/schemas name) that request bodies are checked against. */
export const VALIDATED = {
  validateRepository: 'Repository',
  validateImageBuild: 'ImageBuild',
  validateImageExport: 'ImageExport',
} as const;

export function loadOpenApi(): { components: { schemas: Record<string, unknown> } } {
  return parse(readFileSync(join(root, 'openapi.yaml'), 'utf8'));
}

export function createAjv(): InstanceType<typeof Ajv2020.default> {
  const ajv = new Ajv2020.default({
    allErrors: false,
    strict: true,
    strictRequired: false,
    validateFormats: false,
    code: { source: true, esm: true, lines: false },
    keywords: ['example', 'components'],
  });
  const doc = loadOpenApi();
  ajv.addSchema({ $id: 'openapi', components: doc.components });
  return ajv;
}

// ajv's standalone ESM output still require()s two runtime helpers; they are replaced by these plain
// functions so the module is pure ESM for Node, vitest and esbuild alike.
const RUNTIME = `
function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
}
function codePointLength(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}
`;

function inlineRuntime(code: string): string {
  const out = code
    .replace('require("ajv/dist/runtime/equal").default', 'jsonEqual')
    .replace('require("ajv/dist/runtime/ucs2length").default', 'codePointLength');
  if (out.includes('require(')) throw new Error('generated validators still require() a runtime module');
  return `${RUNTIME}${out}`;
}

function main(): void {
  const ajv = createAjv();
  const refs = Object.fromEntries(
    Object.entries(VALIDATED).map(([fn, name]) => [fn, `openapi#/components/schemas/${name}`]),
  );
  const code = inlineRuntime(standaloneCode.default(ajv, refs));
  const out = join(root, 'functions', 'commons', 'generated');
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, 'validators.js'),
    `// Generated from openapi.yaml by infra/tools/gen-validators.ts. Do not edit.\n${code}`,
  );
  const dts = Object.keys(VALIDATED)
    .map((fn) => `export declare const ${fn}: Validator;`)
    .join('\n');
  // The document itself (served at GET /api/v1/openapi.json) and the product version.
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  writeFileSync(
    join(out, 'openapi.js'),
    `// Generated from openapi.yaml and package.json by infra/tools/gen-validators.ts. Do not edit.\nexport const OPENAPI = ${JSON.stringify(loadOpenApi())};\nexport const VERSION = ${JSON.stringify(pkg.version)};\n`,
  );
  writeFileSync(
    join(out, 'openapi.d.ts'),
    'export declare const OPENAPI: Record<string, unknown>;\nexport declare const VERSION: string;\n',
  );
  writeFileSync(
    join(out, 'validators.d.ts'),
    `export interface ValidationError { instancePath: string; keyword: string; params: Record<string, unknown>; message?: string }\nexport interface Validator { (data: unknown): boolean; errors?: ValidationError[] | null }\n${dts}\n`,
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
