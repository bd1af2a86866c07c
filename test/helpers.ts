/**
 * Test helpers: a scratch directory per test, and running the real
 * commands from bin/ (compiled by `npm run build`) as a user would.
 */
import { spawnSync, spawn, type SpawnSyncReturns, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { removeTreeSync } from '../src/archive/files.ts';

export const REPO = path.resolve(import.meta.dirname, '..');
export const BIN = path.join(REPO, 'bin');

export interface Run {
  status: number;
  stdout: string;
  stderr: string;
}

/** A fresh directory, removed after the test unless KEEP_TEST_DIRS is set. */
export function scratch(): { dir: string; cleanup: () => void } {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'peerpkgs-test-')));
  // removeTree: unpacked outputs and venvs are read-only
  return { dir, cleanup: () => (process.env.KEEP_TEST_DIRS ? undefined : removeTreeSync(dir)) };
}

/** Write files: { 'a.do': 'echo hi', 'sub/b': '...' }; a leading '!' makes it executable. */
export function write(dir: string, files: Record<string, string>): void {
  for (const [name, text] of Object.entries(files)) {
    const exec = name.startsWith('!');
    const p = path.join(dir, exec ? name.slice(1) : name);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, text);
    if (exec) fs.chmodSync(p, 0o755);
  }
}

export function read(dir: string, name: string): string {
  return fs.readFileSync(path.join(dir, name), 'utf8');
}

export function exists(dir: string, name: string): boolean {
  return fs.existsSync(path.join(dir, name));
}

/** The environment a user has, with our bin/ first and no build running. */
export function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${BIN}:${process.env.PATH}`, NO_COLOR: '1', ...extra };
  for (const k of Object.keys(env)) if (k.startsWith('REDO_') && !(k in extra)) delete env[k];
  delete env.MAKEFLAGS;
  delete env.MFLAGS;
  return env;
}

export function run(cwd: string, cmd: string, args: string[] = [], extra: NodeJS.ProcessEnv = {}, timeout = 120_000): Run {
  const r: SpawnSyncReturns<string> = spawnSync(path.join(BIN, cmd), args, {
    cwd,
    env: userEnv(extra),
    encoding: 'utf8',
    timeout,
    maxBuffer: 256 << 20, // builds of real packages say a lot
  });
  if (r.error) throw r.error;
  return { status: r.status ?? 128, stdout: r.stdout, stderr: r.stderr };
}

/** Start a command without waiting; resolves with its result. */
export function start(cwd: string, cmd: string, args: string[] = [], extra: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(path.join(BIN, cmd), args, { cwd, env: userEnv(extra) });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (status) => resolve({ status: status ?? 128, stdout, stderr }));
  });
}

/** Lines a .do appended to `log` (each .do run writes its name there). */
export function runsOf(dir: string, log = 'runs.log'): string[] {
  const p = path.join(dir, log);
  return fs.existsSync(p) ? fs.readFileSync(p, 'utf8').split('\n').filter(Boolean) : [];
}

/** A TCP port on loopback that nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => (c.destroy(), resolve(true)));
    c.once('error', () => resolve(false));
  });
}

/** busybox httpd (Debian's busybox-static) serving `dir`: a real web server. */
export async function busyboxHttpd(dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const p: ChildProcess = spawn('/usr/bin/busybox', ['httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', dir], { stdio: 'ignore' });
  for (let i = 0; !(await canConnect(port)); i++) {
    if (i > 100 || p.exitCode !== null) throw new Error('busybox httpd did not start (is busybox-static installed?)');
    await new Promise((r) => setTimeout(r, 20));
  }
  const stop = async () => {
    if (p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill();
    await exited;
  };
  return { url: `http://127.0.0.1:${port}`, stop };
}

/** The name archive/temporary.ts gives a temporary beside `final` of a
 * process that has died (here, on this host and pid namespace): what a
 * SIGKILLed writer leaves. */
export function deadOwnersTemporary(final: string): string {
  const dead = spawnSync('true').pid!; // waited for: gone
  const stat = fs.readFileSync('/proc/self/stat', 'latin1');
  const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  let h = 0x811c9dc5; // FNV-1a of the host and pid namespace, as temporary.ts names where a pid means something
  for (const c of Buffer.from(`${os.hostname()} ${fs.readlinkSync('/proc/self/ns/pid')}`)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  const base = path.basename(final);
  return path.join(path.dirname(final), `${base.startsWith('.') ? base : `.${base}`}.tmp-${dead}-${start}-${h.toString(16).padStart(8, '0')}-0000abcd`);
}

/** A process's state letter from /proc (S, R, Z, ...), or 'gone'. */
export function processState(pid: number): string {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0]!;
  } catch {
    return 'gone';
  }
}

/** Asserts that `value` (a command's --json output) has the shape test/schemas/NAME.schema.json documents. */
export async function assertSchema(name: string, value: unknown): Promise<void> {
  const { Ajv } = await import('ajv');
  const validate = new Ajv({ allErrors: true }).compile(JSON.parse(fs.readFileSync(path.join(REPO, 'test/schemas', `${name}.schema.json`), 'utf8')));
  if (!validate(value)) throw new Error(`${name}.schema.json: ${JSON.stringify(validate.errors, null, 2)}\n${JSON.stringify(value, null, 2)}`);
}

/** Names a build leaves in a package directory: outputs, not the tree's own files (`.pkg.tar.gz.do` is a seed's own). */
const BUILD_OUTPUT = /^\.(redo|pkghash|b?closure|pkg\.tar\.gz(?!\.do))/;

/** The checked-out tree's pkg/ copied to DIR/pkg, without the outputs a build in the checkout left. */
export function copyTree(dir: string): void {
  fs.cpSync(path.join(REPO, 'pkg'), path.join(dir, 'pkg'), { recursive: true, filter: (f) => !BUILD_OUTPUT.test(path.basename(f)) });
}

/**
 * The build-deps that put the tree's GCC-built packages back on the seed's
 * tcc, as the tree built them before GCC: CI has no GCC (its chain takes
 * over an hour), and tcc is what GCC's gain is measured against. Their
 * build scripts call `cc` and `make`, which both toolchains provide.
 */
export const ON_TCC: Readonly<Record<string, readonly string[]>> = {
  zlib: ['../seed'],
  lua: ['../seed'],
  xz: ['../seed', '../untar-v7'],
  pigz: ['../seed', '../zlib'],
  pngcheck: ['../seed', '../zlib'],
};

/** Put pkg/NAME of the tree at DIR on tcc; with `as`, a copy pkg/AS is, and pkg/NAME is left as it is. */
export function onTcc(dir: string, name: string, as?: string): void {
  const deps = ON_TCC[name];
  if (!deps) throw new Error(`no tcc build-deps known for pkg/${name}`);
  const to = path.join(dir, 'pkg', as ?? name);
  if (as) fs.cpSync(path.join(dir, 'pkg', name), to, { recursive: true });
  fs.writeFileSync(path.join(to, 'build-deps'), deps.join('\n') + '\n');
}

/**
 * The `before` of a file testing packages the tree builds with GCC: CI has
 * no GCC (its chain takes over an hour), so such a file runs only with
 * PKG_TEST_GCC_HOME, a peerpkgs home whose built/ holds pkg/gcc, and is
 * skipped, saying how to run it, without. In a scratch copy of the tree,
 * `packages` are built with that home (each taken from its store when it
 * built them before, else built: minutes each), and put in one venv,
 * DIR/venv, with `alsoInVenv`.
 */
export function gccTree(ctx: Mocha.Context, packages: readonly string[], alsoInVenv: readonly string[] = []): { dir: string; cleanup: () => void; env: NodeJS.ProcessEnv } {
  const home = process.env.PKG_TEST_GCC_HOME;
  if (!home) {
    console.log('      skipped: PKG_TEST_GCC_HOME is unset; set it to a peerpkgs home whose built/ holds pkg/gcc (PKG_TEST_GCC_HOME=$HOME/.cache/peerpkgs)');
    ctx.skip();
  }
  const { dir, cleanup } = scratch();
  try {
    copyTree(dir);
    const env = { PEERPKGS_HOME: home };
    const info = run(dir, 'peerpkgs', ['info', './pkg/gcc'], env);
    const pkghash = /^pkghash: +([0-9a-f]{64})$/m.exec(info.stdout)?.[1];
    if (!pkghash || !fs.existsSync(path.join(home, 'built', `${pkghash}.pkg.tar.gz`))) {
      throw new Error(`PKG_TEST_GCC_HOME=${home}: its built/ does not hold pkg/gcc; build it there first (PEERPKGS_HOME=${home} bin/build-packages-ifchange -j2 ./pkg/gcc, hours)`);
    }
    const pkgs = packages.map((p) => `./pkg/${p}`);
    const built = run(dir, 'build-packages-ifchange', ['-j2', ...pkgs], env, 4 * 3600_000);
    if (built.status !== 0) throw new Error(`building ${packages.join(' ')} failed (${built.status}):\n${built.stderr.slice(-4000)}`);
    for (const p of packages) {
      if (!new RegExp(`^\\[[\\d/ :]+\\] pkg/${p}: (built|substituted)\\b`, 'm').test(built.stderr)) throw new Error(`pkg/${p} was neither built nor substituted:\n${built.stderr}`);
    }
    if (/^\[[\d/ :]+\] pkg\/gcc: building/m.test(built.stderr)) throw new Error('pkg/gcc was built, not taken from the store');
    const venv = run(dir, 'venv', ['-o', 'venv', ...pkgs, ...alsoInVenv.map((p) => `./pkg/${p}`)], env);
    if (venv.status !== 0) throw new Error(`bin/venv failed (${venv.status}): ${venv.stderr}`);
    return { dir, cleanup, env };
  } catch (e) {
    cleanup();
    throw e;
  }
}
