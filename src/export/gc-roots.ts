/**
 * The roots of garbage collection, from what holds them: every generation
 * of every profile and every live venv hold their outputs; every
 * registered tree's fetch files hold their distfiles, and its packages
 * their build logs. The store
 * (store/gc.ts) removes the rest; it lives below the exports and
 * learns only the sets.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { allGenerations, ProfileError } from './profile.ts';
import { venvOutputs } from './venv.ts';
import { registrations } from '../store/roots.ts';
import { readFetch } from '../tree/package.ts';
import type { Kept } from '../store/gc.ts';

export function keptByRoots(home: string): Kept {
  const outputs = new Set<string>();
  const distfiles = new Set<string>();
  const stale: string[] = [];
  const packages = new Set<string>();
  for (const g of allGenerations(home)) {
    // what an unreadable generation holds cannot be told: nothing is collected rather than something it needs
    if (g.manifest === null) throw new ProfileError(`${g.dir} has no readable manifest: gc cannot tell what it holds; delete it (peerpkgs delete-generations) or restore it`);
    for (const p of g.manifest.packages) outputs.add(p.output);
  }
  for (const r of registrations(home, 'venvs')) {
    const held = venvOutputs(r.target);
    if (held === null) stale.push(r.link);
    else for (const sha of held) outputs.add(sha);
  }
  for (const r of registrations(home, 'trees')) {
    const pkgDir = path.join(r.target, 'pkg');
    if (!fs.existsSync(pkgDir)) {
      stale.push(r.link);
      continue;
    }
    for (const name of fs.readdirSync(pkgDir)) {
      packages.add(fs.realpathSync(path.join(pkgDir, name)));
      const fetch = path.join(pkgDir, name, 'fetch');
      // a fetch file that does not parse stops gc (its TreeError names the line): what it names cannot be told
      if (fs.existsSync(fetch)) for (const e of readFetch(fetch)) distfiles.add(e.sha256);
    }
  }
  return { outputs, distfiles, stale, packages };
}
