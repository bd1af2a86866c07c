/**
 * Test helpers: a scratch directory per test, and running the real
 * commands from bin/ (compiled by `npm run build`) as a user would.
 */
import { spawnSync, spawn, type SpawnSyncReturns } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

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
  return { dir, cleanup: () => (process.env.KEEP_TEST_DIRS ? undefined : fs.rmSync(dir, { recursive: true, force: true })) };
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

export function run(cwd: string, cmd: string, args: string[] = [], extra: NodeJS.ProcessEnv = {}): Run {
  const r: SpawnSyncReturns<string> = spawnSync(path.join(BIN, cmd), args, {
    cwd,
    env: userEnv(extra),
    encoding: 'utf8',
    timeout: 120_000,
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
