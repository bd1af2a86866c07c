#!/usr/bin/env node
/**
 * The second step of `npm run build`, after tsc: the libraries of the IPFS
 * code, which tsc leaves as re-exports in dist/ipfs/deps-*.js (see
 * src/ipfs/deps-dag.ts), bundled by esbuild into those files, with the code
 * they share in dist/ipfs/deps/. Loaded from node_modules, a node's
 * libraries are some 780 modules, and resolving, reading and compiling
 * them one by one took longer than a substitution of 64 MB moved its
 * bytes. Without esbuild (a node_modules from before it was a dependency)
 * the re-exports stay as they are: the same code, loaded the slow way.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import process from 'node:process';

const dir = path.join(import.meta.dirname, '../dist/ipfs');
const entries = ['deps-dag', 'deps-node', 'deps-more'].map((n) => path.join(dir, `${n}.js`));
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  process.stderr.write('bundle: esbuild is not installed (run npm ci): the IPFS libraries are left unbundled, and slow to load\n');
  process.exit(0);
}
fs.rmSync(path.join(dir, 'deps'), { recursive: true, force: true });
await esbuild.build({
  entryPoints: entries,
  outdir: dir,
  allowOverwrite: true,
  bundle: true,
  splitting: true,
  chunkNames: 'deps/[name]-[hash]',
  format: 'esm',
  platform: 'node',
  target: 'node24',
  // a few dependencies are CommonJS and require() Node's modules
  banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
  logLevel: 'warning',
});
