// The npm registry mirror of this workplace answers 404 for platform packages of other systems
// (@biomejs/cli-darwin-*, @rollup/rollup-win32-*…), so `npm install` leaves them out of
// package-lock.json and `npm ci` then refuses the lock as out of sync. This adds the missing optional
// entries with the os/cpu/libc that keep npm from ever installing them here. Run it after changing
// dependencies: `node .ci/fix-lock.mjs` (it changes nothing when the lock is complete).
import { readFileSync, writeFileSync } from 'node:fs';

const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const packages = lock.packages;
const CPU = {
  arm: 'arm',
  arm64: 'arm64',
  x64: 'x64',
  ia32: 'ia32',
  loong64: 'loong64',
  ppc64: 'ppc64',
  riscv64: 'riscv64',
  s390x: 's390x',
};

function platformOf(name) {
  const base = name.split('/')[1].replace(/^cli-|^rollup-/, '');
  const [os, cpuPart, abi] = base.split('-');
  const cpu = CPU[cpuPart] ?? cpuPart;
  const libc = /musl/.test(base) ? ['musl'] : /gnu/.test(abi ?? '') && os === 'linux' ? ['glibc'] : undefined;
  return { os: [os === 'openharmony' ? 'openharmony' : os], cpu: [cpu], ...(libc ? { libc } : {}) };
}

let added = 0;
for (const [path, pkg] of Object.entries(packages)) {
  for (const [dep, spec] of Object.entries(pkg.optionalDependencies ?? {})) {
    if (!/^@(biomejs\/cli|rollup\/rollup)-/.test(dep)) continue;
    const where = `${path ? `${path}/` : ''}node_modules/${dep}`.replace(
      /^.*?node_modules\/(?=@)/,
      'node_modules/',
    );
    if (packages[where] || packages[`node_modules/${dep}`]) continue;
    packages[`node_modules/${dep}`] = { version: spec, ...platformOf(dep), dev: pkg.dev, optional: true };
    if (!pkg.dev) delete packages[`node_modules/${dep}`].dev;
    added++;
  }
}
const sorted = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a.localeCompare(b))),
);
lock.packages = sorted;
writeFileSync('package-lock.json', `${JSON.stringify(lock, null, 2)}\n`);
console.log(`fix-lock: ${added} optional platform entries added`);
