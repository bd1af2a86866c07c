/**
 * A new package directory, as `peerpkgs new` makes it: a build script in
 * the tree's conventions (`set -eux`, installed under $DESTDIR/usr, sources
 * unpacked by `unpack`, which takes every tar format and compression), the
 * seed and pkg/unpack as its build dependencies (those of them the tree
 * has), and a fetch file: the sources' records when they were fetched
 * (new-package --url), else one that says its own format.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';

/** A source fetched into the distfile store, for its fetch record. */
export interface TemplateSource {
  url: string;
  /** its name in the build directory */
  file: string;
  sha256: string;
  size: number;
}

export interface TemplateOptions {
  /** ../seed is a package */
  hasSeed: boolean;
  /** ../unpack is a package */
  hasUnpack: boolean;
  sources: TemplateSource[];
}

const FETCH_TEMPLATE =
  "# One record a source file, records separated by blank lines\n# (new-package --url URL writes them; peerpkgs distfiles add FILE prints a\n# local file's sha256 and size):\n# url: https://example.org/hello-1.0.tar.gz\n# sha256: <64 hex digits>\n# size: <bytes>\n";

/** What `unpack` takes (pkg/unpack/files/unpack), by name: tar in any format, compressed or not, and zip. */
const ARCHIVE = /\.(tar|tar\.(gz|bz2|xz|lzma|Z)|tgz|tbz2?|txz|zip)$/;

/** The name a URL's file gets when the fetch record has no `file:` (tree/package.ts). */
export function defaultFileName(url: string): string {
  return path.posix.basename(new URL(url).pathname);
}

/** The build script: unpack the first archive, enter its directory, configure, make, install under /usr. */
export function buildScript(name: string, sources: TemplateSource[]): string {
  const archives = sources.filter((s) => ARCHIVE.test(s.file));
  const top = archives[0]?.file.replace(ARCHIVE, '');
  const lines = [
    '#!/bin/sh',
    `# ${name}: what it is, and what in the tree needs it.`,
    '# Runs in the sandbox, in /home/build (the fetched sources and files/ are',
    '# here), with the build closure as its root; installs under $DESTDIR/usr.',
    'set -eux',
  ];
  if (top) {
    const files = archives.map((a) => a.file).join(' ');
    lines.push(`unpack ${files}`, `rm ${files}`, `cd ${top}`);
  } else {
    lines.push('# unpack NAME-1.0.tar.gz   # any tar format and compression, or a zip (build-deps: ../unpack)', '# rm NAME-1.0.tar.gz', '# cd NAME-1.0');
  }
  // autoconf's usual flags on the seed: tcc as cc, no translations (no gettext here)
  const configure = ['CC=cc CFLAGS=-O2 ./configure --prefix=/usr --disable-nls', 'make', 'make install DESTDIR="$DESTDIR"'];
  if (top) lines.push(...configure);
  else lines.push(...configure.map((l) => `# ${l}`), 'mkdir -p "$DESTDIR/usr/bin"');
  return lines.join('\n') + '\n';
}

/** The fetch file's records, with `file:` only where the URL does not already name the file so. */
export function fetchRecords(sources: TemplateSource[]): string {
  return sources.map((s) => `url: ${s.url}\nsha256: ${s.sha256}\nsize: ${s.size}\n${s.file !== defaultFileName(s.url) ? `file: ${s.file}\n` : ''}`).join('\n');
}

/** Writes the template into `dir`, which must not exist. */
export function writePackageTemplate(dir: string, opts: TemplateOptions): void {
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'build'), buildScript(path.basename(dir), opts.sources), { mode: 0o755 });
  const deps = [opts.hasSeed && '../seed', opts.hasUnpack && '../unpack'].filter(Boolean);
  fs.writeFileSync(path.join(dir, 'build-deps'), deps.map((d) => `${d}\n`).join(''));
  fs.writeFileSync(path.join(dir, 'run-deps'), '');
  fs.writeFileSync(path.join(dir, 'fetch'), opts.sources.length ? fetchRecords(opts.sources) : FETCH_TEMPLATE);
}
