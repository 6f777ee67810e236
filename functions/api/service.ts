import { capabilities, openapi, version } from '#commons/domain/discovery.js';
import { getQuota } from '#commons/domain/quotas.js';
import { apiHandler, json } from '#commons/http/api-handler.js';

export const handler = apiHandler({
  // Served when the function runs and its configuration loads; no auth (load balancers, uptime checks).
  'GET /healthz': async () => json(200, { status: 'ok' }),
  'GET /api/v1/version': async () => json(200, version()),
  'GET /api/v1/openapi.json': async () => json(200, openapi()),
  'GET /api/v1/capabilities': async (req) => json(200, capabilities(req.deps, req.principal())),
  'GET /api/v1/quota': async (req) => json(200, await getQuota(req.deps, req.principal())),
});
