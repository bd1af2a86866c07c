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

/**
 * For a describe block: the seed tarball served over HTTP from before its
 * first test to after its last, and a fresh tree a test whose pkg/seed
 * fetches it. `tree.dir` is the tree of the running test; `tree.www` the
 * directory served at `tree.url`.
 */
export function seededTrees(): { dir: string; www: string; url: string } {
  const tree = { dir: '', www: '', url: '' };
  let shared: { dir: string; cleanup: () => void };
  let www: { url: string; stop(): Promise<void> };
  let sha = '';
  let current: { dir: string; cleanup: () => void } | null = null;
  before(async () => {
    shared = scratch();
    sha = await makeSeedTarball(shared.dir);
    www = await busyboxHttpd(shared.dir);
    tree.www = shared.dir;
    tree.url = www.url;
  });
  after(async () => {
    await www.stop();
    shared.cleanup();
  });
  beforeEach(() => {
    current = scratch();
    tree.dir = current.dir;
    writeSeedPackage(tree.dir, www.url, sha);
  });
  afterEach(() => current?.cleanup());
  return tree;
}
