/**
 * What a user sees while distfiles download. On a terminal: one status
 * line, redrawn in place at most ten times a second, with each download's
 * name, bytes done of total and rate; finished downloads and notes (failed
 * attempts, retries) scroll above it. Anywhere else (a log, CI, a pipe):
 * plain lines only, one when a download starts and one when it ends, since
 * carriage returns make logs unreadable.
 *
 * The downloader only reports; it never knows which of the two it talks to.
 */
import { NO_TRANSFER, type Transfer } from '../engine/rules.ts';

export type { Transfer };

export interface Progress {
  /** total: the size, when the source announced it */
  begin(name: string, from: string, total?: number): Transfer;
  note(line: string): void;
}

/** Where progress is written: process.stderr, or a fake in tests. */
export interface Output {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export function progressFor(out: Output = process.stderr): Progress {
  return out.isTTY ? new BarProgress(out) : new LineProgress(out);
}

export const silentProgress: Progress = {
  begin: () => NO_TRANSFER,
  note() {},
};

/** A bar on a terminal, nothing elsewhere: for a command whose own lines already say what came. */
export function barOnTerminal(out: Output = process.stderr): Progress {
  return out.isTTY ? new BarProgress(out) : silentProgress;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let u = -1;
  do {
    n /= 1024;
    u++;
  } while (n >= 1024 && u < units.length - 1);
  return `${n.toFixed(1)} ${units[u]}`;
}

function rate(bytes: number, ms: number): string {
  return ms > 0 ? `${formatBytes(Math.round((bytes * 1000) / ms))}/s` : '-';
}

function finished(name: string, bytes: number, ms: number): string {
  return `fetched ${name}: ${formatBytes(bytes)} in ${(ms / 1000).toFixed(1)} s (${rate(bytes, ms)})`;
}

export class LineProgress implements Progress {
  private readonly out: Output;

  constructor(out: Output = process.stderr) {
    this.out = out;
  }

  begin(name: string, from: string, total?: number): Transfer {
    const size = total === undefined ? '' : ` (${formatBytes(total)})`;
    this.out.write(`fetching ${name}${size} from ${from}\n`);
    const start = performance.now();
    let bytes = 0;
    return {
      advance: (n) => void (bytes += n),
      done: () => void this.out.write(`${finished(name, bytes, performance.now() - start)}\n`),
      abort: () => {},
    };
  }

  note(line: string): void {
    this.out.write(`${line}\n`);
  }
}

interface Active {
  name: string;
  total?: number;
  bytes: number;
  start: number;
}

export class BarProgress implements Progress {
  private readonly out: Output;
  private readonly active = new Set<Active>();
  private lastDraw = 0;

  constructor(out: Output = process.stderr) {
    this.out = out;
  }

  begin(name: string, _from: string, total?: number): Transfer {
    const t: Active = { name, total, bytes: 0, start: performance.now() };
    this.active.add(t);
    this.draw(true);
    return {
      advance: (n) => {
        t.bytes += n;
        this.draw(false);
      },
      done: () => {
        this.active.delete(t);
        this.print(finished(t.name, t.bytes, performance.now() - t.start));
      },
      abort: () => {
        this.active.delete(t);
        this.draw(true);
      },
    };
  }

  note(line: string): void {
    this.print(line);
  }

  /** A line that stays, above the status line. */
  private print(line: string): void {
    this.out.write(`\r\x1b[K${line}\n`);
    this.draw(true);
  }

  private draw(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const parts = [...this.active].map((t) => {
      const done = t.total ? `${formatBytes(t.bytes)}/${formatBytes(t.total)}` : formatBytes(t.bytes);
      return `${t.name} ${bar(t.bytes, t.total)}${done} ${rate(t.bytes, now - t.start)}`;
    });
    // a pty without a size (script(1) on a pipe) says 0 columns
    const width = Math.max((this.out.columns || 80) - 1, 20);
    this.out.write(`\r${parts.join(' | ').slice(0, width)}\x1b[K`);
  }
}

function bar(bytes: number, total?: number): string {
  if (!total) return '';
  const filled = Math.min(20, Math.floor((bytes / total) * 20));
  return `[${'#'.repeat(filled)}${' '.repeat(20 - filled)}] `;
}
