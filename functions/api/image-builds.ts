import {
  createImageBuild,
  deleteImageBuild,
  getImageBuild,
  listImageBuilds,
} from '#commons/domain/image-builds.js';
import { listBody, successStatus } from '#commons/domain/resources.js';
import { apiHandler, isTrue, json } from '#commons/http/api-handler.js';

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
  'DELETE /api/v1/imagebuilds/{name}': async (req) => {
    await deleteImageBuild(req.deps, req.principal(), req.param('name'));
    return json(200, successStatus(`ImageBuild "${req.param('name')}" deleted`));
  },
});
