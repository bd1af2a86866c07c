/**
 * The commands about the package tree itself, that build nothing: fetch,
 * new, graph, info and distfiles add. The work is tree/'s and fetch/'s.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { printable } from '../engine/log.ts';
import { isPackageDir } from '../pkgrules/rules.ts';
import { peerpkgsHome } from '../store/home.ts';
import { forget, removeTemporary, temporaryName, withTemporaryFile } from '../archive/temporary.ts';
import { EXIT, UsageError, parse, packageDirs, rel } from './frame.ts';

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
  const [{ PackageGraph }, { dependencyTree }] = await Promise.all([import('../tree/pkghash.ts'), import('../tree/walk.ts')]);
  const g = new PackageGraph();
  const lines: string[] = [];
  for (const dir of packageDirs(parse(argv, {}).positionals)) {
    for (const l of dependencyTree(g, dir)) lines.push(`${'  '.repeat(l.depth)}${l.kind && `${l.kind}: `}${rel(l.dir)}${l.again ? ' (see above)' : ''}`);
  }
  process.stdout.write(lines.map((l) => printable(l)).join('\n') + '\n');
  return EXIT.ok;
}

export async function infoCmd(argv: string[]): Promise<number> {
  const { PackageGraph } = await import('../tree/pkghash.ts');
  const { DistfileStore } = await import('../fetch/store.ts');
  const { recordedSha256, builtFromPkghash } = await import('../store/outputs.ts');
  const { MirrorDb, mirrorDbPath } = await import('../mirrors/db.ts');
  const g = new PackageGraph();
  const store = new DistfileStore(peerpkgsHome());
  const out: string[] = [];
  for (const dir of packageDirs(parse(argv, {}).positionals)) {
    const pkg = g.load(dir);
    out.push(`package:   ${rel(pkg.dir)}`);
    out.push(`pkghash:   ${g.pkghash(dir)}`);
    out.push(`closure:   ${g.closure(dir).map(rel).join(' ') || '(none)'}`);
    out.push(`bclosure:  ${g.bclosure(dir).map(rel).join(' ') || '(none)'}`);
    const dbFile = pkg.fetch.length ? mirrorDbPath(dir) : null;
    const mirrors = dbFile ? MirrorDb.load(dbFile) : null;
    for (const f of pkg.fetch) {
      out.push(`source:    ${f.file} ${f.sha256} ${store.has(f.sha256) ? '(in store)' : '(not fetched)'}`);
      for (const r of mirrors?.lookup(f.sha256) ?? []) out.push(`             ipfs://${r.cid}`);
      for (const u of f.urls) out.push(`             ${u}`);
    }
    const archive = path.join(dir, '.pkg.tar.gz');
    const st = fs.statSync(archive, { throwIfNoEntry: false });
    const sha = st ? recordedSha256(archive) : null;
    out.push(st ? `output:    ${rel(archive)} ${st.size} bytes${sha ? `, sha256 ${sha}` : ''}` : 'output:    not built');
    const from = st ? builtFromPkghash(archive) : '';
    const fix = `build-packages-ifchange ${rel(pkg.dir)} rebuilds it`;
    if (from === null) out.push(`             out of date: no record of the build that made it (state lost, or the file replaced); ${fix}`);
    else if (from && from !== g.pkghash(dir)) out.push(`             out of date: built from pkghash ${from}, not the current one; ${fix}`);
    out.push('');
  }
  process.stdout.write(out.map((l) => printable(l)).join('\n'));
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
