/**
 * The package tree's built-in rules, registered with the engine like .do
 * files: for every package directory (one holding `build` or a
 * `.pkg.tar.gz.do`), `.pkghash`, `.closure`, `.bclosure` and `.pkg.tar.gz`.
 * Only a seed (tree/seed-dir.ts) may override one, its .pkg.tar.gz, with
 * a .do file (it fetches its prebuilt tarball that way): a .do runs on the
 * host, outside the sandbox.
 *
 * This module stays small because every redo run loads it: the matcher
 * only looks at names, and the code that builds is imported on first use.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { Rule, BuildContext } from '../engine/rules.ts';
import { isSeedDir } from '../tree/seed-dir.ts';

export const PACKAGE_TARGETS = ['.pkghash', '.closure', '.bclosure', '.pkg.tar.gz'] as const;
export type PackageTarget = (typeof PACKAGE_TARGETS)[number];

/** Does `dir` hold a package? */
export function isPackageDir(dir: string): boolean {
  for (const f of ['build', '.pkg.tar.gz.do']) {
    if (fs.statSync(path.join(dir, f), { throwIfNoEntry: false })?.isFile()) return true;
  }
  return false;
}

let impl: Promise<typeof import('./package-rules.ts')> | null = null;

function rule(target: PackageTarget, version: string): Rule {
  return {
    name: `pkg${target}`,
    version,
    quiet: target === '.pkghash', // recomputed every run
    alwaysTarget: true, // a package directory's .pkghash or .pkg.tar.gz is never a source
    // only a seed's .pkg.tar.gz may be made by its .do, which runs unsandboxed
    overridable: (_rel, abs) => target === '.pkg.tar.gz' && isSeedDir(path.dirname(abs)),
    matches: (_rel, abs) => path.basename(abs) === target && isPackageDir(path.dirname(abs)),
    async build(ctx: BuildContext) {
      // once: every import() call resolves its specifier again
      impl ??= import('./package-rules.ts');
      await (await impl).buildTarget(target, ctx);
    },
  };
}

/** Bump a version to rebuild everything that rule made. */
export const packageRules: Rule[] = [rule('.pkghash', '1'), rule('.closure', '1'), rule('.bclosure', '1'), rule('.pkg.tar.gz', '1')];
