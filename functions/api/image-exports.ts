import { cancelRun, readLog } from '#commons/domain/image-builds.js';
import {
  createImageExport,
  deleteImageExport,
  downloadUrl,
  getImageExport,
  listImageExports,
} from '#commons/domain/image-exports.js';
import { listBody, successStatus } from '#commons/domain/resources.js';
import { apiHandler, isTrue, json, LOG_FOLLOW_WAIT_MS, logResponse } from '#commons/http/api-handler.js';

export const handler = apiHandler({
  'GET /api/v1/imageexports': async (req) =>
    json(200, listBody('ImageExport', await listImageExports(req.deps, req.principal(), req.query))),
  'POST /api/v1/imageexports': async (req) =>
    json(201, await createImageExport(req.deps, req.principal(), req.body())),
  'GET /api/v1/imageexports/{name}': async (req) =>
    json(200, await getImageExport(req.deps, req.principal(), req.param('name'))),
  'DELETE /api/v1/imageexports/{name}': async (req) => {
    await deleteImageExport(req.deps, req.principal(), req.param('name'));
    return json(200, successStatus('ImageExport', `ImageExport "${req.param('name')}" deleted`));
  },
  'GET /api/v1/imageexports/{name}/download': async (req) => ({
    statusCode: 307,
    headers: { location: await downloadUrl(req.deps, req.principal(), req.param('name')) },
  }),
  'POST /api/v1/imageexports/{name}/cancel': async (req) =>
    json(200, await cancelRun(req.deps, req.principal(), 'ImageExport', req.param('name'))),
  'GET /api/v1/imageexports/{name}/log': async (req) =>
    logResponse(
      await readLog(req.deps, req.principal(), 'ImageExport', req.param('name'), {
        ...(req.query.cursor ? { cursor: req.query.cursor } : {}),
        follow: isTrue(req.query.follow),
        waitMs: LOG_FOLLOW_WAIT_MS,
      }),
    ),
});
