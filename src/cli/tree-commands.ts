/**
 * The commands about the package tree itself, that build nothing: fetch,
 * new, graph, info and distfiles add. The work is tree/'s and fetch/'s.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { printable } from '../engine/log.ts';
import { isPackageDir } from '../pkgrules/rules.ts';
import { peerpkgsHome } from '../home.ts';
import { forget, removeTemporary, temporaryName, withTemporaryFile } from '../archive/temporary.ts';
import { EXIT, UsageError, parse, packageDirs, printJson, rel } from './frame.ts';
import { formatBytes } from '../fetch/progress.ts';
import type { ClosureSize } from '../store/sizes.ts';

export async function fetchCmd(argv: string[]): Promise<number> {
  const { values, positionals: args } = parse(argv, { output: { type: 'string', short: 'o' } });
  const out = values.output ?? null;
  if (args.length !== 1) throw new UsageError('name one fetch file or package directory');
  if (out && fs.existsSync(out) && !fs.statSync(out).isDirectory()) throw new UsageError(`-o ${out}: not a directory`);
  const { readFetch } = await import('../tree/package.ts');
  const { DistfileStore } = await import('../fetch/store.ts');
  const { fetchAll } = await import('../fetch/fetchfile.ts');
  const { fetchWithMirror } = await import('../mirrors/fetching.ts');
  const named = path.resolve(args[0]!);
  // a package directory stands for its fetch file, which it may lack: no sources
  const isPackage = fs.statSync(named, { throwIfNoEntry: false })?.isDirectory();
  const fetchFile = isPackage ? path.join(named, 'fetch') : named;
  // readFetch takes a missing file as no sources; a fetch file named is one that must be there
  if (!isPackage) fs.accessSync(fetchFile, fs.constants.R_OK);
  const entries = readFetch(fetchFile);
  const home = peerpkgsHome();
  const store = new DistfileStore(home);
  const got = await fetchWithMirror(path.dirname(fetchFile), home, (sourcesFor) => fetchAll(entries, { store, sourcesFor }));
  // like mkdir -p, so that `do-fetch -o DIR` works on a fresh DIR
  if (out) fs.mkdirSync(out, { recursive: true });
  for (const [file, stored] of got) {
    if (out) {
      // a copy, not a link: what is made of it must not share the store's inode
      const dest = path.join(out, file);
      withTemporaryFile(path.resolve(dest), (tmp) => {
        fs.copyFileSync(stored, tmp, fs.constants.COPYFILE_FICLONE);
        fs.chmodSync(tmp, 0o644);
        fs.renameSync(tmp, dest);
      });
    }
  }
  return EXIT.ok;
}

export async function newPackage(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { url: { type: 'string', multiple: true } });
  if (positionals.length !== 1) throw new UsageError('name the new package directory, e.g. ./pkg/hello');
  const given = positionals[0]!;
  const dir = path.resolve(given);
  if (fs.existsSync(dir)) throw new UsageError(`${given} already exists`);
  const { writePackageTemplate, defaultFileName } = await import('../tree/template.ts');
  const urls = values.url ?? [];
  const names = urls.map((u) => {
    if (!URL.canParse(u)) throw new UsageError(`--url ${u}: not a URL`);
    // the fetch record's `file:`, when the URL's last part is %-encoded
    const raw = defaultFileName(u);
    let name = raw;
    try {
      name = decodeURIComponent(raw);
    } catch {
      // a lone % or bytes that are not UTF-8: the name as written
    }
    if (!name || name === '.' || name === '..' || name.includes('/')) throw new UsageError(`--url ${u}: names no file (its path ends in /)`);
    return name;
  });
  // fetched before anything is written: a URL that fails leaves no package behind
  const sources = [];
  if (urls.length) {
    const { DistfileStore } = await import('../fetch/store.ts');
    const { prefetchUrl } = await import('../fetch/fetch.ts');
    const store = new DistfileStore(peerpkgsHome());
    for (const [i, url] of urls.entries()) {
      const stored = await prefetchUrl(url, names[i]!, { store });
      sources.push({ url, file: names[i]!, sha256: path.basename(stored), size: fs.statSync(stored).size });
    }
  }
  const parent = path.dirname(dir);
  const sibling = (name: string) => isPackageDir(path.join(parent, name));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = temporaryName(dir);
  try {
    writePackageTemplate(tmp, { hasSeed: sibling('seed'), hasUnpack: sibling('unpack'), sources });
    fs.renameSync(tmp, dir);
    forget(tmp);
  } finally {
    await removeTemporary(tmp);
  }
  for (const src of sources) process.stdout.write(`${src.file}: sha256 ${src.sha256}, ${src.size} bytes\n`);
  process.stdout.write(`${given}: edit build, build-deps, run-deps${sources.length ? '' : ' and fetch'}, then: bin/build-packages-ifchange ${given}\n`);
  return EXIT.ok;
}

export async function graphCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, reverse: { type: 'boolean' } });
  const [{ PackageGraph }, walk] = await Promise.all([import('../tree/pkghash.ts'), import('../tree/walk.ts')]);
  const g = new PackageGraph();
  const dirs = packageDirs(positionals);
  if (values.reverse) {
    if (dirs.length !== 1) throw new UsageError('--reverse takes one package directory');
    const target = g.load(dirs[0]!).dir;
    // the tree is the pkg/ directory the package is in
    const tree = path.dirname(target);
    const candidates = fs
      .readdirSync(tree)
      .sort()
      .map((n) => path.join(tree, n))
      .filter(isPackageDir);
    const found = walk.dependents(g, target, candidates);
    if (values.json) printJson({ package: target, tree, dependents: found.map((d) => ({ package: d.dir, kind: d.kind, direct: d.direct })) });
    else process.stdout.write(found.map((d) => printable(`${d.kind}: ${rel(d.dir)}${d.direct ? '' : ' (indirectly)'}`) + '\n').join(''));
    return EXIT.ok;
  }
  if (values.json) {
    // nodes and edges: each package once, however many depend on it
    const packages: Record<string, { buildDeps: string[]; runDeps: string[] }> = {};
    for (const dir of dirs) {
      for (const l of walk.dependencyTree(g, dir)) {
        const pkg = g.load(l.dir);
        packages[pkg.dir] ??= { buildDeps: pkg.buildDeps, runDeps: pkg.runDeps };
      }
    }
    printJson({ roots: dirs.map((d) => g.load(d).dir), packages });
    return EXIT.ok;
  }
  const lines: string[] = [];
  for (const dir of dirs) {
    for (const l of walk.dependencyTree(g, dir)) lines.push(`${'  '.repeat(l.depth)}${l.kind && `${l.kind}: `}${rel(l.dir)}${l.again ? ' (see above)' : ''}`);
  }
  process.stdout.write(lines.map((l) => printable(l)).join('\n') + '\n');
  return EXIT.ok;
}

/** What `peerpkgs info` tells of a package: its --json shape (README: Queries). */
interface PackageInfo {
  package: string;
  pkghash: string;
  closure: string[];
  bclosure: string[];
  sources: Array<{ file: string; sha256: string; fetched: boolean; urls: string[]; mirrors: string[] }>;
  /** null when not built */
  output: { archive: string; bytes: number; sha256: string | null; builtFrom: string | null; upToDate: boolean } | null;
  size: { output: number | null; runClosure: ClosureSize; buildClosure: ClosureSize };
}

async function packageInfo(dir: string, g: import('../tree/pkghash.ts').PackageGraph, home: string): Promise<PackageInfo> {
  const { DistfileStore } = await import('../fetch/store.ts');
  const { recordedSha256, builtFromPkghash } = await import('../store/outputs.ts');
  const { MirrorDb, mirrorDbPath } = await import('../mirrors/db.ts');
  const { outputSize, closureSize } = await import('../store/sizes.ts');
  const store = new DistfileStore(home);
  const pkg = g.load(dir);
  const pkghash = g.pkghash(dir);
  const dbFile = pkg.fetch.length ? mirrorDbPath(dir) : null;
  const mirrors = dbFile ? MirrorDb.load(dbFile) : null;
  const sources = pkg.fetch.map((f) => ({
    file: f.file,
    sha256: f.sha256,
    fetched: store.has(f.sha256),
    urls: f.urls,
    mirrors: (mirrors?.lookup(f.sha256) ?? []).map((r) => `ipfs://${r.cid}`),
  }));
  const archive = path.join(pkg.dir, '.pkg.tar.gz');
  const st = fs.statSync(archive, { throwIfNoEntry: false });
  let output: PackageInfo['output'] = null;
  if (st) {
    // '' when its rule used no pkghash (a seed's .do): nothing to be out of date with
    const from = builtFromPkghash(archive);
    output = { archive, bytes: st.size, sha256: recordedSha256(archive), builtFrom: from || null, upToDate: from === '' || from === pkghash };
  }
  const closure = g.closure(dir);
  const bclosure = g.bclosure(dir);
  const size = {
    output: (await outputSize(pkg.dir, home)) ?? null,
    runClosure: await closureSize([pkg.dir, ...closure], home),
    buildClosure: await closureSize(bclosure, home),
  };
  return { package: pkg.dir, pkghash, closure, bclosure, sources, output, size };
}

/** A closure's size as info says it: its total, or what keeps it from being known. */
function sizeText(what: string, c: ClosureSize): string {
  const n = `${c.packages} package${c.packages === 1 ? '' : 's'}`;
  if (c.bytes !== null) return `${what} ${formatBytes(c.bytes)} (${n})`;
  return `${what} unknown: ${c.missing.map(rel).join(' ')} not built`;
}

function infoText(i: PackageInfo): string[] {
  const out: string[] = [];
  out.push(`package:   ${rel(i.package)}`);
  out.push(`pkghash:   ${i.pkghash}`);
  out.push(`closure:   ${i.closure.map(rel).join(' ') || '(none)'}`);
  out.push(`bclosure:  ${i.bclosure.map(rel).join(' ') || '(none)'}`);
  for (const f of i.sources) {
    out.push(`source:    ${f.file} ${f.sha256} ${f.fetched ? '(in store)' : '(not fetched)'}`);
    for (const m of f.mirrors) out.push(`             ${m}`);
    for (const u of f.urls) out.push(`             ${u}`);
  }
  const o = i.output;
  out.push(o ? `output:    ${rel(o.archive)} ${o.bytes} bytes${o.sha256 ? `, sha256 ${o.sha256}` : ''}` : 'output:    not built');
  const fix = `build-packages-ifchange ${rel(i.package)} rebuilds it`;
  if (o && !o.upToDate && o.builtFrom === null) out.push(`             out of date: no record of the build that made it (state lost, or the file replaced); ${fix}`);
  else if (o && !o.upToDate) out.push(`             out of date: built from pkghash ${o.builtFrom}, not the current one; ${fix}`);
  // as guix size: the package alone, then with what it needs installed, then what its build needs
  const self = i.size.output === null ? (o ? 'unknown until unpacked' : 'not built') : `${formatBytes(i.size.output)} unpacked`;
  out.push(`size:      ${self}`);
  out.push(`             ${sizeText('with its run closure', i.size.runClosure)}`);
  out.push(`             ${sizeText('build closure', i.size.buildClosure)}`);
  out.push('');
  return out;
}

export async function infoCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
  const { PackageGraph } = await import('../tree/pkghash.ts');
  const g = new PackageGraph();
  const home = peerpkgsHome();
  const infos: PackageInfo[] = [];
  for (const dir of packageDirs(positionals)) infos.push(await packageInfo(dir, g, home));
  if (values.json) printJson(infos);
  else
    process.stdout.write(
      infos
        .flatMap(infoText)
        .map((l) => printable(l))
        .join('\n'),
    );
  return EXIT.ok;
}

export async function distfiles(argv: string[]): Promise<number> {
  if (argv[0] !== 'add' || argv.length < 2) throw new UsageError('usage: peerpkgs distfiles add FILE...');
  const { DistfileStore } = await import('../fetch/store.ts');
  const store = new DistfileStore(peerpkgsHome());
  // each file's fetch record, but for its urls: what to paste into pkg/NAME/fetch
  const records: string[] = [];
  for (const f of argv.slice(1)) {
    const sha = await store.add(f);
    records.push(`# ${path.basename(f)}\nsha256: ${sha}\nsize: ${fs.statSync(store.path(sha)).size}\n`);
  }
  process.stdout.write(records.join('\n'));
  return EXIT.ok;
}
