/**
 * SBOMs, as a user makes them: `peerpkgs sbom` on a tree built on the
 * busybox seed, validated against the formats' official JSON schemas
 * (SPDX 2.3's shipped in test/schemas/, CycloneDX's from the
 * @cyclonedx/cyclonedx-library package) with ajv, and read for what they
 * say of each package.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import addFormats from 'ajv-formats';
import { fullFormats } from 'ajv-formats/dist/formats.js';
import { scratch, write, read, run, busyboxHttpd, REPO, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage } from './seed.ts';
import { isLicenseExpression } from '../src/tree/meta.ts';

const require = createRequire(import.meta.url);
const CDX_SCHEMAS = path.join(path.dirname(require.resolve('@cyclonedx/cyclonedx-library/package.json')), 'res/schema');
const json = (file: string): Record<string, unknown> => JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;

function spdxValidator(): ValidateFunction {
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  addFormats.default(ajv);
  return ajv.compile(json(path.join(REPO, 'test/schemas/spdx-2.3.schema.json')));
}

function cyclonedxValidator(): ValidateFunction {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats.default(ajv);
  // ajv-formats has no IRI formats; the documents' IRIs are plain URIs and emails, so those checks do
  ajv.addFormat('iri-reference', fullFormats['uri-reference']);
  ajv.addFormat('idn-email', fullFormats.email);
  // the bom schema names its companions by their file names in the package
  for (const f of ['spdx.SNAPSHOT.schema.json', 'jsf-0.82.SNAPSHOT.schema.json']) {
    const s = json(path.join(CDX_SCHEMAS, f));
    delete s.$id;
    ajv.addSchema(s, `http://cyclonedx.org/schema/${f}`);
  }
  return ajv.compile(json(path.join(CDX_SCHEMAS, 'bom-1.6.SNAPSHOT.schema.json')));
}

interface SpdxPackage {
  name: string;
  SPDXID: string;
  versionInfo?: string;
  downloadLocation: string;
  homepage?: string;
  licenseDeclared?: string;
  description?: string;
  checksums?: { algorithm: string; checksumValue: string }[];
  externalRefs?: { referenceType: string; referenceLocator: string }[];
  primaryPackagePurpose?: string;
}
interface Spdx {
  creationInfo: { created: string };
  documentNamespace: string;
  packages: SpdxPackage[];
  relationships: { spdxElementId: string; relationshipType: string; relatedSpdxElement: string }[];
}
interface Component {
  'bom-ref': string;
  name: string;
  version?: string;
  hashes?: { alg: string; content: string }[];
  licenses?: ({ license: { name: string } } | { expression: string })[];
  externalReferences: { type: string; url: string; hashes?: { content: string }[] }[];
  properties: { name: string; value: string }[];
}
interface CycloneDx {
  serialNumber: string;
  metadata: { timestamp?: string };
  components: Component[];
  dependencies: { ref: string; dependsOn: string[] }[];
}

describe('sbom', function () {
  this.timeout(120_000);
  let work: string;
  let cleanup: () => void;
  let www: { url: string; stop(): Promise<void> };
  let tree: string;
  let home: string;
  let srcSha: string;
  let spdxText: string;

  before(async () => {
    ({ dir: work, cleanup } = scratch());
    const wwwDir = path.join(work, 'www');
    fs.mkdirSync(wwwDir);
    const seedSha = await makeSeedTarball(wwwDir);
    fs.writeFileSync(path.join(wwwDir, 'lib-1.2.txt'), 'the source of lib\n');
    srcSha = createHash('sha256').update('the source of lib\n').digest('hex');
    www = await busyboxHttpd(wwwDir);
    home = path.join(work, 'home');
    tree = path.join(work, 'tree');
    writeSeedPackage(tree, www.url, seedSha);
    write(tree, {
      // lib: a source, a meta, a run-dep on the seed
      '!pkg/lib/build': '#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/share"\ncp lib-1.2.txt "$DESTDIR/share/"\n',
      'pkg/lib/build-deps': '../seed\n',
      'pkg/lib/run-deps': '../seed\n',
      'pkg/lib/fetch': `url: ${www.url}/lib-1.2.txt\nurl: ${www.url}/mirror/lib-1.2.txt\nsha256: ${srcSha}\n`,
      'pkg/lib/meta': 'version: 1.2\nlicense: MIT\nhomepage: https://example.org/lib\ndescription: a library\n',
      // tool: needed to build app only
      '!pkg/tool/build': '#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/bin"\nprintf "#!/bin/sh\\necho tool\\n" >"$DESTDIR/bin/tool"\nchmod 755 "$DESTDIR/bin/tool"\n',
      'pkg/tool/build-deps': '../seed\n',
      'pkg/tool/meta': 'license: GPL-2.0-only OR MIT\n',
      // app: runs with lib, is built with tool; no meta
      '!pkg/app/build': '#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/bin"\ntool >"$DESTDIR/bin/app"\n',
      'pkg/app/build-deps': '../seed\n../tool\n',
      'pkg/app/run-deps': '../lib\n',
    });
    const r = run(tree, 'peerpkgs', ['sbom', '-j2', './pkg/app'], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
    spdxText = r.stdout;
  });
  after(async () => {
    await www?.stop();
    cleanup?.();
  });

  const peerpkgs = (args: string[], env: NodeJS.ProcessEnv = {}): Run => run(tree, 'peerpkgs', args, { PEERPKGS_HOME: home, ...env });
  /** What `peerpkgs info` says of a package: its pkghash and output sha256. */
  const info = (name: string) => {
    const out = peerpkgs(['info', `./pkg/${name}`]).stdout;
    return { pkghash: /pkghash: +([0-9a-f]{64})/.exec(out)![1]!, output: /sha256 ([0-9a-f]{64})/.exec(out)![1]! };
  };

  describe('SPDX 2.3', () => {
    let doc: Spdx;
    before(() => (doc = JSON.parse(spdxText) as Spdx));
    const pkgNamed = (name: string) => doc.packages.find((p) => p.name === name && p.primaryPackagePurpose !== 'SOURCE')!;

    it('is valid against the SPDX 2.3 schema', () => {
      const validate = spdxValidator();
      assert.ok(validate(doc), JSON.stringify(validate.errors, null, 2));
      // and the schema is not one that takes anything
      assert.equal(validate({ ...doc, creationInfo: {} }), false);
    });

    it('lists the whole closure, build closure included, each with its pkghash and output sha256', () => {
      assert.deepEqual(
        doc.packages
          .filter((p) => p.primaryPackagePurpose !== 'SOURCE')
          .map((p) => p.name)
          .sort(),
        ['app', 'lib', 'seed', 'tool'],
      );
      for (const name of ['app', 'lib', 'seed', 'tool']) {
        const p = pkgNamed(name);
        const i = info(name);
        assert.deepEqual(p.checksums, [{ algorithm: 'SHA256', checksumValue: i.output }], name);
        assert.deepEqual(p.externalRefs, [{ referenceCategory: 'OTHER', referenceType: 'peerpkgs-pkghash', referenceLocator: i.pkghash }], name);
      }
    });

    it('takes version, license, homepage and description from meta, and says NOASSERTION without it', () => {
      const lib = pkgNamed('lib');
      assert.equal(lib.versionInfo, '1.2');
      assert.equal(lib.licenseDeclared, 'MIT');
      assert.equal(lib.homepage, 'https://example.org/lib');
      assert.equal(lib.description, 'a library');
      assert.equal(pkgNamed('tool').licenseDeclared, 'GPL-2.0-only OR MIT');
      assert.equal(pkgNamed('tool').versionInfo, undefined);
      const app = pkgNamed('app');
      assert.equal(app.versionInfo, undefined);
      assert.equal(app.licenseDeclared, 'NOASSERTION');
      assert.equal(app.homepage, 'NOASSERTION');
    });

    it('lists sources by url and sha256, and the relationships: run and build dependencies', () => {
      const src = doc.packages.find((p) => p.primaryPackagePurpose === 'SOURCE' && p.name === 'lib-1.2.txt')!;
      assert.equal(src.downloadLocation, `${www.url}/lib-1.2.txt`);
      assert.deepEqual(src.checksums, [{ algorithm: 'SHA256', checksumValue: srcSha }]);
      const id = (name: string) => pkgNamed(name).SPDXID;
      const has = (a: string, type: string, b: string) => doc.relationships.some((r) => r.spdxElementId === a && r.relationshipType === type && r.relatedSpdxElement === b);
      assert.ok(has('SPDXRef-DOCUMENT', 'DESCRIBES', id('app')));
      assert.ok(has(id('app'), 'DEPENDS_ON', id('lib')));
      assert.ok(has(id('lib'), 'DEPENDS_ON', id('seed')));
      assert.ok(has(id('tool'), 'BUILD_DEPENDENCY_OF', id('app')));
      assert.ok(has(id('seed'), 'BUILD_DEPENDENCY_OF', id('lib')));
      assert.ok(has(id('lib'), 'GENERATED_FROM', src.SPDXID));
      assert.ok(!has(id('app'), 'DEPENDS_ON', id('tool')), 'a build dependency is not a run dependency');
    });

    it('is the same bytes every time, dated 1970 or SOURCE_DATE_EPOCH, named by the pkghashes', () => {
      assert.equal(doc.creationInfo.created, '1970-01-01T00:00:00Z');
      const again = peerpkgs(['sbom', '--format', 'spdx', './pkg/app']);
      assert.equal(again.stdout, spdxText);
      assert.match(doc.documentNamespace, new RegExp(`^urn:peerpkgs:spdx:[0-9a-f]{64}$`));
      const dated = JSON.parse(peerpkgs(['sbom', './pkg/app'], { SOURCE_DATE_EPOCH: '86400' }).stdout) as Spdx;
      assert.equal(dated.creationInfo.created, '1970-01-02T00:00:00Z');
      const bad = peerpkgs(['sbom', './pkg/app'], { SOURCE_DATE_EPOCH: 'yesterday' });
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /SOURCE_DATE_EPOCH=yesterday: not whole seconds since 1970\n$/);
    });
  });

  describe('CycloneDX', () => {
    let doc: CycloneDx;
    let file: string;
    before(() => {
      file = path.join(work, 'app.cdx.json');
      const r = peerpkgs(['sbom', '--format', 'cyclonedx', '-o', file, './pkg/app']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, '');
      doc = JSON.parse(read(work, 'app.cdx.json')) as CycloneDx;
    });
    const comp = (name: string) => doc.components.find((c) => c.name === name)!;

    it('is valid against the CycloneDX 1.6 schema', () => {
      const validate = cyclonedxValidator();
      assert.ok(validate(doc), JSON.stringify(validate.errors, null, 2));
      assert.equal(validate({ ...doc, serialNumber: 'not a urn' }), false);
      assert.deepEqual(
        fs.readdirSync(work).filter((n) => n.startsWith('app.cdx.json.')),
        [],
        'no temporary file left',
      );
    });

    it('lists each package with its output sha256, pkghash, meta and sources', () => {
      assert.deepEqual(doc.components.map((c) => c.name).sort(), ['app', 'lib', 'seed', 'tool']);
      for (const name of ['app', 'lib', 'seed', 'tool']) {
        const i = info(name);
        assert.deepEqual(comp(name).hashes, [{ alg: 'SHA-256', content: i.output }]);
        assert.ok(
          comp(name).properties.some((p) => p.name === 'peerpkgs:pkghash' && p.value === i.pkghash),
          name,
        );
      }
      const lib = comp('lib');
      assert.equal(lib.version, '1.2');
      assert.deepEqual(lib.licenses, [{ expression: 'MIT' }]);
      assert.deepEqual(comp('tool').licenses, [{ expression: 'GPL-2.0-only OR MIT' }]);
      assert.deepEqual(
        lib.externalReferences.map((r) => [r.type, r.url, r.hashes?.[0]?.content]),
        [
          ['website', 'https://example.org/lib', undefined],
          ['source-distribution', `${www.url}/lib-1.2.txt`, srcSha],
          ['source-distribution', `${www.url}/mirror/lib-1.2.txt`, srcSha],
        ],
      );
      assert.equal(comp('app').version, undefined);
      assert.equal(comp('app').licenses, undefined);
    });

    it('has run dependencies as dependencies and build dependencies as properties', () => {
      const ref = (name: string) => comp(name)['bom-ref'];
      assert.deepEqual(doc.dependencies.find((d) => d.ref === ref('app'))!.dependsOn, [ref('lib')]);
      assert.deepEqual(
        comp('app')
          .properties.filter((p) => p.name === 'peerpkgs:build-dependency')
          .map((p) => p.value),
        [ref('seed'), ref('tool')],
      );
    });

    it('is the same bytes every time, with no timestamp unless SOURCE_DATE_EPOCH gives one', () => {
      assert.equal(doc.metadata.timestamp, undefined);
      assert.equal(peerpkgs(['sbom', '--format', 'cyclonedx', './pkg/app']).stdout, read(work, 'app.cdx.json'));
      const dated = JSON.parse(peerpkgs(['sbom', '--format', 'cyclonedx', './pkg/app'], { SOURCE_DATE_EPOCH: '0' }).stdout) as CycloneDx;
      assert.equal(dated.metadata.timestamp, '1970-01-01T00:00:00Z');
    });
  });

  it('tells an SPDX license expression from other text', () => {
    for (const e of ['MIT', 'GPL-2.0+', 'MIT OR Apache-2.0', '(MIT AND BSD-3-Clause) OR GPL-2.0-or-later WITH Classpath-exception-2.0', 'LicenseRef-mine']) {
      assert.equal(isLicenseExpression(e), true, e);
    }
    for (const t of ['', 'GPL v2', 'MIT AND', '(MIT', 'MIT)', 'MIT or Apache-2.0', 'public domain']) assert.equal(isLicenseExpression(t), false, t);
  });

  it('refuses an unknown format with exit 2', () => {
    const r = peerpkgs(['sbom', '--format', 'xml', './pkg/app']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--format xml: spdx or cyclonedx/);
  });
});
