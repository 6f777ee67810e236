// Discoverability (issue: CLI, quotas and discoverability): what this deployment can do.
import { OPENAPI, VERSION } from '../generated/openapi.js';
import type { Deps } from '../ports.js';
import { authorize, type Principal } from './auth.js';
import { LIMITS } from './containerfile/index.js';
import { limitsFor } from './quotas.js';
import { MAX_LIMIT } from './resources.js';
import { ARCHITECTURES, EXPORT_FORMATS } from './types.js';

export const API_VERSIONS = ['flightctl.io/v1alpha1', 'flightctl.io/v1beta1'] as const;

export const version = () => ({ version: VERSION, apiVersions: API_VERSIONS });

export const openapi = () => OPENAPI;

export function capabilities(deps: Deps, p: Principal) {
  authorize(p, 'read');
  const quota = limitsFor(deps, p.orgId);
  return {
    version: VERSION,
    apiVersions: API_VERSIONS,
    kinds: ['Repository', 'ImageBuild', 'ImageExport'],
    architectures: ARCHITECTURES,
    bindingTypes: ['early', 'late'],
    earlyBinding: Boolean(deps.enrollment),
    exportFormats: EXPORT_FORMATS,
    limits: {
      requestBodyBytes: 1024 * 1024,
      listLimit: MAX_LIMIT,
      buildTimeoutSeconds: deps.settings.buildTimeoutSeconds,
      customizations: LIMITS,
      quota: {
        activeBuilds: quota.activeBuilds,
        buildsPerWindow: quota.buildsPerWindow,
        windowDays: quota.windowSeconds / 86400,
      },
    },
  };
}
