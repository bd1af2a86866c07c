/**
 * The commands of profiles and of garbage collection: install (from a
 * tree, or by name from the catalogs: catalog-commands.ts), remove,
 * upgrade, list, generations, rollback, switch-generation,
 * delete-generations, env and gc. Each parses with frame.ts's parser; the
 * work is export/profile.ts's and store/gc.ts's. Every command that
 * changes a profile does it as the profile's one writer, and the ones
 * that build or make a generation as users of the store (no gc meanwhile).
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { peerpkgsHome } from '../home.ts';
import { EXIT, UsageError, parse, packageDirs, isBareName } from './frame.ts';
// build-commands.ts (the engine) is loaded by the commands that build or merge
import { Profile, withInstalled, withRemoved, changes, describeOrigin, catalogOrigin, type Manifest, type ProfilePackage } from '../export/profile.ts';
import type { Strategy } from '../archive/merge.ts';
import type { BuildFlags } from './build-commands.ts';

const building = () => import('./build-commands.ts');
// the store's roots are loaded by the commands that take part in gc's
// exclusion: a rollback or a list starts without them
const roots = () => import('../store/roots.ts');

const PROFILE = { profile: { type: 'string' } } as const;

const say = (s: string) => void process.stdout.write(s);
const tell = (s: string) => void process.stderr.write(s);

/** A size as people read it: 0 B, 512 B, 4.0 KiB, 1.5 MiB. */
function humanSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let n = bytes;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function profileOf(values: { profile?: string }): Profile {
  return new Profile(peerpkgsHome(), values.profile ?? 'default');
}

const waitingFor = (p: Profile) => (pid: number) => tell(`waiting for profile ${p.name}: process ${pid} is changing it\n`);

/** Builds `dirs` and their closures (as every export does); the profile packages they are, those named requested. */
async function fromTree(flags: BuildFlags, dirs: string[], then: (pkgs: ProfilePackage[]) => Promise<number> | number): Promise<number> {
  const { withOutputs } = await building();
  return withOutputs(flags, dirs, async (outputs, graph) => {
    const { closureOrder } = await import('../export/closure.ts');
    const asked = new Set(dirs.map((d) => graph.load(d).dir));
    const pkgs = closureOrder(dirs, graph).map((dir, i): ProfilePackage => {
      const pkg = graph.load(dir);
      const o = outputs[i]!;
      return {
        name: pkg.name,
        ...(pkg.meta.version !== undefined ? { version: pkg.meta.version } : {}),
        pkghash: o.pkghash!,
        output: o.sha256,
        deps: pkg.runDeps.map((d) => graph.load(d).name),
        requested: asked.has(dir),
        origin: { kind: 'tree', path: dir },
      };
    });
    return then(pkgs);
  });
}

/** Makes the profile's next generation from what `next` makes of the current packages, and says what happened. */
async function change(p: Profile, cmd: string, strategy: Strategy, next: (current: ProfilePackage[]) => ProfilePackage[]): Promise<number> {
  const r = await p.locked(() => p.commit(next, strategy), waitingFor(p));
  if (r === null) {
    say(`profile ${p.name}: nothing changed (generation ${p.current() ?? 0})\n`);
    return EXIT.ok;
  }
  (await building()).tellSettled(cmd, r.settled);
  const before = r.manifest.generation > 1 ? previousManifest(p, r.manifest.generation) : null;
  say(`profile ${p.name}: generation ${r.manifest.generation}: ${changes(before, r.manifest).join(', ') || 'the same packages'}\n`);
  return EXIT.ok;
}

function previousManifest(p: Profile, n: number): Manifest | null {
  const prev = p
    .generations()
    .filter((g) => g.number < n)
    .at(-1);
  return prev ? p.manifest(prev.number) : null;
}

export async function install(argv: string[]): Promise<number> {
  const flags = (await building()).exportFlags(argv, PROFILE);
  const p = profileOf(flags.values as { profile?: string });
  const named = flags.args.filter(isBareName);
  if (named.length > 0 && named.length < flags.args.length) throw new UsageError('install either package directories (./pkg/NAME) or names from the catalogs, not both at once');
  if (named.length > 0) {
    // the catalogs' code (caches, keys, archives) is loaded for an install by name alone
    const { fromCatalogs, inStore } = await import('./catalog-commands.ts');
    return inStore(async () => {
      const pkgs = await fromCatalogs(named, 'peerpkgs install');
      return change(p, 'install', flags.strategy, (cur) => withInstalled(cur, pkgs));
    });
  }
  const dirs = packageDirs(flags.args);
  return fromTree(flags, dirs, (pkgs) => change(p, 'install', flags.strategy, (cur) => withInstalled(cur, pkgs)));
}

export async function remove(argv: string[]): Promise<number> {
  const flags = (await building()).exportFlags(argv, PROFILE);
  const p = profileOf(flags.values as { profile?: string });
  if (flags.args.length === 0) throw new UsageError('name at least one installed package (peerpkgs list)');
  const { usingStore } = await roots();
  return usingStore(p.home, () => change(p, 'remove', flags.strategy, (cur) => withRemoved(cur, flags.args, p.name)));
}

export async function upgrade(argv: string[]): Promise<number> {
  const flags = (await building()).exportFlags(argv, PROFILE);
  const p = profileOf(flags.values as { profile?: string });
  const installed = p.currentManifest().packages.filter((x) => x.requested);
  for (const n of flags.args) if (!installed.some((x) => x.name === n)) throw new UsageError(`${n} is not installed in profile ${p.name} (peerpkgs list --profile ${p.name})`);
  const chosen = installed.filter((x) => flags.args.length === 0 || flags.args.includes(x.name));
  const dirs: string[] = [];
  const fromCatalog = chosen.map((x) => ({ x, origin: catalogOrigin(x.origin) })).filter((c) => c.origin !== null);
  if (fromCatalog.length > 0) {
    const { fromOrigin, inStore } = await import('./catalog-commands.ts');
    const rc = await inStore(async () => {
      const pkgs: ProfilePackage[] = [];
      for (const { x, origin } of fromCatalog) {
        const found = await fromOrigin(origin!.cache, origin!.name, 'peerpkgs upgrade');
        if (found === null) tell(`peerpkgs upgrade: warning: ${x.name}: the catalog of ${origin!.cache} no longer has it; kept as it is\n`);
        else pkgs.push(...found);
      }
      return change(p, 'upgrade', flags.strategy, (cur) => withInstalled(cur, pkgs));
    });
    if (rc !== EXIT.ok) return rc;
  }
  for (const x of chosen) {
    // an origin of a kind this peerpkgs does not know is kept as it is
    if (x.origin.kind !== 'tree') continue;
    const dir = String(x.origin.path);
    if (!fs.existsSync(dir)) throw new UsageError(`${x.name}: its tree ${dir} is gone; install it again from where it is now, or remove it`);
    dirs.push(dir);
  }
  if (dirs.length === 0) {
    if (fromCatalog.length === 0) say(`profile ${p.name}: nothing to upgrade\n`);
    return EXIT.ok;
  }
  return fromTree({ ...flags, args: dirs }, packageDirs(dirs), (pkgs) => change(p, 'upgrade', flags.strategy, (cur) => withInstalled(cur, pkgs)));
}

export async function list(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...PROFILE, json: { type: 'boolean' } });
  if (positionals.length) throw new UsageError(`list takes no arguments, not ${positionals[0]}`);
  const p = profileOf(values);
  const m = p.currentManifest();
  const rows = m.packages.map((x) => ({ ...x, size: treeBytes(p.outputPath(x.output)) }));
  if (values.json) {
    say(JSON.stringify({ profile: p.name, generation: p.current(), packages: rows }, null, 2) + '\n');
    return EXIT.ok;
  }
  for (const x of rows) {
    const from = x.requested ? describeOrigin(x.origin) : `${describeOrigin(x.origin)} (run-dep)`;
    say(`${x.name}\t${x.version ?? '-'}\t${x.pkghash.slice(0, 12)}\t${humanSize(x.size)}\t${from}\n`);
  }
  return EXIT.ok;
}

/** Bytes of the files of an unpacked output (what a profile holds of it). */
function treeBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += fs.lstatSync(path.join(e.parentPath, e.name)).size;
  }
  return n;
}

export async function generations(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, PROFILE);
  if (positionals.length) throw new UsageError(`generations takes no arguments, not ${positionals[0]}`);
  const p = profileOf(values);
  const cur = p.current();
  let before: Manifest | null = null;
  for (const g of p.generations()) {
    const m = p.manifest(g.number);
    say(`${g.number}\t${m.created}\t${changes(before, m).join(', ') || '(no change)'}${g.number === cur ? '\t(current)' : ''}\n`);
    before = m;
  }
  return EXIT.ok;
}

/** Points the profile at the generation `choose` picks from the current one's number. */
async function switchTo(p: Profile, choose: (current: number) => number): Promise<number> {
  return p.locked(() => {
    const cur = p.current();
    if (cur === null) throw new UsageError(`profile ${p.name} has no generations yet (peerpkgs install)`);
    const n = choose(cur);
    p.activate(n);
    say(`profile ${p.name}: generation ${cur} -> ${n}\n`);
    return EXIT.ok;
  }, waitingFor(p));
}

export async function rollback(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, PROFILE);
  if (positionals.length) throw new UsageError(`rollback takes no arguments, not ${positionals[0]}`);
  const p = profileOf(values);
  return switchTo(p, (cur) => {
    const prev = p
      .generations()
      .filter((g) => g.number < cur)
      .at(-1);
    if (!prev) throw new UsageError(`profile ${p.name} has no generation before ${cur}`);
    return prev.number;
  });
}

function generationNumber(s: string): number {
  if (!/^[1-9]\d*$/.test(s)) throw new UsageError(`not a generation number: ${JSON.stringify(s)}`);
  return Number(s);
}

export async function switchGeneration(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, PROFILE);
  if (positionals.length !== 1) throw new UsageError('name one generation number (peerpkgs generations)');
  const n = generationNumber(positionals[0]!);
  return switchTo(profileOf(values), () => n);
}

export async function deleteGenerations(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...PROFILE, 'older-than': { type: 'string' } });
  const p = profileOf(values);
  const older = values['older-than'];
  if ((older === undefined) === (positionals.length === 0)) throw new UsageError('give either --older-than Nd or generation numbers');
  let days = 0;
  if (older !== undefined) {
    const m = /^(\d+)d$/.exec(older);
    if (!m) throw new UsageError(`--older-than takes a number of days, as 30d, not ${JSON.stringify(older)}`);
    days = Number(m[1]);
  }
  const numbers = positionals.map(generationNumber);
  return p.locked(() => {
    const cur = p.current();
    const doomed =
      older !== undefined
        ? p
            .generations()
            .filter((g) => g.number !== cur && Date.parse(p.manifest(g.number).created) < Date.now() - days * 86_400_000)
            .map((g) => g.number)
        : numbers;
    for (const n of doomed) p.deleteGeneration(n);
    say(`profile ${p.name}: deleted ${doomed.length ? `generation${doomed.length > 1 ? 's' : ''} ${doomed.join(', ')}` : 'no generation'}\n`);
    return EXIT.ok;
  }, waitingFor(p));
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export async function env(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, PROFILE);
  if (positionals.length) throw new UsageError(`env takes no arguments, not ${positionals[0]}`);
  const p = profileOf(values);
  // the link, not the generation: a rollback changes what PATH finds
  say(`PEERPKGS_PROFILE=${quote(p.link)}\nexport PEERPKGS_PROFILE\nPATH="$PEERPKGS_PROFILE/bin:$PEERPKGS_PROFILE/usr/bin:$PATH"\nexport PATH\n`);
  return EXIT.ok;
}

export async function gc(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'dry-run': { type: 'boolean', short: 'n' } });
  if (positionals.length) throw new UsageError(`gc takes no arguments, not ${positionals[0]}`);
  const home = peerpkgsHome();
  const dry = values['dry-run'] ?? false;
  const onWait = (pid: number, what: 'gc' | 'user') =>
    tell(`gc: waiting for process ${pid} (${what === 'gc' ? 'another gc' : 'a build, an install or an IPFS command'}) to finish\n`);
  const { exclusively } = await roots();
  return exclusively(
    home,
    async () => {
      const [{ keptByRoots }, { findGarbage, collect, ipfsGarbage }] = await Promise.all([import('../export/gc-roots.ts'), import('../store/gc.ts')]);
      const garbage = findGarbage(home, keptByRoots(home));
      collect(garbage, dry);
      garbage.push(await ipfsGarbage(home, dry));
      for (const g of garbage) {
        if (dry) for (const [p] of g.items) say(`would delete ${p}\n`);
        say(`${dry ? 'would free' : 'freed'} ${g.kind}: ${g.items.length} (${humanSize(g.bytes)})\n`);
      }
      return EXIT.ok;
    },
    onWait,
  );
}
