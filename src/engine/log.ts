/**
 * What the engine tells the user, on stderr: one line a target as it starts,
 * indented by depth, as redo prints it; failures with their exit status.
 * Paths are shown relative to the directory the user ran redo from.
 */
import * as path from 'node:path';

export class Log {
  private readonly color: boolean;
  private readonly startDir: string;
  private readonly base: string;
  private readonly write: (s: string) => void;

  constructor(startDir: string, base: string, write?: (s: string) => void, color?: boolean) {
    this.startDir = startDir;
    this.base = base;
    this.write = write ?? ((s) => process.stderr.write(s));
    this.color = color ?? (process.stderr.isTTY === true && !process.env.NO_COLOR);
  }

  private paint(code: string, s: string): string {
    return this.color ? `\x1b[${code}m${s}\x1b[0m` : s;
  }

  /** A base-relative path as the user should see it. */
  show(rel: string): string {
    if (rel.startsWith('builtin:')) return rel;
    const r = path.relative(this.startDir, path.resolve(this.base, rel));
    return r === '' ? '.' : r;
  }

  start(t: string, depth: number): void {
    this.write(`${this.paint('32', 'redo ')} ${'  '.repeat(depth)}${this.paint('1', this.show(t))}\n`);
  }

  note(t: string, depth: number, line: string): void {
    this.write(`${this.paint('32', 'redo ')} ${'  '.repeat(depth + 1)}${line}\n`);
    void t;
  }

  failed(t: string, status: number, why?: string): void {
    this.write(`${this.paint('31', 'redo ')} ${this.show(t)}: ${why ?? `exit ${status}`}\n`);
  }

  /** The last word of a run that failed: which targets, with what status. */
  summary(failures: ReadonlyArray<{ target: string; status: number }>): void {
    if (failures.length === 0) return;
    const list = failures.map((f) => `${this.show(f.target)} (exit ${f.status})`).join(', ');
    this.write(`${this.paint('31', 'redo:')} failed: ${list}\n`);
  }

  error(msg: string): void {
    this.write(`${this.paint('31', 'redo:')} ${msg}\n`);
  }

  warn(msg: string): void {
    this.write(`${this.paint('33', 'redo:')} warning: ${msg}\n`);
  }

  info(msg: string): void {
    this.write(`redo: ${msg}\n`);
  }

  debug(msg: string): void {
    this.write(`redo: debug: ${msg}\n`);
  }
}
