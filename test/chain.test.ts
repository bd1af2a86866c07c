/**
 * The structure of the real tree (pkg/), checked without building: every
 * package's dependency graph, as `peerpkgs graph` prints it, ends at
 * pkg/seed and nowhere else, so no binary but the seed's enters a closure;
 * and every record of every fetch file has one sha256 and a url. The
 * compiler chain's packages (m4, tar-tcc, gmp, mpfr, mpc, binutils-tcc,
 * gcc-3, musl-gcc3, gcc-10, gcc-12) are named, so that losing one fails
 * here too; and the final toolchain (binutils, musl, make, tar, gcc) is
 * compiled by the chain's last GCC, which every other package that builds
 * with GCC leaves alone.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO, run } from './helpers.ts';

const CHAIN = ['m4', 'tar-tcc', 'gmp', 'mpfr', 'mpc', 'binutils-tcc', 'gcc-3', 'musl-gcc3', 'gcc-10', 'gcc-12'];
const FINAL = ['binutils', 'musl', 'make', 'tar', 'gcc'];
const deps = (name: string, kind: string): string[] => {
  const file = path.join(REPO, 'pkg', name, kind);
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
};

const packages = fs
  .readdirSync(path.join(REPO, 'pkg'), { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .sort();

/**
 * The leaves of a graph as `peerpkgs graph` prints it: two spaces a level,
 * `build: pkg/X` or `run: pkg/X`, and ` (see above)` where a node's
 * dependencies were printed already. A leaf is a node printed in full whose
 * next line is not deeper.
 */
function leaves(graph: string): string[] {
  const lines = graph.split('\n').filter((l) => l.trim() !== '');
  const depth = (l: string) => l.length - l.trimStart().length;
  const out = new Set<string>();
  lines.forEach((line, i) => {
    const m = /^\s*(?:(?:build|run): )?(pkg\/\S+)( \(see above\))?$/.exec(line);
    assert.ok(m, `graph line not understood: ${JSON.stringify(line)}`);
    const next = lines[i + 1];
    if (!m[2] && (next === undefined || depth(next) <= depth(line))) out.add(m[1]!);
  });
  return [...out].sort();
}

/** A fetch file's records (rec format: blank-line separated, # comments), each as its fields. */
function records(text: string): { name: string; value: string }[][] {
  const recs: { name: string; value: string }[][] = [[]];
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (recs.at(-1)!.length) recs.push([]);
    } else if (!line.startsWith('#')) {
      const m = /^([A-Za-z0-9_]+):\s*(.*)$/.exec(line);
      assert.ok(m, `fetch line not understood: ${JSON.stringify(line)}`);
      recs.at(-1)!.push({ name: m[1]!, value: m[2]!.trim() });
    }
  }
  return recs.filter((r) => r.length);
}

describe('the real tree: structure', function () {
  this.timeout(60_000);

  it('has the compiler chain packages', () => {
    for (const name of CHAIN) assert.ok(packages.includes(name), `pkg/${name} is missing`);
  });

  it("compiles the final toolchain with the chain's GCC 12, and the final GCC runs with the binutils and musl it compiled", () => {
    for (const name of FINAL) {
      assert.ok(deps(name, 'build-deps').includes('../gcc-12'), `pkg/${name} is not compiled by ../gcc-12`);
      assert.ok(!deps(name, 'build-deps').some((d) => d.startsWith('../seed')), `pkg/${name} builds on the seed, whose cc is tcc`);
    }
    const info = run(REPO, 'peerpkgs', ['info', '--json', './pkg/gcc']);
    assert.equal(info.status, 0, info.stderr);
    const closure = (JSON.parse(info.stdout) as { closure: string[] }[])[0]!.closure.map((d) => path.basename(d));
    assert.deepEqual(closure.sort(), ['binutils', 'musl']);
  });

  it("builds every other package that needs a C compiler with the final GCC and make, never the chain's", () => {
    const users = packages.filter((n) => !FINAL.includes(n) && deps(n, 'build-deps').includes('../gcc'));
    assert.ok(users.length >= 30, `only ${users.length} packages build with ../gcc`);
    for (const name of packages.filter((n) => !FINAL.includes(n) && !CHAIN.includes(n))) {
      const bad = deps(name, 'build-deps').filter((d) => ['../gcc-12', '../gcc-10', '../make-tcc'].includes(d));
      assert.deepEqual(bad, [], `pkg/${name}/build-deps`);
    }
  });

  for (const name of packages) {
    it(`pkg/${name}: its graph ends at pkg/seed and nowhere else`, () => {
      const r = run(REPO, 'peerpkgs', ['graph', `./pkg/${name}`]);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(leaves(r.stdout), ['pkg/seed'], r.stdout);
    });
  }

  for (const name of packages) {
    const file = path.join(REPO, 'pkg', name, 'fetch');
    if (!fs.existsSync(file)) continue;
    it(`pkg/${name}/fetch: every record has one sha256 and a url`, () => {
      const recs = records(fs.readFileSync(file, 'utf8'));
      assert.ok(recs.length > 0, 'no records');
      for (const rec of recs) {
        const sha = rec.filter((f) => f.name === 'sha256').map((f) => f.value);
        assert.equal(sha.length, 1, `record ${JSON.stringify(rec)}`);
        assert.match(sha[0]!, /^[0-9a-f]{64}$/);
        assert.ok(
          rec.some((f) => f.name === 'url'),
          `record without url: ${JSON.stringify(rec)}`,
        );
      }
    });
  }

  it("the chain takes its sources from Debian's archive, the one server a build machine may reach", () => {
    // each is in Debian's pool (bootstrap/import-sources reads the source
    // package from that url) and names upstream's sha256, in a url record
    // or in the comment saying why Debian's tarball is used instead (GCC
    // 3.4.6's by its md5, as distributions record it: no sha256 of it could
    // be read on a machine that reaches only Debian's archive)
    for (const name of CHAIN) {
      const text = fs.readFileSync(path.join(REPO, 'pkg', name, 'fetch'), 'utf8');
      assert.match(text, /^url: http:\/\/deb\.debian\.org\/debian\/pool\//m, `pkg/${name}/fetch`);
      const shas = [...text.matchAll(/\b[0-9a-f]{64}\b/g)];
      const upstream = /^url: https?:\/\/(?!deb\.debian\.org)/m.test(text) || shas.length >= 2 || /^#\s+md5 [0-9a-f]{32}\b/m.test(text);
      assert.ok(upstream, `pkg/${name}/fetch names no upstream url with its sha256`);
    }
  });
});
