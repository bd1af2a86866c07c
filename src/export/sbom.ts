/**
 * SBOMs: an SPDX 2.3 or CycloneDX 1.6 JSON document for packages and their
 * whole closure, build closure included, since a build dependency is in
 * the relationships too.
 *
 * Each package is there with its name; its version, license, homepage and
 * description from pkg/NAME/meta (rec, optional; SPDX's NOASSERTION, or
 * left out in CycloneDX, where it is missing); its sources by url and
 * sha256 (the fetch file); its output's sha256 (the uncompressed archive,
 * the package's identity, as venvs record it) and its pkghash; its run
 * dependencies (SPDX DEPENDS_ON, CycloneDX dependencies) and its build
 * dependencies (SPDX BUILD_DEPENDENCY_OF; CycloneDX has no plain relation
 * for it, so a `peerpkgs:build-dependency` property naming the bom-ref: its
 * `formulation` would need a made-up workflow of tasks to say as much, and
 * `dependencies` is read by every tool as what ships with the package).
 *
 * Deterministic: the same tree gives the same bytes. The SPDX "created" is
 * SOURCE_DATE_EPOCH, or 1970-01-01T00:00:00Z without it (CycloneDX's
 * timestamp is optional and only written with SOURCE_DATE_EPOCH); the
 * document's namespace and serial number derive from the pkghashes of
 * the packages it describes.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
import * as path from 'node:path';
import { PackageGraph } from '../tree/pkghash.ts';
import type { Meta } from '../tree/meta.ts';
import { recordedSha256 } from '../store/outputs.ts';
import { SettingsError } from '../settings.ts';
import type { FetchEntry } from '../tree/package.ts';
import { PEERPKGS_VERSION } from '../version.ts';

export const FORMATS = ['spdx', 'cyclonedx'] as const;
export type SbomFormat = (typeof FORMATS)[number];
const TOOL = 'peerpkgs';
const TOOL_VERSION = PEERPKGS_VERSION;

interface Entry {
  dir: string;
  name: string;
  pkghash: string;
  /** Of the uncompressed output archive; null if not built. */
  output: string | null;
  meta: Meta;
  sources: FetchEntry[];
  runDeps: string[];
  buildDeps: string[];
}

/** Every package `dirs` need to be built and run, each after its dependencies, each once. */
export function fullClosure(dirs: string[], graph: PackageGraph): string[] {
  const seen = new Set<string>();
  const visit = (d: string): void => {
    const dir = graph.load(d).dir;
    if (seen.has(dir)) return;
    graph.pkghash(dir); // refuses cycles, naming them
    for (const dep of graph.deps(dir)) visit(dep);
    seen.add(dir);
  };
  for (const d of dirs) visit(d);
  return [...seen];
}

/** SOURCE_DATE_EPOCH as the time of the document, or 1970; given: whether it was set. */
export function documentDate(env: NodeJS.ProcessEnv): { iso: string; given: boolean } {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return { iso: '1970-01-01T00:00:00Z', given: false };
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)) || Number(v) > 253402300799) {
    throw new SettingsError(`SOURCE_DATE_EPOCH=${v}: not whole seconds since 1970`);
  }
  return { iso: new Date(Number(v) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z'), given: true };
}

/** The SBOM of `dirs` and their closures, as JSON text. */
export function sbom(dirs: string[], format: SbomFormat, env: NodeJS.ProcessEnv = process.env, graph = new PackageGraph()): string {
  const when = documentDate(env);
  const entries = fullClosure(dirs, graph).map((dir): Entry => {
    const pkg = graph.load(dir);
    return {
      dir,
      name: pkg.name,
      pkghash: graph.pkghash(dir),
      output: recordedSha256(path.join(dir, '.pkg.tar.gz')),
      meta: pkg.meta,
      sources: pkg.fetch,
      runDeps: pkg.runDeps,
      buildDeps: pkg.buildDeps,
    };
  });
  const roots = [...new Set(dirs.map((d) => graph.load(d).dir))];
  const id = createHash('sha256')
    .update(`${format}\n${roots.map((d) => graph.pkghash(d)).join('\n')}\n`)
    .digest('hex');
  const doc = format === 'spdx' ? spdx(entries, roots, id, when.iso) : cyclonedx(entries, id, when.given ? when.iso : null);
  return JSON.stringify(doc, null, 2) + '\n';
}

function spdx(entries: Entry[], roots: string[], id: string, created: string): object {
  const ref = new Map(entries.map((e) => [e.dir, `SPDXRef-Package-${e.name.replace(/[^A-Za-z0-9.-]/g, '-')}-${e.pkghash.slice(0, 12)}`]));
  const sourceRef = (sha: string) => `SPDXRef-Source-${sha.slice(0, 16)}`;
  const packages: object[] = [];
  const sources = new Map<string, object>();
  const relationships: object[] = roots.map((r) => ({ spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: ref.get(r)! }));
  for (const e of entries) {
    const me = ref.get(e.dir)!;
    packages.push({
      name: e.name,
      SPDXID: me,
      ...(e.meta.version !== undefined ? { versionInfo: e.meta.version } : {}),
      // the output is made here, from the sources, not downloaded
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      ...(e.output !== null ? { checksums: [{ algorithm: 'SHA256', checksumValue: e.output }] } : {}),
      homepage: e.meta.homepage ?? 'NOASSERTION',
      licenseConcluded: 'NOASSERTION',
      // meta's license is an SPDX expression: the tree refuses any other
      licenseDeclared: e.meta.license ?? 'NOASSERTION',
      copyrightText: 'NOASSERTION',
      ...(e.meta.description !== undefined ? { description: e.meta.description } : {}),
      externalRefs: [{ referenceCategory: 'OTHER', referenceType: 'peerpkgs-pkghash', referenceLocator: e.pkghash }],
    });
    for (const s of e.sources) {
      if (!sources.has(s.sha256)) {
        sources.set(s.sha256, {
          name: s.file,
          SPDXID: sourceRef(s.sha256),
          downloadLocation: s.urls[0] ?? 'NOASSERTION',
          filesAnalyzed: false,
          checksums: [{ algorithm: 'SHA256', checksumValue: s.sha256 }],
          licenseConcluded: 'NOASSERTION',
          licenseDeclared: 'NOASSERTION',
          copyrightText: 'NOASSERTION',
          primaryPackagePurpose: 'SOURCE',
          ...(s.urls.length > 1 ? { sourceInfo: `also at ${s.urls.slice(1).join(' ')}` } : {}),
        });
      }
      relationships.push({ spdxElementId: me, relationshipType: 'GENERATED_FROM', relatedSpdxElement: sourceRef(s.sha256) });
    }
    for (const d of e.runDeps) relationships.push({ spdxElementId: me, relationshipType: 'DEPENDS_ON', relatedSpdxElement: ref.get(d)! });
    for (const d of e.buildDeps) relationships.push({ spdxElementId: ref.get(d)!, relationshipType: 'BUILD_DEPENDENCY_OF', relatedSpdxElement: me });
  }
  const names = roots.map((r) => entries.find((e) => e.dir === r)!.name).join(' ');
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `peerpkgs closure of ${names}`,
    documentNamespace: `urn:peerpkgs:spdx:${id}`,
    creationInfo: { created, creators: [`Tool: ${TOOL}-${TOOL_VERSION}`] },
    packages: [...packages, ...sources.values()],
    relationships,
  };
}

/** A UUID (version 5's layout) from a sha256, for CycloneDX's serialNumber. */
function uuidOf(hex: string): string {
  const h = hex.slice(0, 32).split('');
  h[12] = '5';
  h[16] = '89ab'[parseInt(h[16]!, 16) & 3]!;
  const s = h.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20, 32)}`;
}

/** CycloneDX 1.6: the first with `source-distribution` references, which say what a source is. */
function cyclonedx(entries: Entry[], id: string, timestamp: string | null): object {
  const ref = new Map(entries.map((e) => [e.dir, `${e.name}@${e.pkghash}`]));
  const components = entries.map((e) => ({
    type: 'application',
    'bom-ref': ref.get(e.dir)!,
    name: e.name,
    ...(e.meta.version !== undefined ? { version: e.meta.version } : {}),
    ...(e.meta.description !== undefined ? { description: e.meta.description } : {}),
    ...(e.output !== null ? { hashes: [{ alg: 'SHA-256', content: e.output }] } : {}),
    ...(e.meta.license !== undefined ? { licenses: [{ expression: e.meta.license }] } : {}),
    externalReferences: [
      ...(e.meta.homepage !== undefined ? [{ type: 'website', url: e.meta.homepage }] : []),
      ...e.sources.flatMap((s) => s.urls.map((url) => ({ type: 'source-distribution', url, hashes: [{ alg: 'SHA-256', content: s.sha256 }] }))),
    ],
    properties: [
      { name: 'peerpkgs:pkghash', value: e.pkghash },
      ...e.sources.map((s) => ({ name: 'peerpkgs:source', value: `${s.file} sha256:${s.sha256}` })),
      ...e.buildDeps.map((d) => ({ name: 'peerpkgs:build-dependency', value: ref.get(d)! })),
    ],
  }));
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.6',
    serialNumber: `urn:uuid:${uuidOf(id)}`,
    version: 1,
    metadata: {
      ...(timestamp !== null ? { timestamp } : {}),
      tools: { components: [{ type: 'application', name: TOOL, version: TOOL_VERSION }] },
    },
    components,
    dependencies: entries.map((e) => ({ ref: ref.get(e.dir)!, dependsOn: e.runDeps.map((d) => ref.get(d)!) })),
  };
}
