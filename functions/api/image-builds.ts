import {
  cancelRun,
  createImageBuild,
  deleteImageBuild,
  getImageBuild,
  listImageBuilds,
  newVersion,
  patchImageBuild,
  previewContainerfile,
  readLog,
} from '#commons/domain/image-builds.js';
import { listBody, successStatus } from '#commons/domain/resources.js';
import { apiHandler, isTrue, json, LOG_FOLLOW_WAIT_MS, logResponse } from '#commons/http/api-handler.js';

export const handler = apiHandler({
  'GET /api/v1/imagebuilds': async (req) => {
    const out = await listImageBuilds(req.deps, req.principal(), req.query, isTrue(req.query.withExports));
    return json(200, { ...listBody('ImageBuild', out), items: out.presented });
  },
  'POST /api/v1/imagebuilds': async (req) =>
    json(201, await createImageBuild(req.deps, req.principal(), req.body())),
  'GET /api/v1/imagebuilds/{name}': async (req) =>
    json(
      200,
      await getImageBuild(req.deps, req.principal(), req.param('name'), isTrue(req.query.withExports)),
    ),
  // 200 either way (CONTRACT §2); when runs were still stopping after the bounded wait, the message
  // says the deletion continues, and GET shows metadata.deletionTimestamp until it is done.
  'DELETE /api/v1/imagebuilds/{name}': async (req) => {
    const name = req.param('name');
    const out = await deleteImageBuild(req.deps, req.principal(), name);
    return json(
      200,
      successStatus(
        'ImageBuild',
        out.deleted
          ? `ImageBuild "${name}" deleted`
          : `ImageBuild "${name}" is being deleted: ${out.stopping.join(', ')} still stopping; they and the build are deleted when their runs end`,
      ),
    );
  },
  'POST /api/v1/containerfile': async (req) =>
    json(200, await previewContainerfile(req.deps, req.principal(), req.body())),
  'PATCH /api/v1/imagebuilds/{name}': async (req) =>
    json(200, await patchImageBuild(req.deps, req.principal(), req.param('name'), req.body())),
  'POST /api/v1/imagebuilds/{name}/cancel': async (req) =>
    json(200, await cancelRun(req.deps, req.principal(), 'ImageBuild', req.param('name'))),
  'POST /api/v1/imagebuilds/{name}/newversion': async (req) =>
    json(201, await newVersion(req.deps, req.principal(), req.param('name'), req.body())),
  'GET /api/v1/imagebuilds/{name}/log': async (req) =>
    logResponse(
      await readLog(req.deps, req.principal(), 'ImageBuild', req.param('name'), {
        ...(req.query.cursor ? { cursor: req.query.cursor } : {}),
        follow: isTrue(req.query.follow),
        waitMs: LOG_FOLLOW_WAIT_MS,
      }),
    ),
});
