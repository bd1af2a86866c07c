/**
 * Profiles and garbage collection, as a user meets them: `peerpkgs
 * install`, `remove`, `upgrade`, `list`, `generations`, `rollback`,
 * `switch-generation`, `delete-generations`, `env` and `gc`, on a small
 * tree built on the busybox seed, with the generation's bin/profile-run
 * under a real bwrap. Kills at random moments and concurrent installs are
 * real processes.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratch, write, run, start, busyboxHttpd, userEnv, deadOwnersTemporary, BIN, type Run } from './helpers.ts';
import { makeSeedTarball, writeSeedPackage, binPackage } from './seed.ts';

const pkg = binPackage;

interface ListJson {
  profile: string;
  generation: number;
  packages: Array<{ name: string; version?: string; pkghash: string; output: string; requested: boolean; size: number; origin: { kind: string; path: string } }>;
}

describe('store', function () {
  this.timeout(300_000);
  let work: string;
  let cleanup: () => void;
  let www: { url: string; stop(): Promise<void> };
  let tree: string;
  let home: string;

  before(async () => {
    ({ dir: work, cleanup } = scratch());
    const wwwDir = path.join(work, 'www');
    fs.mkdirSync(wwwDir);
    const seedSha = await makeSeedTarball(wwwDir);
    www = await busyboxHttpd(wwwDir);
    tree = path.join(work, 'tree');
    writeSeedPackage(tree, www.url, seedSha);
    write(tree, pkg('a', { runDeps: ['seed'], meta: 'version: 1.0\nlicense: MIT\n' }));
    write(tree, pkg('b', { runDeps: ['a'], meta: 'version: 2.1\n' }));
    write(tree, pkg('c', { files: { 'bin/x': '#!/bin/sh\necho x from c\n' } }));
    write(tree, pkg('d', { files: { 'bin/x': '#!/bin/sh\necho x from d\n' } }));
    write(tree, pkg('e'));
    write(tree, pkg('f'));
    home = path.join(work, 'home');
    const r = run(tree, 'build-packages-ifchange', ['-j2', './pkg/b', './pkg/c', './pkg/d', './pkg/e', './pkg/f'], { PEERPKGS_HOME: home });
    assert.equal(r.status, 0, r.stderr);
  });
  after(async () => {
    await www.stop();
    cleanup();
  });

  const peerpkgs = (args: string[], h = home): Run => run(tree, 'peerpkgs', args, { PEERPKGS_HOME: h });
  const ok = (args: string[], h = home): string => {
    const r = peerpkgs(args, h);
    assert.equal(r.status, 0, `peerpkgs ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const listed = (profile = 'default', h = home): ListJson => JSON.parse(ok(['list', '--json', '--profile', profile], h)) as ListJson;
  const names = (profile = 'default', h = home) =>
    listed(profile, h)
      .packages.map((p) => p.name)
      .sort();
  const profileLink = (profile = 'default', h = home) => path.join(h, 'profiles', profile);

  describe('profiles', () => {
    let h: string;
    beforeEach(() => {
      h = path.join(work, `home-${Math.random().toString(16).slice(2)}`);
      // the outputs are shared: a new home unpacks them again from the tree's archives
    });

    it('install makes generation 1 of the default profile, with the run closure, and profile-run runs from it', () => {
      const out = ok(['install', './pkg/b'], h);
      assert.match(out, /^profile default: generation 1: /);
      assert.equal(fs.readlinkSync(profileLink('default', h)), 'default-1');
      assert.deepEqual(names('default', h), ['a', 'b', 'seed']);
      const b = listed('default', h).packages.find((p) => p.name === 'b')!;
      assert.equal(b.version, '2.1');
      assert.equal(b.requested, true);
      assert.deepEqual(b.origin, { kind: 'tree', path: path.join(tree, 'pkg/b') });
      assert.equal(listed('default', h).packages.find((p) => p.name === 'a')!.requested, false);
      const r = spawnSync(path.join(profileLink('default', h), 'bin/profile-run'), ['b'], { encoding: 'utf8', env: userEnv() });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, 'hello from b\n');
      // the text form: name, version, short pkghash, size, origin
      const line = ok(['list'], h)
        .split('\n')
        .find((l) => l.startsWith('b\t'))!;
      assert.match(line, new RegExp(`^b\\t2\\.1\\t${b.pkghash.slice(0, 12)}\\t\\d+ B\\t${path.join(tree, 'pkg/b')}$`));
    });

    it('remove, rollback and switch-generation move between whole generations; generations says what changed', () => {
      ok(['install', './pkg/b'], h);
      ok(['install', './pkg/e'], h);
      assert.deepEqual(names('default', h), ['a', 'b', 'e', 'seed']);
      ok(['remove', 'b'], h);
      // a and the seed went with b, which alone needed them
      assert.deepEqual(names('default', h), ['e']);
      assert.ok(!fs.existsSync(path.join(profileLink('default', h), 'bin/b')));
      const gens = ok(['generations'], h).trim().split('\n');
      assert.equal(gens.length, 3);
      assert.match(gens[0]!, /^1\t\d{4}-\d\d-\d\dT[^\t]+\t.*\+b 2\.1/);
      assert.match(gens[1]!, /^2\t[^\t]+\t\+e [0-9a-f]{12}$/);
      assert.match(gens[2]!, /^3\t[^\t]+\t-seed, -a, -b\t\(current\)$/);
      assert.equal(ok(['rollback'], h), 'profile default: generation 3 -> 2\n');
      assert.ok(fs.existsSync(path.join(profileLink('default', h), 'bin/b')));
      ok(['switch-generation', '1'], h);
      assert.deepEqual(names('default', h), ['a', 'b', 'seed']);
      const none = peerpkgs(['rollback'], h);
      assert.equal(none.status, 2);
      assert.match(none.stderr, /^peerpkgs: profile default has no generation before 1 \(see peerpkgs rollback --help\)\n$/);
      assert.equal(peerpkgs(['switch-generation', '9'], h).status, 2);
      assert.equal(peerpkgs(['remove', 'nosuch'], h).status, 2);
    });

    it('installing what is installed makes no generation', () => {
      ok(['install', './pkg/e'], h);
      assert.match(ok(['install', './pkg/e'], h), /nothing changed \(generation 1\)/);
      assert.deepEqual(
        fs
          .readdirSync(path.join(h, 'profiles'))
          .filter((n) => !n.startsWith('.'))
          .sort(),
        ['default', 'default-1'],
      );
    });

    it('a conflict is refused, or settled by the strategy named, which the profile remembers for that path', () => {
      ok(['install', './pkg/c'], h);
      const refused = peerpkgs(['install', './pkg/d'], h);
      assert.equal(refused.status, 1);
      assert.match(refused.stderr, /c and d both provide bin\/x/);
      assert.equal(fs.readlinkSync(profileLink('default', h)), 'default-1');
      ok(['install', '--prefer-new', './pkg/d'], h);
      const x = () => fs.readFileSync(path.join(profileLink('default', h), 'bin/x'), 'utf8');
      assert.equal(x(), '#!/bin/sh\necho x from d\n');
      // no strategy named: bin/x is settled as before
      ok(['install', './pkg/e'], h);
      assert.equal(x(), '#!/bin/sh\necho x from d\n');
      const manifest = JSON.parse(fs.readFileSync(path.join(profileLink('default', h), '.peerpkgs-profile'), 'utf8')) as { overrides: Record<string, string> };
      assert.deepEqual(manifest.overrides, { 'bin/x': 'prefer-new' });
    });

    it('upgrade builds from the tree again and makes a generation only when an output changed', () => {
      const t2 = path.join(work, `tree-${Math.random().toString(16).slice(2)}`);
      fs.cpSync(tree, t2, { recursive: true });
      const at = (args: string[]) => run(t2, 'peerpkgs', args, { PEERPKGS_HOME: h });
      assert.equal(at(['install', './pkg/b']).status, 0);
      assert.match(at(['upgrade']).stdout, /nothing changed \(generation 1\)/);
      write(t2, pkg('a', { runDeps: ['seed'], text: 'a again', meta: 'version: 1.1\nlicense: MIT\n' }));
      const r = at(['upgrade']);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^profile default: generation 2: a 1\.0 -> 1\.1\n$/);
      assert.equal(fs.readFileSync(path.join(profileLink('default', h), 'bin/a'), 'utf8'), '#!/bin/sh\necho a again\n');
    });

    it('delete-generations deletes old generations, never the current one', () => {
      ok(['install', './pkg/e'], h);
      ok(['install', './pkg/f'], h);
      ok(['install', './pkg/c'], h);
      const refused = peerpkgs(['delete-generations', '3'], h);
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, /generation 3 is the current one/);
      assert.equal(ok(['delete-generations', '1'], h), 'profile default: deleted generation 1\n');
      assert.equal(ok(['delete-generations', '--older-than', '0d'], h), 'profile default: deleted generation 2\n');
      assert.deepEqual(
        ok(['generations'], h)
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split('\t')[0]),
        ['3'],
      );
      assert.equal(peerpkgs(['delete-generations', '--older-than', '3w'], h).status, 2);
    });

    it('profiles are separate; a bad profile name is a usage error', () => {
      ok(['install', '--profile', 'work', './pkg/e'], h);
      ok(['install', './pkg/f'], h);
      assert.deepEqual(names('work', h), ['e']);
      assert.deepEqual(names('default', h), ['f']);
      const bad = peerpkgs(['list', '--profile', 'work-2'], h);
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /bad profile name "work-2"/);
    });

    it('env prints the lines that put the profile on PATH', () => {
      ok(['install', './pkg/e'], h);
      const lines = ok(['env'], h);
      const r = spawnSync('sh', ['-c', `${lines}\ncommand -v e`], { encoding: 'utf8', env: { ...userEnv(), PATH: '/usr/bin:/bin' } });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${profileLink('default', h)}/bin/e\n`);
    });

    it('each command has its --help', () => {
      for (const c of ['install', 'remove', 'upgrade', 'list', 'generations', 'rollback', 'switch-generation', 'delete-generations', 'env', 'gc']) {
        const r = peerpkgs([c, '--help'], h);
        assert.equal(r.status, 0, c);
        assert.match(r.stdout, new RegExp(`^usage: peerpkgs ${c} `), c);
      }
    });

    it('two installs into one profile at once are serialised, and both packages end up in it', async () => {
      const env = { PEERPKGS_HOME: h };
      // the outputs unpacked first, so that the two race for the profile, not the store
      ok(['install', '--profile', 'warm', './pkg/e', './pkg/f'], h);
      const [r1, r2] = await Promise.all([start(tree, 'peerpkgs', ['install', './pkg/e'], env), start(tree, 'peerpkgs', ['install', './pkg/f'], env)]);
      assert.equal(r1.status, 0, r1.stderr);
      assert.equal(r2.status, 0, r2.stderr);
      assert.deepEqual(names('default', h), ['e', 'f']);
      assert.equal(fs.readlinkSync(profileLink('default', h)), 'default-2');
    });

    it('a SIGKILL at any moment of install, remove, gc or rollback leaves the old generation active or the new one, whole', async function () {
      this.timeout(600_000);
      ok(['install', './pkg/e'], h);
      const link = profileLink('default', h);
      /** The active generation's packages, checked whole: every package's bin/NAME there, as it built it. */
      const active = (): string => {
        const m = JSON.parse(fs.readFileSync(path.join(link, '.peerpkgs-profile'), 'utf8')) as { packages: Array<{ name: string; requested: boolean }> };
        for (const p of m.packages) {
          if (p.name === 'seed') continue;
          assert.equal(fs.readFileSync(path.join(link, 'bin', p.name), 'utf8'), `#!/bin/sh\necho hello from ${p.name}\n`, p.name);
        }
        assert.ok(fs.statSync(path.join(link, 'bin/profile-run')).mode & 0o100);
        return m.packages
          .filter((p) => p.requested)
          .map((p) => p.name)
          .sort()
          .join(' ');
      };
      const steps: Array<[string[], string]> = [
        [['install', './pkg/f'], 'e f'],
        [['remove', 'f'], 'e'],
        // the outputs f alone held go: a kill half-way must not take e's
        [['gc'], 'e'],
        [['install', './pkg/b'], 'b e'],
        [['rollback'], 'e'],
      ];
      let state = active();
      let killed = 0;
      for (let i = 0; i < 20; i++) {
        const [args, after] = steps[i % steps.length]!;
        const before = state;
        const p = spawn(path.join(BIN, 'peerpkgs'), args, { cwd: tree, env: userEnv({ PEERPKGS_HOME: h }), stdio: 'ignore' });
        const exited = new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
        // within a command's usual time (100 to 200 ms on 2 idle cores), so
        // that most are killed part-way and some finish
        await new Promise((res) => setTimeout(res, Math.random() * 300));
        p.kill('SIGKILL');
        if ((await exited) === null) killed++;
        state = active();
        assert.ok(state === before || state === after, `after ${args.join(' ')}: ${state}, not ${before} or ${after}`);
        if (state === before) {
          // finish the step, so that the next starts where it expects
          ok(args, h);
          state = active();
          assert.equal(state, after);
        }
      }
      assert.ok(killed > 0, 'no command was killed before it finished');
      // nothing half-made is left once the next writer has swept, and the output store is whole
      ok(['install', './pkg/c'], h);
      const left = fs.readdirSync(path.join(h, 'profiles')).filter((n) => n.includes('.tmp-'));
      assert.deepEqual(left, []);
      ok(['gc'], h);
      assert.deepEqual(
        fs.readdirSync(path.join(h, 'outputs')).filter((n) => n.includes('.tmp-')),
        [],
      );
      const verified = peerpkgs(['verify'], h);
      assert.equal(verified.status, 0, verified.stdout + verified.stderr);
    });
  });

  describe('earlier builds', () => {
    it('a package built once is taken from the store in another checkout of the tree, built afresh by check, and collected unless a root holds it', () => {
      const h = path.join(work, 'home-built');
      // checkouts of the tree: its packages without what a build left in them
      const checkout = (name: string) => {
        const t = path.join(work, name);
        fs.cpSync(tree, t, { recursive: true, filter: (f) => path.basename(f) === '.pkg.tar.gz.do' || !/^\.(redo|pkghash|b?closure|pkg\.tar\.gz)/.test(path.basename(f)) });
        return t;
      };
      const built = (t: string, args: string[]) => {
        const r = run(t, 'build-packages-ifchange', args, { PEERPKGS_HOME: h });
        assert.equal(r.status, 0, r.stderr);
        return r.stderr;
      };
      const t1 = checkout('checkout-1');
      assert.match(built(t1, ['./pkg/b']), /^\[[\d/ :]+\] pkg\/b: built in /m);
      const t2 = checkout('checkout-2');
      const why = run(t2, 'peerpkgs', ['why', './pkg/b'], { PEERPKGS_HOME: h });
      assert.match(
        why.stdout,
        /^pkg\/b would be built: never built \(no pkg\/b\/\.pkg\.tar\.gz\)\n {2}but a build of pkghash [0-9a-f]{64} is in this store \(\S+\/built\/[0-9a-f]{64}\.pkg\.tar\.gz\): it would be taken from there$/m,
      );
      const again = built(t2, ['./pkg/b']);
      assert.match(again, /^\[[\d/ :]+\] pkg\/b: substituted from this store, built before$/m);
      assert.match(again, /^\[[\d/ :]+\] pkg\/a: substituted from this store, built before$/m);
      assert.doesNotMatch(again, /pkg\/[ab]: built in /);
      const archive = (t: string) => fs.readFileSync(path.join(t, 'pkg/b/.pkg.tar.gz'));
      assert.ok(archive(t2).equals(archive(t1)));
      // the archive is the one built, with its record: a cache it is published to gives its provenance
      assert.ok(fs.existsSync(path.join(t2, 'pkg/b/.pkg.tar.gz.built')));

      const check = run(t2, 'peerpkgs', ['check', './pkg/b'], { PEERPKGS_HOME: h });
      assert.equal(check.status, 0, check.stderr);
      assert.match(check.stdout, /^pkg\/b: reproducible, output sha256 [0-9a-f]{64}$/m);
      assert.match(check.stderr, /^\[[\d/ :]+\] pkg\/b: built in /m, 'the second build of check is a build');

      // gc keeps what a root holds (a/b installed); the rest goes, and the trees keep their own archives
      ok(['install', './pkg/a'], h);
      const freed = ok(['gc'], h);
      assert.match(freed, /^freed earlier builds: [1-9]\d* /m);
      assert.deepEqual(fs.readdirSync(path.join(h, 'built')).filter((n) => n.endsWith('.pkg.tar.gz')).length, 1, 'a, which the profile holds, is kept');
      assert.ok(archive(t2).equals(archive(t1)));
      const t3 = checkout('checkout-3');
      const third = built(t3, ['./pkg/b']);
      assert.match(third, /^\[[\d/ :]+\] pkg\/a: substituted from this store, built before$/m);
      assert.match(third, /^\[[\d/ :]+\] pkg\/b: built in /m);
    });
  });

  describe('gc', () => {
    it('deletes what no generation, venv or registered tree holds, per kind; --dry-run only lists', () => {
      const h = path.join(work, 'home-gc');
      // g built here: its sandbox root and the seed's output are this home's
      write(tree, pkg('g'));
      ok(['build', './pkg/g'], h);
      ok(['fetch', 'pkg/seed/fetch'], h);
      ok(['install', './pkg/a'], h);
      const venv = path.join(work, 'venv-gc');
      assert.equal(run(tree, 'venv', ['-o', venv, './pkg/b'], { PEERPKGS_HOME: h }).status, 0);
      // c unpacked, held by nothing: an export's
      ok(['export', 'tarball', '-o', path.join(work, 'c.tar.gz'), './pkg/c'], h);
      const junk = path.join(work, 'junk');
      fs.writeFileSync(junk, 'no tree names me\n');
      ok(['distfiles', 'add', junk], h);
      // the logs of a package whose tree is gone, and of one no log names
      const logs = path.join(h, 'logs');
      const gLogs = fs.readdirSync(logs);
      assert.equal(gLogs.length, 1, "g's build is logged");
      fs.mkdirSync(path.join(logs, 'gone-000000000000'));
      fs.symlinkSync(path.join(work, 'no-such-tree/pkg/gone'), path.join(logs, 'gone-000000000000/package'));
      fs.mkdirSync(path.join(logs, 'unnamed-000000000000'));
      const leftover = deadOwnersTemporary(path.join(h, 'outputs', 'unpack'));
      fs.mkdirSync(leftover);
      const outputs = () => fs.readdirSync(path.join(h, 'outputs')).filter((n) => /^[0-9a-f]{64}$/.test(n)).length;
      const distfiles = () => fs.readdirSync(path.join(h, 'distfiles')).length;
      assert.equal(outputs(), 4); // a and seed (the profile's), b (the venv's), c
      assert.equal(distfiles(), 2); // the seed's and junk

      const dry = ok(['gc', '--dry-run'], h);
      assert.match(dry, /^would free outputs: 1 \(/m);
      assert.match(dry, /^would free distfiles: 1 \(/m);
      assert.match(dry, /^would free crash leftovers: 1 \(/m);
      assert.match(dry, /^would free sandbox roots: 1 \(/m);
      assert.match(dry, /^would free logs: 2 \(/m);
      assert.ok(dry.includes(`would delete ${leftover}\n`));
      assert.equal(outputs(), 4);
      assert.ok(fs.existsSync(leftover));

      const freed = ok(['gc'], h);
      assert.match(freed, /^freed outputs: 1 \([\d.]+ [KMG]?i?B\)$/m);
      assert.match(freed, /^freed distfiles: 1 /m);
      assert.match(freed, /^freed crash leftovers: 1 /m);
      assert.match(freed, /^freed logs: 2 /m);
      assert.deepEqual(fs.readdirSync(logs), gLogs, "the logs of the registered tree's g are kept");
      assert.equal(outputs(), 3);
      assert.equal(distfiles(), 1); // the seed, which the tree's fetch file names
      assert.ok(!fs.existsSync(leftover));
      assert.deepEqual(fs.readdirSync(path.join(h, 'roots')), []);
      // the profile and the venv still run
      const inProfile = spawnSync(path.join(profileLink('default', h), 'bin/profile-run'), ['a'], { encoding: 'utf8', env: userEnv() });
      assert.equal(inProfile.stdout, 'hello from a\n', inProfile.stderr);
      const inVenv = spawnSync(path.join(venv, 'bin/venv-run'), ['b'], { encoding: 'utf8', env: userEnv() });
      assert.equal(inVenv.stdout, 'hello from b\n', inVenv.stderr);

      // a deleted venv's registration is stale: its outputs go
      fs.chmodSync(venv, 0o755);
      fs.rmSync(venv, { recursive: true, force: true });
      assert.match(ok(['gc'], h), /^freed outputs: 1 .*\n(.*\n)*freed registrations: 1 /m);
      assert.equal(outputs(), 2);
      assert.match(ok(['gc'], h), /^freed outputs: 0 \(0 B\)$/m);
    });

    it('waits for a running build, which gc never breaks', async () => {
      const h = path.join(work, 'home-gc-build');
      const t3 = path.join(work, 'tree-slow');
      fs.cpSync(tree, t3, { recursive: true });
      write(t3, {
        '!pkg/slow/build': '#!/bin/sh\nset -e\nsleep 3\nmkdir -p "$DESTDIR/bin"\ncp /bin/busybox "$DESTDIR/bin/copied"\n',
        'pkg/slow/build-deps': '../seed\n',
      });
      const building = start(t3, 'peerpkgs', ['build', './pkg/slow'], { PEERPKGS_HOME: h });
      const users = path.join(h, 'gcroots/users');
      // the build has said it uses the store and is past fetching the seed
      for (let i = 0; i < 600 && !(fs.existsSync(path.join(h, 'roots')) && fs.readdirSync(users).length > 0); i++) await new Promise((r) => setTimeout(r, 50));
      const gc = run(t3, 'peerpkgs', ['gc'], { PEERPKGS_HOME: h });
      const b = await building;
      assert.equal(b.status, 0, b.stderr);
      assert.equal(gc.status, 0, gc.stderr);
      assert.match(gc.stderr, /^gc: waiting for process \d+ \(a build, an install or an IPFS command\) to finish$/m);
      // and once the build is done, what it used is garbage
      assert.match(gc.stdout, /^freed sandbox roots: 1 /m);
    });
  });
});
