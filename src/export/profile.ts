/**
 * Profiles and their generations, as Nix and Guix have them (an export,
 * as a venv is: the store's home names the place, gc reads the manifests):
 *
 *   profiles/NAME       symlink to the current generation, NAME-G
 *   profiles/NAME-G     a generation: the merged tree of its packages, as a
 *                       venv is (hardlinks into the output store, read-only),
 *                       with bin/profile-run and its manifest, .peerpkgs-profile
 *   profiles/.NAME.lock held while a generation is made or chosen
 *
 * A generation is never changed once made. Installing, removing or
 * upgrading makes the next one under a temporary name, renames it into
 * place, then points NAME at it by renaming a new symlink over the old
 * one: a process killed at any moment leaves NAME on the old generation
 * or on the new, each whole (a killed writer's temporaries are swept by
 * the next one). Rolling back or switching is that last rename alone.
 *
 * The manifest is a lockfile (JSON, `format` 1): every package of the
 * generation, run closures included, with its name, version (meta),
 * pkghash, output sha256, direct run-deps, whether it was asked for, and
 * its origin; and the strategy each settled conflict was settled with,
 * by path, so that later generations settle it alike (Pandora's
 * overrides). An origin says where the package is found again (upgrade):
 * `{ "kind": "tree", "path": DIR }`, or a catalog's,
 * `{ "kind": "catalog", "cache": URL, "name": NAME }`; a reader meeting
 * a kind it does not know keeps the package as it is.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { errorClass, UsageError } from '../errors.ts';
import { homeLayout } from '../home.ts';
import { withLockFile } from '../engine/locks.ts';
import { removeTreeSync, namesIn } from '../archive/files.ts';
import { temporaryName, forget, removeTemporaryFile } from '../archive/temporary.ts';
import type { Output, Settled, Strategy } from '../archive/merge.ts';
// venv.ts and merge.ts (and through them the output store and the engine's
// state) are loaded by commit() alone: a rollback, a list or a switch
// starts in the time Node does
import type { OwnFiles } from './venv.ts';

export const PROFILE_MANIFEST = '.peerpkgs-profile';
const PROFILE_FILES: OwnFiles = { run: 'profile-run', record: PROFILE_MANIFEST, what: 'a profile generation' };
const FORMAT = 1;

/** A profile's state is not what it must be (a generation's manifest unreadable, an output missing). */
export class ProfileError extends errorClass('ProfileError') {}

export type Origin = { kind: 'tree'; path: string } | { kind: 'catalog'; cache: string; name: string } | { kind: string; [k: string]: unknown };

/** A catalog origin, well formed: a manifest is read, not trusted to be. */
export function catalogOrigin(o: Origin): { cache: string; name: string } | null {
  return o.kind === 'catalog' && typeof o.cache === 'string' && typeof o.name === 'string' ? { cache: o.cache, name: o.name } : null;
}

export interface ProfilePackage {
  name: string;
  version?: string;
  pkghash: string;
  /** the output's sha256: its directory in the output store */
  output: string;
  /** names of its direct run-deps, each in the generation too */
  deps: string[];
  /** asked for by name (install), not only a run-dep of one */
  requested: boolean;
  origin: Origin;
}

export interface Manifest {
  format: number;
  profile: string;
  generation: number;
  /** ISO 8601 */
  created: string;
  /** in merge order: each after its run-deps */
  packages: ProfilePackage[];
  /** path → the strategy that settled a conflict there */
  overrides: Record<string, Strategy>;
}

export interface Generation {
  number: number;
  dir: string;
}

export function checkProfileName(name: string): string {
  // NAME-G names a generation: a profile named so would be one of another's
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name) || /-\d+$/.test(name)) {
    throw new UsageError(`bad profile name ${JSON.stringify(name)}: letters, digits, '.', '_' and '-', not ending in -NUMBER`);
  }
  return name;
}

export class Profile {
  readonly dir: string;
  readonly link: string;
  readonly outputsDir: string;

  readonly home: string;
  readonly name: string;

  constructor(home: string, name: string) {
    this.home = home;
    this.name = checkProfileName(name);
    this.dir = homeLayout.profiles(home);
    this.link = path.join(this.dir, name);
    this.outputsDir = homeLayout.outputs(home);
  }

  /** Every complete generation, oldest first. */
  generations(): Generation[] {
    const names = namesIn(this.dir);
    const prefix = `${this.name}-`;
    return names
      .filter((n) => n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)))
      .map((n) => ({ number: Number(n.slice(prefix.length)), dir: path.join(this.dir, n) }))
      .sort((a, b) => a.number - b.number);
  }

  /** The unpacked output of sha256 `output`, in the output store. */
  outputPath(output: string): string {
    return path.join(this.outputsDir, output);
  }

  /** The current generation's number, or null before the first install. */
  current(): number | null {
    let target: string;
    try {
      target = fs.readlinkSync(this.link);
    } catch {
      return null;
    }
    const m = /-(\d+)$/.exec(target);
    return m ? Number(m[1]) : null;
  }

  generationDir(n: number): string {
    return path.join(this.dir, `${this.name}-${n}`);
  }

  manifest(n: number): Manifest {
    const file = path.join(this.generationDir(n), PROFILE_MANIFEST);
    let m: Manifest;
    try {
      m = JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UsageError(`profile ${this.name} has no generation ${n}`);
      throw new ProfileError(`${file}: not a profile manifest (${(e as Error).message})`);
    }
    if (m.format !== FORMAT) throw new ProfileError(`${file}: manifest format ${m.format}, this peerpkgs reads ${FORMAT}`);
    return m;
  }

  /** The current generation's manifest; an empty one before the first install. */
  currentManifest(): Manifest {
    const n = this.current();
    return n === null ? { format: FORMAT, profile: this.name, generation: 0, created: '', packages: [], overrides: {} } : this.manifest(n);
  }

  /** Runs `f` as the one writer of this profile; `onWait` is told when another process is. */
  locked<T>(f: () => T | Promise<T>, onWait: (pid: number) => void = () => {}): Promise<T> {
    fs.mkdirSync(this.dir, { recursive: true });
    return withLockFile(path.join(this.dir, `.${this.name}.lock`), onWait, f);
  }

  /** Points the profile at generation `n` with one rename of a new symlink. */
  activate(n: number): void {
    if (!fs.existsSync(path.join(this.generationDir(n), PROFILE_MANIFEST))) throw new UsageError(`profile ${this.name} has no generation ${n}`);
    const tmp = temporaryName(this.link);
    try {
      fs.symlinkSync(path.basename(this.generationDir(n)), tmp);
      fs.renameSync(tmp, this.link);
    } finally {
      removeTemporaryFile(tmp);
    }
  }

  /**
   * Makes the next generation, holding what `next` makes of the current
   * one's packages (merge order is worked out here), activates it and
   * returns its manifest and the conflicts settled; null when it would
   * hold what the current one does. Call it inside locked().
   */
  async commit(next: (current: ProfilePackage[]) => ProfilePackage[], strategy: Strategy): Promise<{ manifest: Manifest; settled: Settled[] } | null> {
    const { planMergedDir, writeMergedDir } = await import('./venv.ts');
    const { isStrategy } = await import('../archive/merge.ts');
    const before = this.currentManifest();
    const ordered = mergeOrder(next(before.packages));
    if (sameContent(before.packages, ordered)) return null;
    const outputs: Output[] = ordered.map((p) => {
      const dir = this.outputPath(p.output);
      if (!fs.existsSync(dir)) throw new ProfileError(`${p.name}: its output ${p.output} is not in the output store (${dir}); install it again from ${describeOrigin(p.origin)}`);
      return { name: p.name, dir, sha256: p.output, pkghash: p.pkghash };
    });
    const remembered = new Map(Object.entries(before.overrides).filter(([, s]) => isStrategy(s)));
    const plan = planMergedDir(outputs, strategy, PROFILE_FILES, remembered);
    const overrides = { ...before.overrides };
    for (const s of plan.settled) overrides[s.path] = remembered.get(s.path) ?? strategy;
    const number = Math.max(0, ...this.generations().map((g) => g.number)) + 1;
    const manifest: Manifest = { format: FORMAT, profile: this.name, generation: number, created: new Date().toISOString(), packages: ordered, overrides };
    const final = this.generationDir(number);
    const tmp = temporaryName(final);
    fs.mkdirSync(tmp);
    try {
      writeMergedDir(plan, tmp, PROFILE_FILES, JSON.stringify(manifest, null, 2) + '\n');
      fs.renameSync(tmp, final);
    } catch (e) {
      removeTreeSync(tmp);
      throw e;
    } finally {
      forget(tmp);
    }
    this.activate(number);
    return { manifest, settled: plan.settled };
  }

  /** Deletes generation `n`, never the current one. */
  deleteGeneration(n: number): void {
    if (n === this.current()) throw new UsageError(`generation ${n} is the current one of profile ${this.name}; switch to another first`);
    const dir = this.generationDir(n);
    if (!fs.existsSync(dir)) throw new UsageError(`profile ${this.name} has no generation ${n}`);
    // renamed away first: a kill half-way leaves a temporary to sweep, not half a generation
    const doomed = temporaryName(dir);
    fs.renameSync(dir, doomed);
    removeTreeSync(doomed);
    forget(doomed);
  }
}

/** Every profile under `home`, by name. */
export function profileNames(home: string): string[] {
  try {
    return fs
      .readdirSync(homeLayout.profiles(home), { withFileTypes: true })
      .filter((d) => d.isSymbolicLink() && !d.name.startsWith('.'))
      .map((d) => d.name);
  } catch {
    return [];
  }
}

/** Every generation of every profile under `home`, by the profiles' directory (a generation whose profile link is gone still counts). */
export function allGenerations(home: string): Array<{ dir: string; manifest: Manifest | null }> {
  const dir = homeLayout.profiles(home);
  const names = namesIn(dir);
  return names
    .filter((n) => /^[^.].*-\d+$/.test(n))
    .map((n) => {
      const g = path.join(dir, n);
      try {
        return { dir: g, manifest: JSON.parse(fs.readFileSync(path.join(g, PROFILE_MANIFEST), 'utf8')) as Manifest };
      } catch {
        return { dir: g, manifest: null };
      }
    });
}

/** The packages asked for in order, each after its run-deps, each once; those no longer reached go. */
export function mergeOrder(packages: ProfilePackage[]): ProfilePackage[] {
  const byName = new Map(packages.map((p) => [p.name, p]));
  const order = new Map<string, ProfilePackage>();
  const visit = (p: ProfilePackage): void => {
    if (order.has(p.name)) return;
    for (const d of p.deps) {
      const dep = byName.get(d);
      if (dep === undefined) throw new ProfileError(`${p.name} runs with ${d}, which is not in the profile`);
      visit(dep);
    }
    order.set(p.name, p);
  };
  for (const p of packages) if (p.requested) visit(p);
  return [...order.values()];
}

/** Whether two package lists make the same generation. */
function sameContent(a: ProfilePackage[], b: ProfilePackage[]): boolean {
  const key = (l: ProfilePackage[]) => JSON.stringify(l.map((p) => [p.name, p.output, p.requested]));
  return key(a) === key(b);
}

/**
 * `current` with `incoming` (a closure, its requested packages marked)
 * put in: a package of a name already there replaces it (requested if
 * either was); new requested packages come after the others.
 */
export function withInstalled(current: ProfilePackage[], incoming: ProfilePackage[]): ProfilePackage[] {
  const next = new Map(current.map((p) => [p.name, p]));
  for (const p of incoming) {
    const old = next.get(p.name);
    next.set(p.name, { ...p, requested: p.requested || (old?.requested ?? false) });
  }
  return [...next.values()];
}

/** `current` without the requested packages `names` (each must be one), and what only they needed. */
export function withRemoved(current: ProfilePackage[], names: string[], profile: string): ProfilePackage[] {
  for (const n of names) {
    if (!current.some((p) => p.name === n && p.requested)) throw new UsageError(`${n} is not installed in profile ${profile} (peerpkgs list --profile ${profile})`);
  }
  return current.map((p) => (names.includes(p.name) ? { ...p, requested: false } : p));
}

export function describeOrigin(o: Origin): string {
  const c = catalogOrigin(o);
  if (c) return `${c.name} from the catalog of ${c.cache}`;
  return o.kind === 'tree' ? String(o.path) : `${o.kind} ${JSON.stringify(o)}`;
}

/** What changed from generation `a` to `b`: `+NAME VERSION`, `-NAME`, `NAME OLD -> NEW`. */
export function changes(a: Manifest | null, b: Manifest): string[] {
  const before = new Map((a?.packages ?? []).map((p) => [p.name, p]));
  const after = new Map(b.packages.map((p) => [p.name, p]));
  const ver = (p: ProfilePackage) => p.version ?? p.pkghash.slice(0, 12);
  const out: string[] = [];
  for (const [n, p] of after) {
    const old = before.get(n);
    if (!old) out.push(`+${n} ${ver(p)}`);
    else if (old.output !== p.output) out.push(`${n} ${ver(old)} -> ${ver(p)}`);
  }
  for (const n of before.keys()) if (!after.has(n)) out.push(`-${n}`);
  return out;
}
