/**
 * A seed for tests: Debian's busybox-static as a package tarball (bin/ with
 * busybox and a link per applet), served over HTTP, and a package tree
 * whose pkg/seed fetches it the way a real seed's .pkg.tar.gz.do does.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packDir } from '../src/archive/pack.ts';
import { write, scratch, busyboxHttpd } from './helpers.ts';

export const BUSYBOX = '/usr/bin/busybox';

/** Pack busybox into `www/seed.tar.gz`; returns the sha256 of those bytes. */
export async function makeSeedTarball(www: string): Promise<string> {
  const root = path.join(www, '.seed-root');
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(root, 'bin/busybox'));
  fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter(Boolean);
  for (const a of applets) if (a !== 'busybox') fs.symlinkSync('busybox', path.join(root, 'bin', a));
  fs.mkdirSync(path.join(root, 'usr'));
  fs.symlinkSync('../bin', path.join(root, 'usr/bin'));
  const r = await packDir(root, path.join(www, 'seed.tar.gz'));
  fs.rmSync(root, { recursive: true, force: true });
  return r.compressedSha256;
}

/** pkg/seed: fetches the seed tarball instead of building it. */
export function writeSeedPackage(tree: string, url: string, sha256: string): void {
  write(tree, {
    'pkg/seed/fetch': `url: ${url}/seed.tar.gz\nsha256: ${sha256}\n`,
    'pkg/seed/.pkg.tar.gz.do': 'redo-ifchange fetch\ndo-fetch -o . fetch\nmv seed.tar.gz "$3"\n',
  });
}

/** A package that installs one script, bin/NAME, printing `text`. */
export function simplePackage(name: string, text: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    [`!pkg/${name}/build`]: `#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/bin"\nprintf '#!/bin/sh\\necho %s\\n' '${text}' >"$DESTDIR/bin/${name}"\nchmod 755 "$DESTDIR/bin/${name}"\n`,
    [`pkg/${name}/build-deps`]: '../seed\n',
    ...extra,
  };
}

/** A tree in `work`/tree with pkg/seed, fetching the seed from busybox httpd serving `work`/www; stop the server after. */
export async function seededTree(work: string): Promise<{ tree: string; www: { url: string; stop(): Promise<void> } }> {
  const wwwDir = path.join(work, 'www');
  fs.mkdirSync(wwwDir);
  const seedSha = await makeSeedTarball(wwwDir);
  const www = await busyboxHttpd(wwwDir);
  const tree = path.join(work, 'tree');
  writeSeedPackage(tree, www.url, seedSha);
  return { tree, www };
}

/** What seededTrees() gives a test: its tree, and what the file shares. */
export interface SeededTree {
  /** this test's tree, with pkg/seed */
  dir: string;
  /** this test's $PEERPKGS_HOME: a package another test built is not
   * taken from its store (store/built.ts) */
  home: string;
  /** what the web server serves, seed.tar.gz included */
  wwwDir: string;
  www: { url: string; stop(): Promise<void> };
  seedSha: string;
}

/**
 * Mocha hooks for a file of package-tree tests: the seed served by busybox
 * httpd for the whole file; a fresh tree with pkg/seed and a fresh home for
 * each test, removed after it. Read the fields in the tests (they are set
 * by the hooks).
 */
export function seededTrees(): SeededTree {
  const t = {} as SeededTree;
  let shared: { dir: string; cleanup: () => void };
  let cleanup: () => void;
  before(async () => {
    shared = scratch();
    t.wwwDir = path.join(shared.dir, 'www');
    fs.mkdirSync(t.wwwDir);
    t.seedSha = await makeSeedTarball(t.wwwDir);
    t.www = await busyboxHttpd(t.wwwDir);
  });
  after(async () => {
    await t.www.stop();
    shared.cleanup();
  });
  beforeEach(() => {
    ({ dir: t.dir, cleanup } = scratch());
    t.home = fs.mkdtempSync(path.join(shared.dir, 'home-'));
    writeSeedPackage(t.dir, t.www.url, t.seedSha);
  });
  afterEach(() => cleanup());
  return t;
}

/**
 * A package installing bin/NAME (a script echoing `text`) and whatever else
 * `files` holds (path → content), run-depending on `runDeps`, with `meta`
 * as its pkg/NAME/meta when given.
 */
export function binPackage(name: string, opts: { text?: string; runDeps?: string[]; files?: Record<string, string>; meta?: string } = {}): Record<string, string> {
  const files = { [`bin/${name}`]: `#!/bin/sh\necho ${opts.text ?? `hello from ${name}`}\n`, ...opts.files };
  const lines = ['#!/bin/sh', 'set -e'];
  for (const [p, text] of Object.entries(files)) {
    lines.push(`mkdir -p "$DESTDIR/${path.dirname(p)}"`, `printf '%s' '${text}' >"$DESTDIR/${p}"`);
    if (p.startsWith('bin/')) lines.push(`chmod 755 "$DESTDIR/${p}"`);
  }
  return {
    [`!pkg/${name}/build`]: lines.join('\n') + '\n',
    [`pkg/${name}/build-deps`]: '../seed\n',
    [`pkg/${name}/run-deps`]: (opts.runDeps ?? []).map((d) => `../${d}\n`).join(''),
    ...(opts.meta !== undefined ? { [`pkg/${name}/meta`]: opts.meta } : {}),
  };
}
