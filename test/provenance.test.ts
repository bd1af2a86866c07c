/**
 * Provenance as a user meets it: packages built in real sandboxes and
 * published with add-to-package-cache, each entry with a signed in-toto
 * statement of its build; `peerpkgs verify-provenance` on it, and on it
 * altered, misapplied or signed by a key nobody trusts; and a cache served
 * by nginx and marked #provenance, which another machine uses only for
 * entries with a provenance it can verify.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import { pae } from '../src/cache/provenance.ts';
import { parseCacheUrls } from '../src/cache/backends.ts';
import { PackageGraph } from '../src/tree/pkghash.ts';
import { scratch, write, read, run, busyboxHttpd, REPO, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage, simplePackage } from './seed.ts';
import { startNginx, type Nginx } from './nginx.ts';

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');
const HEX64 = { type: 'string', pattern: '^[0-9a-f]{64}$' };
const DIGEST = { type: 'object', required: ['sha256'], properties: { sha256: HEX64 } };
const DESCRIPTOR = {
  type: 'object',
  required: ['name', 'digest'],
  properties: { name: { type: 'string' }, uri: { type: 'string', format: 'uri' }, digest: DIGEST, annotations: { type: 'object' } },
  additionalProperties: false,
};
const TIME = { type: 'string', format: 'date-time' };
/** The in-toto Statement v1 and SLSA Provenance v1 fields we write, as their specifications define them. */
const STATEMENT_SCHEMA = {
  type: 'object',
  required: ['_type', 'subject', 'predicateType', 'predicate'],
  additionalProperties: false,
  properties: {
    _type: { const: 'https://in-toto.io/Statement/v1' },
    subject: { type: 'array', minItems: 1, items: { type: 'object', required: ['name', 'digest'], properties: { name: { type: 'string' }, digest: DIGEST } } },
    predicateType: { const: 'https://slsa.dev/provenance/v1' },
    predicate: {
      type: 'object',
      required: ['buildDefinition', 'runDetails'],
      additionalProperties: false,
      properties: {
        buildDefinition: {
          type: 'object',
          required: ['buildType', 'externalParameters'],
          additionalProperties: false,
          properties: {
            buildType: { type: 'string', format: 'uri' },
            externalParameters: { type: 'object' },
            internalParameters: { type: 'object' },
            resolvedDependencies: { type: 'array', items: DESCRIPTOR },
          },
        },
        runDetails: {
          type: 'object',
          required: ['builder'],
          additionalProperties: false,
          properties: {
            builder: {
              type: 'object',
              required: ['id'],
              properties: { id: { type: 'string', format: 'uri' }, version: { type: 'object', additionalProperties: { type: 'string' } } },
            },
            metadata: { type: 'object', properties: { invocationId: { type: 'string' }, startedOn: TIME, finishedOn: TIME } },
          },
        },
      },
    },
  },
};

interface Envelope {
  payloadType: string;
  payload: string;
  signatures: Array<{ keyid: string; sig: string }>;
}

const envelopeOf = (file: string): Envelope => JSON.parse(fs.readFileSync(file, 'utf8')) as Envelope;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const statementOf = (e: Envelope): any => JSON.parse(Buffer.from(e.payload, 'base64').toString());

describe('provenance', function () {
  this.timeout(120_000);
  let top: { dir: string; cleanup: () => void };
  let www: { url: string; stop(): Promise<void> };
  let nginx: Nginx;
  let tree: string;
  let home: string;
  let served: string; // nginx's root: cache/, bare/, swapped/
  let cache: string;
  let hash: { a: string; b: string; seed: string };
  let env: NodeJS.ProcessEnv;
  const greeting = 'hello from a source\n';

  const peerpkgs = (args: string[], extra: NodeJS.ProcessEnv = {}): Run => run(tree, 'peerpkgs', args, { ...env, ...extra });
  const teamKey = (): string => /team (ed25519:[0-9a-f]{16})/.exec(peerpkgs(['key', 'list']).stdout)![1]!;

  before(async () => {
    top = scratch();
    const wwwDir = path.join(top.dir, 'www');
    fs.mkdirSync(wwwDir);
    const seedSha = await makeSeedTarball(wwwDir);
    fs.writeFileSync(path.join(wwwDir, 'greeting.txt'), greeting);
    www = await busyboxHttpd(wwwDir);
    tree = path.join(top.dir, 'tree');
    writeSeedPackage(tree, www.url, seedSha);
    write(tree, {
      '!pkg/a/build': '#!/bin/sh\nset -e\nmkdir -p "$DESTDIR/share"\ncp greeting.txt "$DESTDIR/share/"\n',
      'pkg/a/build-deps': '../seed\n',
      'pkg/a/fetch': `url: ${www.url}/greeting.txt\nurl: http://127.0.0.1:9/mirror/greeting.txt\nsha256: ${sha256(greeting)}\n`,
      ...simplePackage('b', 'b', { 'pkg/b/run-deps': '../a\n' }),
    });
    home = path.join(top.dir, 'home');
    env = { PEERPKGS_HOME: home, PKG_TRUSTED_KEYS: path.join(home, 'keys/team.pub') };
    for (const k of ['team', 'other']) assert.equal(peerpkgs(['key', 'generate', k]).status, 0);
    const built = run(tree, 'build-packages-ifchange', ['-v', './pkg/b'], env);
    assert.equal(built.status, 0, built.stderr);
    served = path.join(top.dir, 'served');
    cache = path.join(served, 'cache');
    const pub = run(tree, 'add-to-package-cache', ['-o', cache, '--sign-key', 'team', './pkg/b'], env);
    assert.equal(pub.status, 0, pub.stderr);
    const g = new PackageGraph();
    hash = { a: g.pkghash(path.join(tree, 'pkg/a')), b: g.pkghash(path.join(tree, 'pkg/b')), seed: g.pkghash(path.join(tree, 'pkg/seed')) };
    // the same entries, without provenance; and with a's provenance as b's
    fs.cpSync(cache, path.join(served, 'bare'), { recursive: true, filter: (f) => !f.endsWith('.provenance') });
    fs.cpSync(cache, path.join(served, 'swapped'), { recursive: true });
    fs.copyFileSync(path.join(cache, `${hash.a}.provenance`), path.join(served, 'swapped', `${hash.b}.provenance`));
    nginx = await startNginx(served);
  });

  after(async () => {
    await nginx?.stop();
    await www?.stop();
    top?.cleanup();
  });

  describe('what add-to-package-cache writes', () => {
    it('writes beside each entry a DSSE envelope, signed with the cache key, of an in-toto statement of how its archive was built', () => {
      assert.deepEqual(
        fs
          .readdirSync(cache)
          .filter((f) => !f.startsWith('.'))
          .sort(),
        [...[hash.a, hash.b].flatMap((h) => [`${h}.info`, `${h}.provenance`, `${h}.tar.gz`]), 'catalog'].sort(),
      );
      const e = envelopeOf(path.join(cache, `${hash.a}.provenance`));
      assert.equal(e.payloadType, 'application/vnd.in-toto+json');
      assert.deepEqual(
        e.signatures.map((s) => s.keyid),
        [teamKey()],
      );
      const s = statementOf(e);
      const ajv = new Ajv({ strict: true, allErrors: true });
      addFormats.default(ajv);
      assert.ok(ajv.validate(STATEMENT_SCHEMA, s), ajv.errorsText());

      assert.deepEqual(s.subject, [{ name: `${hash.a}.tar.gz`, digest: { sha256: sha256(fs.readFileSync(path.join(cache, `${hash.a}.tar.gz`))) } }]);
      const def = s.predicate.buildDefinition;
      assert.equal(def.buildType, 'urn:peerpkgs:build-type:package:1');
      assert.deepEqual(def.externalParameters, { path: 'pkg/a', name: 'a' });
      const text = new PackageGraph().pkghashText(path.join(tree, 'pkg/a'));
      assert.deepEqual(def.internalParameters, { pkghash: hash.a, pkghashText: text });
      assert.equal(sha256(text), hash.a);
      const seedOutput = read(tree, 'pkg/seed/.pkg.tar.gz.sha256').split(' ')[0];
      assert.deepEqual(def.resolvedDependencies, [
        { name: 'greeting.txt', uri: `${www.url}/greeting.txt`, digest: { sha256: sha256(greeting) }, annotations: { mirrors: ['http://127.0.0.1:9/mirror/greeting.txt'] } },
        { name: 'seed', uri: `urn:peerpkgs:pkghash:${hash.seed}`, digest: { sha256: seedOutput } },
      ]);
      const version = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
      const { builder, metadata } = s.predicate.runDetails;
      assert.deepEqual(builder, { id: 'urn:peerpkgs:builder', version: { peerpkgs: version, builder: 'peerpkgs-builder-1' } });
      assert.ok(metadata.startedOn <= metadata.finishedOn, JSON.stringify(metadata));
    });

    it('signs it as DSSE specifies, which openssl verifies with the public key alone', () => {
      const e = envelopeOf(path.join(cache, `${hash.b}.provenance`));
      const payload = Buffer.from(e.payload, 'base64');
      const type = Buffer.from(e.payloadType);
      // PAE, written out from the specification: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
      const encoded = Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
      const dir = path.join(top.dir, 'openssl');
      fs.mkdirSync(dir, { recursive: true });
      const raw = Buffer.from(
        read(home, 'keys/team.pub')
          .split(' ')[0]!
          .replace(/^ed25519:/, ''),
        'base64',
      );
      const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), raw]); // SubjectPublicKeyInfo of an Ed25519 key (RFC 8410)
      fs.writeFileSync(path.join(dir, 'pub.pem'), `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64')}\n-----END PUBLIC KEY-----\n`);
      fs.writeFileSync(path.join(dir, 'pae'), encoded);
      fs.writeFileSync(path.join(dir, 'sig'), Buffer.from(e.signatures[0]!.sig, 'base64'));
      const verify = (data: string) =>
        spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', 'pub.pem', '-rawin', '-in', data, '-sigfile', 'sig'], { cwd: dir, encoding: 'utf8' });
      const ok = verify('pae');
      assert.equal(ok.status, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, /Signature Verified Successfully/);
      fs.writeFileSync(path.join(dir, 'payload'), payload);
      assert.notEqual(verify('payload').status, 0, 'over the encoding, not the bare payload');
    });

    it('writes the same statement for another build of the same tree, but for the build times', () => {
      // built again: redo forces it, where the store would give the archive built before
      const built = run(tree, 'redo', ['-v', 'pkg/a/.pkg.tar.gz'], env);
      assert.equal(built.status, 0, built.stderr);
      assert.match(built.stderr, /sandbox root/, 'built again');
      const again = path.join(top.dir, 'again');
      assert.equal(run(tree, 'add-to-package-cache', ['-o', again, '--sign-key', 'team', './pkg/a'], env).status, 0);
      const [first, second] = [cache, again].map((d) => statementOf(envelopeOf(path.join(d, `${hash.a}.provenance`))));
      for (const s of [first, second]) delete s.predicate.runDetails.metadata;
      assert.deepEqual(second, first);
    });
  });

  describe('peerpkgs verify-provenance', () => {
    it('verifies a provenance file, or URL, against the archive beside it and says what it verified', () => {
      const key = teamKey();
      for (const where of [path.join(cache, `${hash.b}.provenance`), `${nginx.url}/cache/${hash.b}.provenance`]) {
        const r = peerpkgs(['verify-provenance', where]);
        assert.equal(r.status, 0, r.stderr);
        const archive = sha256(fs.readFileSync(path.join(cache, `${hash.b}.tar.gz`)));
        assert.match(r.stdout, new RegExp(`subject: +${hash.b}\\.tar\\.gz sha256 ${archive}`));
        assert.match(r.stdout, new RegExp(`package: +pkg/b \\(b\\), pkghash ${hash.b}`));
        assert.match(r.stdout, /builder: +urn:peerpkgs:builder, peerpkgs \S+, builder peerpkgs-builder-1/);
        assert.match(r.stdout, new RegExp(`signed by: ${key} \\(team\\)`));
      }
      const help = peerpkgs(['verify-provenance', '--help']);
      assert.equal(help.status, 0);
      assert.match(help.stdout, /^usage: peerpkgs verify-provenance FILE\|URL \[--archive FILE\|URL\]/);
    });

    it('refuses a statement altered after it was signed: exit 10', () => {
      const e = envelopeOf(path.join(cache, `${hash.b}.provenance`));
      const s = statementOf(e);
      s.predicate.buildDefinition.externalParameters.name = 'mallory';
      const file = path.join(top.dir, 'tampered', `${hash.b}.provenance`);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, JSON.stringify({ ...e, payload: Buffer.from(JSON.stringify(s)).toString('base64') }));
      const r = peerpkgs(['verify-provenance', file, '--archive', path.join(cache, `${hash.b}.tar.gz`)]);
      assert.equal(r.status, 10, r.stderr);
      assert.match(r.stderr, /^peerpkgs verify-provenance: the signature by ed25519:[0-9a-f]{16} \(team\) does not verify: the statement was altered or damaged\n$/);
    });

    it('refuses a provenance whose subject is another archive: exit 9', () => {
      const r = peerpkgs(['verify-provenance', path.join(cache, `${hash.b}.provenance`), '--archive', `${nginx.url}/cache/${hash.a}.tar.gz`]);
      assert.equal(r.status, 9, r.stderr);
      assert.match(r.stderr, new RegExp(`its subject ${hash.b}\\.tar\\.gz has sha256 [0-9a-f]{64}, but the archive's is [0-9a-f]{64}: it is not this archive's provenance\n$`));
    });

    it('refuses a provenance signed by a key that is not trusted, naming it and the trusted ones: exit 10', () => {
      const r = peerpkgs(['verify-provenance', path.join(cache, `${hash.b}.provenance`)], { PKG_TRUSTED_KEYS: path.join(home, 'keys/other.pub') });
      assert.equal(r.status, 10, r.stderr);
      assert.match(r.stderr, /signed by ed25519:[0-9a-f]{16}, which is not a trusted key \(trusted: ed25519:[0-9a-f]{16} \(other\)\)/);
    });

    it('says what is wrong with its command line (exit 2), and what was not found (exit 1)', () => {
      const none = peerpkgs(['verify-provenance']);
      assert.equal(none.status, 2);
      assert.match(none.stderr, /name one provenance file or URL \(see peerpkgs verify-provenance --help\)/);
      const misnamed = peerpkgs(['verify-provenance', path.join(cache, `${hash.b}.info`)]);
      assert.equal(misnamed.status, 2);
      assert.match(misnamed.stderr, /is not named <pkghash>\.provenance: name its archive with --archive/);
      const missing = peerpkgs(['verify-provenance', `${nginx.url}/bare/${hash.b}.provenance`]);
      assert.equal(missing.status, 1);
      assert.match(missing.stderr, /bare\/[0-9a-f]{64}\.provenance: not found\n$/);
    });
  });

  describe('a cache marked #provenance', () => {
    /**
     * Another machine: a fresh home and a copy of the tree without its
     * outputs, but with the records of their builds, which describe the
     * same bytes a cache gives it but no build of its own.
     */
    function otherMachine(): { dir: string; cleanup: () => void; home: string } {
      const other = scratch();
      for (const p of ['a', 'b', 'seed']) {
        fs.cpSync(path.join(tree, 'pkg', p), path.join(other.dir, 'pkg', p), {
          recursive: true,
          filter: (f) => !/^\.(pkg\.tar\.gz(\.sha256|\.provenance)?|pkghash)$/.test(path.basename(f)),
        });
      }
      return { ...other, home: path.join(other.dir, 'home') };
    }

    it('reads #provenance, alone or with #signed or #unsigned', () => {
      const c = parseCacheUrls('http://h/a#provenance http://h/b#signed,provenance file:///c#unsigned,provenance http://h/d');
      assert.deepEqual(
        c.map((x) => [x.requireSignature, x.requireProvenance]),
        [
          [true, true],
          [true, true],
          [false, true],
          [true, false],
        ],
      );
      assert.throws(() => parseCacheUrls('http://h/a#signed,unsigned'), /#signed and #unsigned contradict each other/);
      assert.throws(() => parseCacheUrls('http://h/a#provenance,slsa'), /unknown fragment #slsa/);
    });

    it('refuses an entry without a provenance, with the reason, and the package is built instead', () => {
      const other = otherMachine();
      try {
        const otherEnv = { PEERPKGS_HOME: other.home, PKG_TRUSTED_KEYS: env.PKG_TRUSTED_KEYS, PKG_CACHE_URL: `${nginx.url}/bare#provenance` };
        const forced = run(other.dir, 'build-packages-ifchange', ['-v', './pkg/b'], { ...otherEnv, PKG_FORCE_BINARY: 'yes' });
        assert.notEqual(forced.status, 0);
        assert.match(forced.stderr, new RegExp(`refusing ${hash.a}\\.info: the cache is marked #provenance and has no ${hash.a}\\.provenance`));
        const r = run(other.dir, 'build-packages-ifchange', ['-v', './pkg/b'], otherEnv);
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stderr, /warning: a: \S+\/bare#provenance: refusing [0-9a-f]{64}\.info: the cache is marked #provenance and has no/);
        assert.match(r.stderr, /sandbox root/, 'built instead');
      } finally {
        other.cleanup();
      }
    });

    it('refuses an entry whose provenance is of another archive', () => {
      const other = otherMachine();
      try {
        const r = run(other.dir, 'build-packages-ifchange', ['-v', './pkg/b'], {
          PEERPKGS_HOME: other.home,
          PKG_TRUSTED_KEYS: env.PKG_TRUSTED_KEYS,
          PKG_CACHE_URL: `${nginx.url}/swapped#provenance`,
          PKG_FORCE_BINARY: 'yes',
        });
        assert.notEqual(r.status, 0);
        assert.match(r.stderr, /a: from \S+, signed by ed25519:[0-9a-f]{16} \(team\), its provenance verified/);
        assert.match(r.stderr, new RegExp(`refusing ${hash.b}\\.provenance: its subject ${hash.a}\\.tar\\.gz has sha256 [0-9a-f]{64}, but the archive's is`));
      } finally {
        other.cleanup();
      }
    });

    it('takes an entry with a provenance it verifies, and carries that provenance along when publishing it again', () => {
      const other = otherMachine();
      try {
        const otherEnv = { PEERPKGS_HOME: other.home, PKG_TRUSTED_KEYS: env.PKG_TRUSTED_KEYS, PKG_CACHE_URL: `${nginx.url}/cache#provenance` };
        const r = run(other.dir, 'build-packages-ifchange', ['-v', './pkg/b'], { ...otherEnv, PKG_FORCE_BINARY: 'yes' });
        assert.equal(r.status, 0, r.stderr);
        assert.match(r.stderr, /b: from \S+, signed by ed25519:[0-9a-f]{16} \(team\), its provenance verified/);
        assert.doesNotMatch(r.stderr, /sandbox root/, 'nothing was built');
        const again = path.join(other.dir, 'cache');
        const pub = run(other.dir, 'add-to-package-cache', ['-o', again, './pkg/b'], otherEnv);
        assert.equal(pub.status, 0, pub.stderr);
        assert.match(pub.stdout, /provenance of pkg\/b: carried along from the cache it was substituted from/);
        for (const h of [hash.a, hash.b])
          assert.ok(fs.readFileSync(path.join(again, `${h}.provenance`)).equals(fs.readFileSync(path.join(cache, `${h}.provenance`))), 'the same bytes');
        assert.equal(peerpkgs(['verify-provenance', path.join(again, `${hash.b}.provenance`)]).status, 0);
      } finally {
        other.cleanup();
      }
    });
  });

  it('signs the DSSE pre-authentication encoding, as the specification gives it', () => {
    assert.equal(pae('http://example.com/HelloWorld', Buffer.from('hello world')).toString(), 'DSSEv1 29 http://example.com/HelloWorld 11 hello world');
    assert.equal(pae('', Buffer.alloc(0)).toString(), 'DSSEv1 0  0 ');
    // lengths are of bytes, not characters
    assert.equal(pae('http://example.com/HelloWorld', Buffer.from('ಠ')).toString(), 'DSSEv1 29 http://example.com/HelloWorld 3 ಠ');
  });
});
