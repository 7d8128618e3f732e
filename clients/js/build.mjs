// Builds @switchyard/client: dist/index.js (ESM), dist/index.cjs (CommonJS),
// dist/*.d.ts (tsc), and dist/switchyard.js, the minified ESM bundle the
// server embeds and serves at /switchyard.js. `--update-bundle` copies it to
// clients/switchyard.js, which is committed (so `go build` needs
// no Node); a Go test checks that the committed copy matches this build.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { copyFileSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
const common = { entryPoints: ['src/index.ts'], bundle: true, target: 'es2020', logLevel: 'warning', legalComments: 'none' };
await build({ ...common, format: 'esm', outfile: 'dist/index.js', platform: 'neutral' });
await build({ ...common, format: 'cjs', outfile: 'dist/index.cjs', platform: 'neutral' });
await build({ ...common, format: 'esm', outfile: 'dist/switchyard.js', platform: 'browser', minify: true });
if (process.argv.includes('--update-bundle')) copyFileSync('dist/switchyard.js', '../switchyard.js');
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', '.'], { stdio: 'inherit' });
