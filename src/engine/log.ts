/**
 * What the engine tells the user, on stderr: one line a target as it starts,
 * indented by depth, as redo prints it; failures with their exit status.
 * Paths are shown relative to the directory the user ran redo from.
 *
 * A line about a target built for a .do whose `redo-ifchange` had its stderr
 * redirected goes where that stderr went (`to`, a /proc/PID/fd/2 path), as
 * it would from a redo process started there.
 *
 * Every name printed may come from a file someone else wrote (a target, a
 * dependency line, a file name): its control characters are escaped, so
 * that none can clear the terminal, set its title or forge a line.
 *
 * A run's Log is the one thing that writes its lines: the engine's, and
 * what built-in rules hand it (a build's output, its start, a
 * substitution). The commands that build packages use a Log of their own
 * that shows packages, not targets (pkgrules/progress.ts).
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { NO_TRANSFER, type ProgressOutput, type Transfer } from './rules.ts';

// C0 controls, DEL and C1 controls; with `lines`, \n stays a line break;
// with `tabs`, \t stays layout (a build's own output)
/* eslint-disable no-control-regex -- matching them is the point */
const CONTROLS = /[\x00-\x1f\x7f-\x9f]/g;
const CONTROLS_BUT_NEWLINE = /[\x00-\x09\x0b-\x1f\x7f-\x9f]/g;
const CONTROLS_BUT_TAB = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;
/* eslint-enable no-control-regex */
const SHORT: Record<string, string> = { '\b': '\\b', '\t': '\\t', '\n': '\\n', '\f': '\\f', '\r': '\\r' };

/** `s` with its control characters written as JSON writes them (\n, \u001b),
 * safe on a terminal; with `lines`, a message of several lines keeps them;
 * with `tabs`, a line keeps its tabs. */
export function printable(s: string, lines = false, tabs = false): string {
  const which = tabs ? CONTROLS_BUT_TAB : lines ? CONTROLS_BUT_NEWLINE : CONTROLS;
  return s.replace(which, (c) => SHORT[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** "1 package", "2 packages" */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export class Log {
  protected readonly color: boolean;
  /** what its messages say they come from */
  protected readonly who: string = 'redo';
  private readonly startDir: string;
  /** the directory targets are named relative to */
  protected readonly base: string;
  private readonly write: (s: string) => void;
  /** it writes to stderr, a terminal */
  private readonly tty: boolean;

  constructor(startDir: string, base: string, write?: (s: string) => void, color?: boolean) {
    this.startDir = startDir;
    this.base = base;
    this.write = write ?? ((s) => process.stderr.write(s));
    this.tty = !write && process.stderr.isTTY === true;
    this.color = color ?? (process.stderr.isTTY === true && !process.env.NO_COLOR);
  }

  protected paint(code: string, s: string): string {
    return this.color ? `\x1b[${code}m${s}\x1b[0m` : s;
  }

  /** A base-relative path as the user should see it. */
  show(rel: string): string {
    if (rel.startsWith('builtin:')) return rel;
    const r = path.relative(this.startDir, path.resolve(this.base, rel));
    return r === '' ? '.' : printable(r);
  }

  /** Everything this log shows on its stream goes through here. */
  protected print(s: string): void {
    this.write(s);
  }

  /** A target as a summary names it. */
  protected showTarget(t: string): string {
    return this.show(t);
  }

  private out(s: string, to?: string): void {
    if (to) {
      try {
        fs.appendFileSync(to, s);
        return;
      } catch {
        /* the redirected stderr is gone: ours will do */
      }
    }
    this.print(s);
  }

  /** `t`'s rule starts; `rule`: its .do file, or builtin:NAME. */
  start(t: string, depth: number, to?: string, _rule?: string): void {
    this.out(`${this.paint('32', 'redo ')} ${'  '.repeat(depth)}${this.paint('1', this.show(t))}\n`, to);
  }

  /** A rule's line about target `t`, shown under it. */
  note(depth: number, line: string, to?: string, _t?: string): void {
    this.out(`${this.paint('32', 'redo ')} ${'  '.repeat(depth + 1)}${printable(line)}\n`, to);
  }

  failed(t: string, status: number, why?: string, to?: string): void {
    this.out(`${this.paint('31', 'redo ')} ${this.show(t)}: ${printable(why ?? `exit ${status}`)}\n`, to);
  }

  /** The last word of a run that failed: which targets, with what status. */
  summary(failures: ReadonlyArray<{ target: string; status: number }>): void {
    if (failures.length === 0) return;
    const list = failures.map((f) => `${this.showTarget(f.target)} (exit ${f.status})`).join(', ');
    this.print(`${this.paint('31', `${this.who}:`)} failed: ${list}\n`);
  }

  error(msg: string): void {
    this.print(`${this.paint('31', `${this.who}:`)} ${printable(msg, true)}\n`);
  }

  warn(msg: string, to?: string): void {
    this.out(`${this.paint('33', `${this.who}:`)} warning: ${printable(msg, true)}\n`, to);
  }

  info(msg: string): void {
    this.print(`${this.who}: ${printable(msg, true)}\n`);
  }

  debug(msg: string): void {
    this.print(`${this.who}: debug: ${printable(msg, true)}\n`);
  }

  // What a built-in rule tells of its target beyond notes (BuildContext).
  // Here as redo shows it; pkgrules/progress.ts shows packages its own way.

  /** A line of the target's own output (a package build's), escaped:
   * it could set the title, clear the screen or fill the clipboard (OSC
   * 52); tabs are layout, not control. */
  output(_t: string, line: Buffer): void {
    this.print(`${printable(line.toString(), false, true)}\n`);
  }

  /** The rule's own work begins, its dependencies made. */
  began(_t: string): void {}

  /** The target was taken from a cache, `how` says from where, instead of built. */
  substituted(_t: string, depth: number, how: string, to?: string): void {
    this.note(depth, `substituted ${how}`, to);
  }

  /** Bytes coming for `t` (a cache's archive): redo shows none of them. */
  transfer(_t: string, _total: number): Transfer {
    return NO_TRANSFER;
  }

  /** Where a rule's progress (a download's) goes: this log's stream,
   * where a terminal gets a redrawn line. */
  progressOutput(): ProgressOutput {
    return { write: (s) => this.print(s), isTTY: this.tty, columns: process.stderr.columns };
  }

  /** Whether `t` is up to date is known for this run (built, failed or
   * found so): what progress counts. */
  settled(_t: string, _ok: boolean): void {}
}
