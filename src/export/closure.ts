/**
 * What an export holds: the packages asked for and their run closures, as
 * unpacked outputs in merge order. The order decides conflicts under
 * --prefer-existing and --prefer-new, so it is the user's: the packages in
 * the order named, each after its own run-deps (PackageGraph.closure's
 * order), each package once, at its first place.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { OutputStore } from '../store/outputs.ts';
import { PackageGraph } from '../tree/pkghash.ts';
import { display } from '../tree/errors.ts';
import type { Output } from '../archive/merge.ts';

/** Package directories in merge order. */
export function closureOrder(dirs: string[], graph = new PackageGraph()): string[] {
  const order = new Set<string>();
  for (const d of dirs) {
    for (const c of graph.closure(d)) order.add(c);
    order.add(graph.load(d).dir);
  }
  return [...order];
}

/**
 * The unpacked outputs of `dirs` and their closures, unpacking into the
 * output store under `home` what is not there yet. The packages must be
 * built (`bin/build-packages-ifchange`); the archive's identity is the one
 * recorded beside it.
 */
export async function closureOutputs(dirs: string[], home: string, graph = new PackageGraph()): Promise<Output[]> {
  const store = new OutputStore(home);
  const outputs: Output[] = [];
  for (const dir of closureOrder(dirs, graph)) {
    const archive = path.join(dir, '.pkg.tar.gz');
    if (!fs.existsSync(archive)) throw new Error(`${display(dir)} is not built: bin/build-packages-ifchange ${display(dir)}`);
    const u = await store.unpacked(archive);
    outputs.push({ name: graph.load(dir).name, dir: u.dir, sha256: u.sha256, pkghash: graph.pkghash(dir) });
  }
  return outputs;
}
