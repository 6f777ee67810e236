// openapi.yaml is the wire format's source of truth; the request validators are generated from it.
// These tests keep the two in lockstep and check wire compatibility with Flight Control's published spec.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import * as generated from '../../functions/commons/generated/validators.js';
import { createAjv, VALIDATED } from '../../infra/tools/gen-validators.js';

const reference = parse(
  readFileSync(join(__dirname, '../fixtures/flightctl-imagebuilder-v1alpha1.openapi.yaml'), 'utf8'),
);
const ours = parse(readFileSync(join(__dirname, '../../openapi.yaml'), 'utf8'));

const corpus: Record<string, unknown[]> = {
  Repository: [
    {
      apiVersion: 'flightctl.io/v1beta1',
      kind: 'Repository',
      metadata: { name: 'r' },
      spec: { type: 'oci', registry: 'quay.io' },
    },
    {
      apiVersion: 'v1beta1',
      kind: 'Repository',
      metadata: { name: 'r' },
      spec: { type: 'oci', registry: '127.0.0.1:5000', scheme: 'http' },
    },
    {
      apiVersion: 'flightctl.io/v1beta1',
      kind: 'Repository',
      metadata: { name: 'r' },
      spec: { type: 'git', registry: 'x' },
    },
    {
      apiVersion: 'flightctl.io/v1beta1',
      kind: 'Repository',
      metadata: { name: 'r' },
      spec: { type: 'oci' },
    },
    { kind: 'Repository', metadata: { name: 'r' }, spec: { type: 'oci', registry: 'quay.io' } },
  ],
  ImageBuild: [
    reference.components.schemas.ImageBuild.example,
    {
      ...reference.components.schemas.ImageBuild.example,
      spec: { ...reference.components.schemas.ImageBuild.example.spec, onboarding: true },
    },
    { ...reference.components.schemas.ImageBuild.example, spec: {} },
    { ...reference.components.schemas.ImageBuild.example, extra: 1 },
  ],
  ImageExport: [
    reference.components.schemas.ImageExport.example,
    { ...reference.components.schemas.ImageExport.example, spec: { format: 'qcow2' } },
  ],
};

describe('openapi.yaml ⇔ generated validators', () => {
  const ajv = createAjv();
  for (const [fn, schema] of Object.entries(VALIDATED)) {
    it(`${fn} gives the same verdicts as the schema compiled now`, () => {
      const fresh = ajv.getSchema(`openapi#/components/schemas/${schema}`);
      const gen = (generated as unknown as Record<string, (d: unknown) => boolean>)[fn];
      expect(fresh && gen).toBeTruthy();
      for (const doc of corpus[schema] ?? []) expect(gen?.(doc)).toBe(fresh?.(doc));
    });
  }
});

describe('wire compatibility with Flight Control v1alpha1', () => {
  it('accepts the reference spec’s examples', () => {
    expect(generated.validateImageBuild(reference.components.schemas.ImageBuild.example)).toBe(true);
    expect(generated.validateImageExport(reference.components.schemas.ImageExport.example)).toBe(true);
  });

  it('accepts every apiVersion, export format and build condition reason the reference names', () => {
    expect(ours.components.schemas.ImageBuild.properties.apiVersion.enum).toEqual(
      expect.arrayContaining(reference.components.schemas.ApiVersion.enum),
    );
    expect(ours.components.schemas.ImageExportSpec.properties.format.enum).toEqual(
      expect.arrayContaining(reference.components.schemas.ExportFormatType.enum),
    );
    for (const fmt of reference.components.schemas.ExportFormatType.enum) {
      const doc = { ...reference.components.schemas.ImageExport.example };
      expect(generated.validateImageExport({ ...doc, spec: { ...doc.spec, format: fmt } })).toBe(true);
    }
  });

  it('keeps the reference’s field names for build spec, source and destination', () => {
    const keys = (s: { properties: object }) => Object.keys(s.properties).sort();
    expect(keys(ours.components.schemas.ImageBuildSpec)).toEqual(
      expect.arrayContaining(keys(reference.components.schemas.ImageBuildSpec)),
    );
    expect(keys(ours.components.schemas.ImageBuildImageRef)).toEqual(
      keys(reference.components.schemas.ImageBuildSource),
    );
    expect(reference.components.schemas.ImageBuildSource.properties.imageTag.pattern).toBe(
      ours.components.schemas.ImageTag.pattern,
    );
  });
});
