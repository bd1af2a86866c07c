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
/**
 * Our own changes to the libraries' code, made as they are bundled: each
 * names its file, the text it replaces and why. A change whose text is
 * not found stops the build (a new version of the library: look again),
 * rather than leaving the code unchanged without a word.
 */
const patches = [
  {
    // @libp2p/noise decrypts each frame into `dst`, the frame's own bytes
    // (decryption in place). A frame that arrived in two socket reads (a
    // 65,535-byte frame and Node's 64 KiB reads: nearly all of a big
    // transfer's) is a list of two buffers, and its subarray() joins them
    // into a new buffer that src/ipfs/noise-crypto.ts, which decrypts with
    // node:crypto into a buffer of its own, then ignores: 239 MB allocated
    // and copied for nothing in a 256 MB transfer (counted by wrapping
    // Buffer.concat). The frame given as a list, no `dst`: node:crypto and
    // the WebAssembly cipher for small frames both make their own output.
    file: /[\\/]@libp2p[\\/]noise[\\/]dist[\\/]src[\\/]utils\.js$/,
    from: 'const dst = chunk.subarray(i, end - CHACHA_TAG_LENGTH);',
    to: 'const dst = chunk instanceof Uint8Array ? chunk.subarray(i, end - CHACHA_TAG_LENGTH) : undefined;',
  },
  {
    // @libp2p/tcp writes the parts of what a connection sends one by one
    // to a socket with Nagle off: a Noise frame is three parts (its length,
    // the ciphertext, the tag) under a Yamux header, so each 64 KiB sent was
    // four write calls and as many TCP segments, the small ones costing
    // both ends as much as the large. Corked, Node writes them in one writev.
    file: /[\\/]@libp2p[\\/]tcp[\\/]dist[\\/]src[\\/]socket-to-conn\.js$/,
    from: `        let canSendMore = true;
        for (const buf of data) {
            sentBytes += buf.byteLength;
            canSendMore = this.socket.write(buf);
            if (!canSendMore) {
                break;
            }
        }`,
    to: `        let canSendMore = true;
        this.socket.cork();
        for (const buf of data) {
            sentBytes += buf.byteLength;
            canSendMore = this.socket.write(buf);
            if (!canSendMore) {
                break;
            }
        }
        this.socket.uncork();`,
  },
];
const patching = {
  name: 'patches',
  setup(build) {
    for (const p of patches) {
      build.onLoad({ filter: p.file }, async (args) => {
        const text = await fs.promises.readFile(args.path, 'utf8');
        if (!text.includes(p.from)) throw new Error(`${args.path}: the text a patch replaces is not there (a new version?): ${p.from}`);
        p.applied = true;
        return { contents: text.replace(p.from, p.to), loader: 'js' };
      });
    }
  },
};
fs.rmSync(path.join(dir, 'deps'), { recursive: true, force: true });
await esbuild.build({
  plugins: [patching],
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
for (const p of patches) if (!p.applied) throw new Error(`bundle: no file matched the patch for ${p.file}`);
