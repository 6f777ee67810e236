// `npm run bench`: prints figures (not asserted) for the targets in the issues. Each figure is a ratio
// against a baseline measured in the same run, so it means the same on any machine.
import { benchApi, benchBundles } from './api.js';
import { benchBuild, benchDispatch, benchExport, benchGeneration } from './workflow.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const only = process.argv[2];
const suites: Record<string, () => Promise<Record<string, number>>> = {
  api: benchApi,
  bundles: benchBundles,
  generation: benchGeneration,
  dispatch: benchDispatch,
  build: benchBuild,
  export: benchExport,
};

const summary: Record<string, number> = {};
for (const [name, run] of Object.entries(suites)) {
  if (only && only !== name) continue;
  Object.assign(summary, await run());
}
console.log('\n## Summary (JSON)');
console.log(JSON.stringify(summary, (_, v) => (typeof v === 'number' ? Number(v.toFixed(3)) : v), 2));
