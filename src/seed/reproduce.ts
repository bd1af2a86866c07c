/**
 * `peerpkgs seed reproduce`: p2pkgs' promise that every bootstrap package
 * can be reproduced exactly via the package tree itself, checked.
 *
 * Generation 1 is the seed's components (pkg/tcc, pkg/musl-tcc, pkg/busybox,
 * pkg/make-tcc: a compiler, a libc, a shell with utilities, make) built by the
 * tree from the bootstrap seed (pkg/seed), and packed as a seed: their
 * outputs merged, with the directories a sandbox mounts, as one
 * deterministic archive. Generation 2 is the same components built by a copy
 * of the tree whose pkg/seed is generation 1's seed, put in the distfile
 * store where pkg/seed fetches it from. The seed is reproduced when the two
 * generations are identical, bit for bit: each component's output and the
 * packed seed. A component that is not is reported file by file.
 *
 * The copy of the tree holds only the packages' inputs (no built targets,
 * no redo state), so every package of generation 2 is built afresh: the
 * pkghash of each changes with the seed's sha256 anyway.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import type { Engine } from '../engine/engine.ts';
import { homeLayout } from '../home.ts';
import { readManifest } from '../archive/manifest.ts';
import { recordedSha256, OutputStore } from '../store/outputs.ts';
import { DistfileStore } from '../fetch/store.ts';
import { closureOutputs } from '../export/closure.ts';
import { exportTarball } from '../export/tarball.ts';
import type { Output } from '../archive/merge.ts';
import { removeTreeSync } from '../archive/files.ts';
import { readFetch } from '../tree/package.ts';
import { TreeError } from '../tree/errors.ts';
import { compareOutputs, type FileDiff } from '../archive/compare.ts';
import { temporaryName, forget } from '../archive/temporary.ts';
import { PeerpkgsError } from '../errors.ts';

/** The packages a seed is made of, in the tree's pkg/. */
export const SEED_COMPONENTS = ['tcc', 'musl-tcc', 'busybox', 'make-tcc'];

/** What a sandbox mounts over: a seed has them, as bootstrap/make-seed's has. */
const MOUNT_POINTS = ['dev', 'etc', 'home', 'proc', 'tmp'];

export interface ReproduceOptions {
  /** The directory that holds pkg/. */
  tree: string;
  components?: string[];
  home: string;
  /** An engine for the tree whose redo state is in `base` (the caller's
   * default when undefined); `afresh`: its rules take nothing built before
   * (EngineOptions.afresh), so that the second generation is built, not
   * found from an earlier run of the same reproduction. */
  engine: (base: string | undefined, afresh: boolean) => Promise<Engine>;
  /** Progress, a line at a time. */
  log: (line: string) => void;
}

export interface PackedSeed {
  /** Where it is: the distfile store for generation 1, the work directory for 2. */
  file: string;
  /** Of the uncompressed archive: its identity as a package. */
  sha256: string;
  /** Of the .tar.gz: what pkg/seed/fetch names. */
  compressedSha256: string;
  size: number;
}

export interface ComponentResult {
  name: string;
  gen1: string;
  gen2: string;
  diffs: FileDiff[];
}

export interface ReproduceResult {
  components: ComponentResult[];
  seed1: PackedSeed;
  seed2: PackedSeed;
  seedDiffs: FileDiff[];
  fixpoint: boolean;
  /** The work directory (removed on a fixpoint) and in it the copy of the tree generation 2 was built in. */
  work: string;
  tree2: string;
  /** Seconds each generation took, building and packing. */
  seconds: [number, number];
}

/** A build of a generation failed; its exit status. */
export class GenerationFailed extends PeerpkgsError {
  constructor(message: string, status: number) {
    super(message, status, 'GenerationFailed');
  }

  get status(): number {
    return this.exitCode;
  }
}

export async function reproduceSeed(opts: ReproduceOptions): Promise<ReproduceResult> {
  const tree = path.resolve(opts.tree);
  const components = opts.components ?? SEED_COMPONENTS;
  const seedFetch = path.join(tree, 'pkg', 'seed', 'fetch');
  const records = readFetch(seedFetch);
  if (records.length !== 1) throw new TreeError(`${seedFetch}: a seed is one tarball: want one fetch record, found ${records.length}`);
  const seedFile = records[0]!.file;
  for (const c of components) {
    if (!fs.existsSync(path.join(tree, 'pkg', c))) throw new TreeError(`${path.join(tree, 'pkg', c)}: no such package: the seed's components are ${components.join(', ')}`);
  }
  fs.mkdirSync(opts.home, { recursive: true });
  const work = fs.mkdtempSync(homeLayout.reproducePrefix(opts.home));
  const store = new DistfileStore(opts.home);

  opts.log(`generation 1: ${components.join(', ')} built by the bootstrap seed (pkg/seed, ${records[0]!.sha256.slice(0, 16)}…)`);
  let t0 = performance.now();
  let gen1: Built;
  try {
    gen1 = await generation(opts, tree, undefined, components, path.join(work, `generation-1-${seedFile}`));
  } catch (e) {
    removeTreeSync(work); // nothing in it yet worth keeping: the tree's own build keeps its files
    throw e;
  }
  const seed1Sha = await store.add(gen1.seed.file);
  const seed1 = { ...gen1.seed, file: store.path(seed1Sha) };
  fs.rmSync(gen1.seed.file);
  const seconds1 = (performance.now() - t0) / 1000;
  opts.log(`generation 1: seed ${seed1.sha256} (${seed1.size} bytes, in the distfile store as ${seed1Sha})`);

  const tree2 = path.join(work, 'tree');
  copyTreeInputs(path.join(tree, 'pkg'), path.join(tree2, 'pkg'));
  fs.mkdirSync(path.join(tree2, '.redo'));
  fs.writeFileSync(
    path.join(tree2, 'pkg', 'seed', 'fetch'),
    `# generation 1's seed, made by peerpkgs seed reproduce\nurl: file://${seed1.file}\nsha256: ${seed1Sha}\nsize: ${fs.statSync(seed1.file).size}\nfile: ${seedFile}\n`,
  );
  opts.log(`generation 2: ${components.join(', ')} built by generation 1's seed, in ${tree2}`);
  t0 = performance.now();
  const gen2 = await generation(opts, tree2, tree2, components, path.join(work, `generation-2-${seedFile}`));
  const seconds2 = (performance.now() - t0) / 1000;

  const outputs = new OutputStore(opts.home);
  const results: ComponentResult[] = [];
  for (const c of components) {
    const a = gen1.components.get(c)!;
    const b = gen2.components.get(c)!;
    const diffs = a.sha256 === b.sha256 ? [] : await archiveDiffs(a.archive, b.archive, outputs);
    results.push({ name: c, gen1: a.sha256, gen2: b.sha256, diffs });
  }
  const seedDiffs = seed1.sha256 === gen2.seed.sha256 ? [] : await archiveDiffs(seed1.file, gen2.seed.file, outputs);
  const fixpoint = results.every((r) => r.gen1 === r.gen2) && seed1.sha256 === gen2.seed.sha256 && seed1.compressedSha256 === gen2.seed.compressedSha256;
  if (fixpoint) removeTreeSync(work);
  return { components: results, seed1, seed2: gen2.seed, seedDiffs, fixpoint, work, tree2, seconds: [seconds1, seconds2] };
}

interface Built {
  components: Map<string, { sha256: string; archive: string }>;
  seed: PackedSeed;
}

/** Build the components in `tree` and pack them as a seed into `out`. */
async function generation(opts: ReproduceOptions, tree: string, base: string | undefined, components: string[], out: string): Promise<Built> {
  const dirs = components.map((c) => path.join(tree, 'pkg', c));
  const engine = await opts.engine(base, base !== undefined);
  try {
    const rc = await engine.build(
      dirs.map((d) => path.join(d, '.pkg.tar.gz')),
      false,
      tree,
    );
    if (rc !== 0) throw new GenerationFailed(`the build of ${components.join(', ')} in ${tree} failed`, rc);
  } finally {
    await engine.close();
  }
  const built = new Map<string, { sha256: string; archive: string }>();
  for (const [i, c] of components.entries()) {
    const archive = path.join(dirs[i]!, '.pkg.tar.gz');
    const sha256 = recordedSha256(archive) ?? (await new OutputStore(opts.home).unpacked(archive)).sha256;
    built.set(c, { sha256, archive });
  }
  const packages = await closureOutputs(dirs, opts.home);
  const mounts = temporaryName(path.join(path.dirname(out), 'mount-points'));
  fs.mkdirSync(mounts);
  try {
    fs.chmodSync(mounts, 0o755);
    for (const d of MOUNT_POINTS) {
      fs.mkdirSync(path.join(mounts, d));
      fs.chmodSync(path.join(mounts, d), 0o755);
    }
    const seedParts: Output[] = [...packages, { name: 'mount points', dir: mounts, sha256: '' }];
    const packed = await exportTarball({ out, packages: seedParts });
    return { components: built, seed: { file: out, sha256: packed.sha256, compressedSha256: packed.compressedSha256, size: packed.size } };
  } finally {
    removeTreeSync(mounts);
    forget(mounts);
  }
}

async function archiveDiffs(a: string, b: string, outputs: OutputStore): Promise<FileDiff[]> {
  const [ua, ub] = [await outputs.unpacked(a), await outputs.unpacked(b)];
  return compareOutputs({ manifest: await readManifest(a), dir: ua.dir }, { manifest: await readManifest(b), dir: ub.dir });
}

/**
 * Copy what defines each package (build, build-deps, run-deps, fetch, *.do,
 * files/, anything not hidden), leaving out what building made (.pkghash,
 * .closure, .bclosure, .pkg.tar.gz and its record).
 */
export function copyTreeInputs(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true });
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    const src = path.join(from, e.name);
    const dst = path.join(to, e.name);
    if (!e.isDirectory()) {
      if (!e.name.startsWith('.')) fs.cpSync(src, dst, { verbatimSymlinks: true });
      continue;
    }
    if (e.name.startsWith('.')) continue;
    fs.mkdirSync(dst);
    for (const f of fs.readdirSync(src)) {
      if (f.startsWith('.') && !f.endsWith('.do')) continue;
      fs.cpSync(path.join(src, f), path.join(dst, f), { recursive: true, verbatimSymlinks: true, preserveTimestamps: false });
    }
  }
}
