import {
  createRepository,
  deleteRepository,
  getRepository,
  listRepositories,
  presentRepository,
  replaceRepository,
} from '#commons/domain/repositories.js';
import { listBody, successStatus } from '#commons/domain/resources.js';
import { apiHandler, json } from '#commons/http/api-handler.js';

export const handler = apiHandler({
  'GET /api/v1/repositories': async (req) =>
    json(
      200,
      listBody('Repository', await listRepositories(req.deps, req.principal(), req.query), presentRepository),
    ),
  'POST /api/v1/repositories': async (req) =>
    json(201, await createRepository(req.deps, req.principal(), req.body())),
  'GET /api/v1/repositories/{name}': async (req) =>
    json(200, await getRepository(req.deps, req.principal(), req.param('name'))),
  'PUT /api/v1/repositories/{name}': async (req) => {
    const out = await replaceRepository(req.deps, req.principal(), req.param('name'), req.body());
    return json(out.created ? 201 : 200, out.resource);
  },
  'DELETE /api/v1/repositories/{name}': async (req) => {
    await deleteRepository(req.deps, req.principal(), req.param('name'));
    return json(200, successStatus('Repository', `Repository "${req.param('name')}" deleted`));
  },
});
