/**
 * A new package directory, as `peerpkgs new` makes it: a build script to
 * fill in, the seed as its one build dependency (when the tree has one),
 * and a fetch file that says its own format.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const BUILD_TEMPLATE = `#!/bin/sh
# Runs in the sandbox, in /home/build (the fetched sources and files/ are
# here), with the build closure as its root. Install into $DESTDIR.
set -eu
mkdir -p "$DESTDIR/bin"
`;

const FETCH_TEMPLATE =
  '# One record a source file, records separated by blank lines\n# (peerpkgs distfiles add FILE prints its sha256 and size):\n# url: https://example.org/hello-1.0.tar.gz\n# sha256: <64 hex digits>\n# size: <bytes>\n';

/** Writes the template into `dir`, which must not exist; `hasSeed` says whether ../seed is a package. */
export function writePackageTemplate(dir: string, hasSeed: boolean): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'build'), BUILD_TEMPLATE, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'build-deps'), hasSeed ? '../seed\n' : '');
  fs.writeFileSync(path.join(dir, 'run-deps'), '');
  fs.writeFileSync(path.join(dir, 'fetch'), FETCH_TEMPLATE);
}
