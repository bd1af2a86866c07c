/**
 * The tree's system packages built with GCC: curl, the kernel's headers
 * (linux-headers), libcap, bubblewrap and util-linux, built in a scratch copy of pkg/ and used
 * from one venv as a user would: its GCC compiles a program against them,
 * and the commands are called once each.
 *
 * CI cannot run it: it has no GCC (the chain takes over an hour to build).
 * It runs when PKG_TEST_GCC_HOME names a peerpkgs home whose built/ holds
 * pkg/gcc (GCC is then substituted from it, and so are these packages if
 * they were built there before; the scratch copy of pkg/ has no outputs):
 *
 *   PKG_TEST_GCC_HOME=$HOME/.cache/peerpkgs node node_modules/mocha/bin/mocha.js \
 *     --no-config --extension ts --timeout 120000 test/tree-sys.test.ts
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { gccTree, userEnv } from './helpers.ts';

const PACKAGES = ['curl', 'linux-headers', 'libcap', 'bubblewrap', 'util-linux'];

describe('the system packages built with GCC (PKG_TEST_GCC_HOME)', function () {
  // a package missing from the home is built: minutes each
  this.timeout(3 * 3600_000);
  let dir: string;
  let cleanup: (() => void) | undefined;
  const venvRun = (args: string[], opts: { cwd?: string; input?: string } = {}) => {
    const r = spawnSync(path.join(dir, 'venv/bin/venv-run'), args, { cwd: opts.cwd ?? dir, env: userEnv(), input: opts.input, encoding: 'utf8', timeout: 120_000 });
    if (r.error) throw r.error;
    return r;
  };

  /** venv-run without blocking the event loop, for a command talking to a server of this process */
  const venvRunAsync = (args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(path.join(dir, 'venv/bin/venv-run'), args, { cwd: dir, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('close', (status) => resolve({ status, stdout, stderr }));
    });

  before(function () {
    ({ dir, cleanup } = gccTree(this, PACKAGES, ['gcc', 'busybox', 'openssl']));
  });
  after(() => cleanup?.());

  it('curl --version names its TLS backend, OpenSSL, and zlib', () => {
    const r = venvRun(['curl', '--version']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^curl 7\.88\.1 \(x86_64-pc-linux-musl\) libcurl\/7\.88\.1 OpenSSL\/3\.0\.20 zlib\/1\.2\.13$/m);
    assert.match(r.stdout, /^Protocols: .*\bhttps\b/m);
    assert.match(r.stdout, /^Features: .*\bSSL\b/m);
  });

  it('curl fetches over https, trusting the certificate it is given, and inflates gzip', async () => {
    // self-signed certificates made by the tree's openssl: the server's, for 127.0.0.1, and another
    const selfSigned = (name: string) => {
      const r = venvRun([
        'openssl',
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.pem`,
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ]);
      assert.equal(r.status, 0, r.stderr);
      return { key: fs.readFileSync(path.join(dir, `${name}.key`)), cert: path.join(dir, `${name}.pem`) };
    };
    const { key, cert } = selfSigned('server');
    const other = selfSigned('other').cert;
    const body = 'served over TLS to curl\n'.repeat(100);
    const server = https.createServer({ key, cert: fs.readFileSync(cert) }, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip' });
      res.end(zlib.gzipSync(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const r = await venvRunAsync(['curl', '-sS', '--compressed', '--cacert', cert, url]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, body);
      // trusting another certificate only, curl refuses the server's (60: CURLE_PEER_FAILED_VERIFICATION)
      const refused = await venvRunAsync(['curl', '-sS', '--cacert', other, url]);
      assert.equal(refused.status, 60, refused.stderr);
      assert.match(refused.stderr, /SSL certificate problem: self[- ]signed certificate/);
    } finally {
      server.close();
    }
  });

  it('the kernel headers and libcap compile into a program with the tree’s GCC', () => {
    fs.writeFileSync(
      path.join(dir, 'caps.c'),
      `#include <linux/version.h>
#include <linux/capability.h>
#include <asm/unistd.h>
#include <sys/capability.h>
#include <stdio.h>
int main(void) {
	cap_t caps = cap_from_text("cap_net_raw,cap_net_admin+ep");
	char *text;
	if (!caps) return 1;
	text = cap_to_text(caps, NULL);
	printf("linux %d.%d.%d, last capability %d, getpid %d, [%s]\\n",
		LINUX_VERSION_MAJOR, LINUX_VERSION_PATCHLEVEL, LINUX_VERSION_SUBLEVEL,
		CAP_LAST_CAP, __NR_getpid, text);
	cap_free(text);
	cap_free(caps);
	return LINUX_VERSION_CODE == KERNEL_VERSION(6, 1, 176) ? 0 : 2;
}
`,
    );
    const cc = venvRun(['cc', '-O2', '-o', 'caps', 'caps.c', '-lcap']);
    assert.equal(cc.status, 0, cc.stderr);
    const r = venvRun(['./caps']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'linux 6.1.176, last capability 40, getpid 39, [cap_net_admin,cap_net_raw=ep]\n');
  });

  it('capsh decodes a capability mask and prints its own state', () => {
    const d = venvRun(['capsh', '--decode=0x3000']);
    assert.equal(d.status, 0, d.stderr);
    assert.equal(d.stdout, '0x0000000000003000=cap_net_admin,cap_net_raw\n');
    const p = venvRun(['capsh', '--print']);
    assert.equal(p.status, 0, p.stderr);
    assert.match(p.stdout, /^Bounding set =/m);
    assert.match(p.stdout, /^Securebits: /m);
    // a file without capabilities: getcap says nothing, and succeeds
    const g = venvRun(['getcap', path.join(dir, 'caps.c')]);
    assert.equal(g.status, 0, g.stderr);
    assert.equal(g.stdout, '');
  });

  it('bwrap runs a command in new namespaces, as another user', function () {
    assert.equal(venvRun(['bwrap', '--version']).stdout, 'bubblewrap 0.8.0\n');
    const r = venvRun(['bwrap', '--ro-bind', '/', '/', 'true']);
    // bwrap is not setuid: it needs user namespaces, which a container may withhold
    if (r.status !== 0 && /namespace|uid map|Operation not permitted/i.test(r.stderr)) {
      console.log(`      skipped: bwrap cannot make namespaces here (${r.stderr.trim()})`);
      this.skip();
    }
    assert.equal(r.status, 0, r.stderr);
    // in its own pid namespace bwrap is the init, and the command pid 2
    const ns = venvRun([
      'bwrap',
      '--ro-bind',
      '/',
      '/',
      '--unshare-user',
      '--uid',
      '4242',
      '--gid',
      '4242',
      '--unshare-pid',
      '--proc',
      '/proc',
      'sh',
      '-c',
      'id -u; id -g; echo $$',
    ]);
    assert.equal(ns.status, 0, ns.stderr);
    assert.equal(ns.stdout, '4242\n4242\n2\n');
  });

  it('util-linux: getopt, uuidgen, hexdump, column and findmnt', () => {
    const ok = (args: string[], input?: string) => {
      const r = venvRun(args, { input });
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    assert.equal(ok(['getopt', '-o', 'ab:', '-l', 'long:', '--', '-a', '-b', 'x', '--long', 'y', 'z']), " -a -b 'x' --long 'y' -- 'z'\n");
    // a random UUID (version 4), and the name-based one (version 5) every implementation agrees on
    assert.match(ok(['uuidgen', '--random']), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n$/);
    assert.equal(ok(['uuidgen', '--sha1', '--namespace', '@dns', '--name', 'example.com']), 'cfbff0d1-9375-5685-968c-48ce8b15ae17\n');
    assert.equal(ok(['hexdump', '-C'], 'peerpkgs\u0000\u0001\n'), '00000000  70 65 65 72 70 6b 67 73  00 01 0a                 |peerpkgs...|\n0000000b\n');
    assert.equal(ok(['column', '-t'], 'name size\nlibcap 221048\nbubblewrap 80685\n'), 'name        size\nlibcap      221048\nbubblewrap  80685\n');
    const fstab = path.join(dir, 'fstab');
    fs.writeFileSync(fstab, 'UUID=0f2d3b4c-1111-2222-3333-444455556666 / ext4 defaults 0 1\ntmpfs /tmp tmpfs nosuid,nodev 0 0\n');
    assert.deepEqual(JSON.parse(ok(['findmnt', '-F', fstab, '-J', '-o', 'TARGET,FSTYPE,OPTIONS'])), {
      filesystems: [
        { target: '/', fstype: 'ext4', options: 'defaults' },
        { target: '/tmp', fstype: 'tmpfs', options: 'nosuid,nodev' },
      ],
    });
  });
});
