// Bundle every widget entry js/src/<name>.js (with its shared imports) into one self-contained
// ESM file cnnwidgets/static/<name>.js, which the Python widget classes load as their _esm.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const sourceDir = join(here, 'src');
const outDir = join(here, '..', 'cnnwidgets', 'static');

const entryPoints = readdirSync(sourceDir)
  .filter((file) => file.endsWith('.js'))
  .map((file) => join(sourceDir, file));

await build({
  entryPoints,
  outdir: outDir,
  bundle: true,
  format: 'esm',
  target: 'es2020',
  logLevel: 'info',
});
