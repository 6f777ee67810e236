#!/usr/bin/env node
// `npm start`: the whole product on this machine. Settings (README, "Local stack"): PORT, DATA_DIR,
// LOCAL_JWT_SECRET, LOCAL_ORG_ID.
import { startLocalStack } from '../functions/local/stack.js';

// Node 20 is supported by this SDK release; the warning is about releases after January 2027.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const stack = await startLocalStack({
  port: Number(process.env.PORT ?? 8080),
  dataDir: process.env.DATA_DIR ?? '.local',
  ...(process.env.LOCAL_JWT_SECRET ? { jwtSecret: process.env.LOCAL_JWT_SECRET } : {}),
});
const token = await stack.token({
  sub: 'local-admin',
  org_id: process.env.LOCAL_ORG_ID ?? 'local',
  roles: ['admin'],
});
console.log(`serverless-imagebuilder local stack listening on ${stack.url} (data in ${stack.dataDir})`);
console.log(`API: ${stack.url}/api/v1   health: ${stack.url}/healthz`);
console.log(`admin token (12 h):\nexport IMAGEBUILDER_URL=${stack.url} IMAGEBUILDER_TOKEN=${token}`);

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.log('stopping…');
    stack.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
