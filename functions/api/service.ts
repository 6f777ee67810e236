import { apiHandler, json } from '#commons/http/api-handler.js';

export const handler = apiHandler({
  // Served when the function runs and its configuration loads; no auth (load balancers, uptime checks).
  'GET /healthz': async (req) => {
    void req.deps;
    return json(200, { status: 'ok' });
  },
});
