/**
 * The redo state queries: which targets redo has built, which sources they
 * depend on, and which targets are out of date, as redo-targets,
 * redo-sources and redo-ood list them. Paths are base-relative; the
 * commands show them relative to where they run.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { Engine } from './engine.ts';

export type Query = 'targets' | 'sources' | 'ood';

/** The paths `kind` lists, base-relative and unsorted. */
export async function queryState(engine: Engine, kind: Query): Promise<string[]> {
  const state = engine.state;
  const base = engine.base;
  if (kind === 'ood') return engine.outOfDate();
  const out: string[] = [];
  if (kind === 'targets') {
    // a target that made nothing is one until a build of it fails
    for (const [t, r] of state.targets) {
      if (fs.existsSync(path.resolve(base, t)) || (r.out === 'n' && !state.intents.has(t))) out.push(t);
    }
    return out;
  }
  const srcs = new Set<string>();
  for (const r of state.targets.values()) for (const d of r.deps) if (d.k === 'c' && !d.p.startsWith('builtin:') && !state.targets.has(d.p)) srcs.add(d.p);
  // a target that never built, replaced by a file made by hand
  for (const t of state.intents.keys()) {
    const st = state.targets.has(t) ? undefined : fs.statSync(path.resolve(base, t), { throwIfNoEntry: false });
    if (st && engine.isSource(t, st)) srcs.add(t);
  }
  for (const s of srcs) if (fs.existsSync(path.resolve(base, s))) out.push(s);
  return out;
}
