/**
 * The child process the cache benchmarks time: one substitution of the
 * package `big` from the cache at argv[1], timed from the call to its
 * return and printed with the process's peak RSS as JSON. It is plain
 * JavaScript running the compiled code in dist/, as bin/ does, because
 * loading .ts files would add Node's type stripper (some 30 MB) to the figure.
 * Run it as `node --input-type=module -e SCRIPT URL HOME WORK`.
 */
import * as path from 'node:path';

export function substituteChild(repo: string, pkghash: string, opts: { log: boolean }): string {
  return `
const [url, home, work] = process.argv.slice(1);
const dist = ${JSON.stringify(path.join(repo, 'dist/cache'))};
const { parseCacheUrls } = await import(dist + '/backends.js');
const { loadTrustedKeys } = await import(dist + '/keys.js');
const { substitute } = await import(dist + '/substitute.js');
const fs = await import('node:fs');
const target = work + '/pkg/big/.pkg.tar.gz';
fs.mkdirSync(work + '/pkg/big', { recursive: true });
const t0 = process.hrtime.bigint();
const r = await substitute({
  pkghash: ${JSON.stringify(pkghash)}, name: 'big', target, caches: parseCacheUrls(url),
  trusted: loadTrustedKeys(home), outputsDir: work + '/outputs', log: ${opts.log ? '(l) => console.error(l)' : '() => {}'},
});
const s = Number(process.hrtime.bigint() - t0) / 1e9;
if (!('hit' in r)) throw new Error('substitute missed: ' + JSON.stringify(r));
console.log(JSON.stringify({ s, rssMB: process.resourceUsage().maxRSS / 1024 }));
// an IPFS cache's node may keep the event loop alive
process.exit(0);
`;
}
