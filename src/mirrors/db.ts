/**
 * The source mirror database: which IPFS CIDs hold the bytes of which
 * distfile. A CSV file, `mirrors/ipfs.csv` beside the tree's `pkg/`:
 *
 *   sha256,cid,url
 *   <64 hex>,<CID>,<the url the bytes were first fetched from>
 *
 * One row per (sha256, cid); a sha256 may have several CIDs (the same bytes
 * added with other settings). It is a file of the tree, reviewed in diffs
 * like fetch files, so writes keep it sorted by sha256 then cid with no
 * duplicates, and a row added changes one line. CSV rather than rec: any
 * tool reads it, and one record a line diffs and merges best.
 *
 * Every write goes to a temporary file renamed over the database, under a
 * lock, so neither a crash nor two pinning processes lose rows.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { parse } from 'csv-parse/sync';
import { TreeError, at, display } from '../tree/errors.ts';
import { byBytes, treeRoot } from '../tree/package.ts';
import { settings } from '../settings.ts';
import { withTemporaryFile } from '../archive/temporary.ts';

export interface MirrorRecord {
  sha256: string;
  cid: string;
  url: string;
}

export const HEADER = ['sha256', 'cid', 'url'] as const;
export const DB_NAME = 'ipfs.csv';

const SHA256 = /^[0-9a-f]{64}$/;
// CIDv0 (base58btc, "Qm…") or a CIDv1 in a multibase text form: a syntax
// check only; the IPFS node refuses what does not decode
const CID = /^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{20,}|z[1-9A-HJ-NP-Za-km-z]{20,}|f[0-9a-f]{20,})$/;

/** Why a record cannot be in the database, and the field at fault, or null when it can. */
export function recordProblem(r: MirrorRecord): { field: keyof MirrorRecord; message: string } | null {
  if (!SHA256.test(r.sha256)) return { field: 'sha256', message: `sha256 must be 64 lowercase hex digits, not ${JSON.stringify(r.sha256)}` };
  if (!CID.test(r.cid)) return { field: 'cid', message: `not an IPFS CID: ${JSON.stringify(r.cid)}` };
  if (!URL.canParse(r.url)) return { field: 'url', message: `not a url: ${JSON.stringify(r.url)}` };
  return null;
}

/** The records of a database file; a missing file has none. Throws TreeError naming file:line. */
export function readMirrorDb(file: string): MirrorRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new TreeError(`${display(file)}: ${(e as Error).message}`);
  }
  return parseMirrorDb(text, file);
}

export function parseMirrorDb(text: string, file: string): MirrorRecord[] {
  let rows: Array<{ record: string[]; info: { lines: number } }>;
  try {
    rows = parse(text, { info: true, relax_column_count: true, skip_empty_lines: true, bom: true }) as unknown as typeof rows;
  } catch (e) {
    const line = (e as { lines?: number }).lines;
    const why = (e as Error).message.replace(/ at line \d+$| on line \d+$/, '');
    throw line ? at(file, line, `not CSV: ${why}`) : new TreeError(`${display(file)}: not CSV: ${why}`);
  }
  if (rows.length === 0) return [];
  const [head, ...data] = rows;
  if (head!.record.join(',') !== HEADER.join(',')) {
    throw at(file, head!.info.lines, `the first line must be the header "${HEADER.join(',')}", not ${JSON.stringify(head!.record.join(','))}`);
  }
  return data.map(({ record, info }) => {
    if (record.length !== HEADER.length) throw at(file, info.lines, `a row has ${HEADER.length} fields (sha256,cid,url), this one ${record.length}`);
    const r = { sha256: record[0]!, cid: record[1]!, url: record[2]! };
    const problem = recordProblem(r);
    if (problem) throw at(file, info.lines, problem.message);
    return r;
  });
}

function compare(a: MirrorRecord, b: MirrorRecord): number {
  return byBytes(a.sha256, b.sha256) || byBytes(a.cid, b.cid);
}

/** Sorted by sha256 then cid, one row per pair: the first met is kept. */
export function normalize(records: MirrorRecord[]): MirrorRecord[] {
  const seen = new Set<string>();
  const out: MirrorRecord[] = [];
  for (const r of records) {
    const key = `${r.sha256} ${r.cid}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(r);
  }
  return out.sort(compare);
}

function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function formatMirrorDb(records: MirrorRecord[]): string {
  return [HEADER.join(','), ...normalize(records).map((r) => [r.sha256, r.cid, r.url].map(csvField).join(','))].join('\n') + '\n';
}

/**
 * Add records to the database (created if need be); rows already there
 * stay as they are. Returns the records that were new.
 */
export async function addMirrorRecords(file: string, add: MirrorRecord[]): Promise<MirrorRecord[]> {
  for (const r of add) {
    const problem = recordProblem(r);
    if (problem) throw new Error(`cannot record ${r.sha256} in ${display(file)}: ${problem.message}`);
  }
  return withLock(file, () => {
    const old = readMirrorDb(file);
    const have = new Set(old.map((r) => `${r.sha256} ${r.cid}`));
    const fresh = normalize(add).filter((r) => !have.has(`${r.sha256} ${r.cid}`));
    if (fresh.length === 0 && fs.existsSync(file)) return fresh;
    fs.mkdirSync(path.dirname(file), { recursive: true });
    withTemporaryFile(file, (tmp) => {
      fs.writeFileSync(tmp, formatMirrorDb([...old, ...fresh]), { flush: true });
      fs.renameSync(tmp, file);
    });
    return fresh;
  });
}

const LOCK_WAIT_MS = 30_000;

/** One writer at a time: a lock directory beside the database, taken by mkdir. */
async function withLock<T>(file: string, f: () => T): Promise<T> {
  const lock = path.join(path.dirname(file), `.${path.basename(file)}.lock`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const start = Date.now();
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (Date.now() - start > LOCK_WAIT_MS) {
        throw new Error(`${display(file)} is locked by another writer (${display(lock)}); if none is running, remove it: rmdir ${lock}`, { cause: e });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return f();
  } finally {
    fs.rmdirSync(lock);
  }
}

/** The records of a database by sha256, for lookups during a fetch. */
export class MirrorDb {
  readonly file: string;
  private readonly bySha = new Map<string, MirrorRecord[]>();

  constructor(file: string, records: MirrorRecord[]) {
    this.file = file;
    for (const r of records) {
      const list = this.bySha.get(r.sha256) ?? [];
      list.push(r);
      this.bySha.set(r.sha256, list);
    }
  }

  static load(file: string): MirrorDb {
    return new MirrorDb(file, readMirrorDb(file));
  }

  lookup(sha256: string): MirrorRecord[] {
    return this.bySha.get(sha256) ?? [];
  }
}

export { treeRoot };

/**
 * The mirror database to use for a package (or the tree around a directory):
 * $PKG_MIRROR_DB if set, else mirrors/ipfs.csv beside the tree's pkg/.
 */
export function mirrorDbPath(start: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const db = settings(env).mirrorDb;
  if (db) return path.resolve(db);
  const root = treeRoot(start);
  return root ? path.join(root, 'mirrors', DB_NAME) : null;
}
