/**
 * The package tree's built-in rules, registered with the engine like .do
 * files: for every package directory (one holding `build` or a
 * `.pkg.tar.gz.do`), `.pkghash`, `.closure`, `.bclosure` and `.pkg.tar.gz`.
 * A .do file in the package directory overrides any of them (a seed
 * fetches its prebuilt tarball that way).
 *
 * This module stays small because every redo run loads it: the matcher
 * only looks at names, and the code that builds is imported on first use.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Rule, BuildContext } from '../engine/rules.ts';

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
    matches: (_rel, abs) => path.basename(abs) === target && isPackageDir(path.dirname(abs)),
    async build(ctx: BuildContext) {
      // once: every import() call resolves its specifier again
      impl ??= import('./package-rules.ts');
      await (await impl).buildTarget(target, ctx);
    },
  };
}

/** Bump a version to rebuild everything that rule made. */
export const packageRules: Rule[] = [
  rule('.pkghash', '1'),
  rule('.closure', '1'),
  rule('.bclosure', '1'),
  rule('.pkg.tar.gz', '1'),
];
