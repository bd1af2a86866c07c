/**
 * Which package directories may be made by a .do file of their own.
 *
 * A .do file runs on the host, as the user, outside the sandbox: it is
 * trusted as the engine is. So only a seed may have one: a package with no
 * build script and no dependencies, whose .pkg.tar.gz.do takes a tarball
 * that its fetch file names by sha256 (pkg/seed). Any other package is
 * built in the sandbox, whatever .do files it carries. Kept apart from
 * package.ts because the engine asks it for every target it looks up.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';

export const SEED_DO = '.pkg.tar.gz.do';

/** Is `dir` a seed: no build script, no build-deps and no run-deps? */
export function isSeedDir(dir: string): boolean {
  for (const f of ['build', 'build-deps', 'run-deps']) {
    if (fs.existsSync(path.join(dir, f))) return false;
  }
  return true;
}
