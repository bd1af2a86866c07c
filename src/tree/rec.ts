/**
 * GNU recutils' rec format, read by our own parser so that building needs
 * no recutils: fetch files and mirror lists are rec files.
 *
 * Read as the recutils manual defines it: records separated by blank lines,
 * `#` comment lines, `Name: value` fields, `+` lines that continue a value
 * on a new line, a trailing backslash that joins two physical lines, and
 * record descriptors (records of `%` fields, starting with `%rec`). A
 * descriptor applies to the records after it until the next one; its
 * `%mandatory` is enforced, its other properties are accepted and ignored,
 * and it is never returned as data.
 */
import { TreeError } from './errors.ts';

export interface RecField {
  name: string;
  value: string;
  line: number;
}

export interface RecRecord {
  line: number; // of its first field
  fields: RecField[];
}

// the blank after the colon is the separator, not part of the value
const FIELD = /^([a-zA-Z%][a-zA-Z0-9_]*):[ \t]?(.*)$/;
const BLANK = /^[ \t]*$/;

/** The data records of `text`; `file` names it in errors (`file:line: …`). */
export function parseRec(text: string, file: string): RecRecord[] {
  const lines = text.split(/\r?\n/);
  const records: RecRecord[] = [];
  const fail = (line: number, message: string) => new TreeError(`${file}:${line}: ${message}`);
  let mandatory = new Map<string, number>(); // field name → line of its %mandatory
  let current: RecRecord | null = null;

  const finish = (rec: RecRecord): void => {
    if (rec.fields[0].name.startsWith('%')) {
      mandatory = readDescriptor(rec, fail);
      return;
    }
    const stray = rec.fields.find((f) => f.name.startsWith('%'));
    if (stray) throw fail(stray.line, `${stray.name} belongs in a record descriptor, not among data fields`);
    for (const [name, line] of mandatory) {
      if (!rec.fields.some((f) => f.name === name)) {
        throw fail(rec.line, `record lacks the mandatory field '${name}' (%mandatory at line ${line})`);
      }
    }
    records.push(rec);
  };

  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const text = lines[i];
    if (BLANK.test(text)) {
      if (current) finish(current);
      current = null;
      continue;
    }
    if (text.startsWith('#')) continue;
    // a value ending in a backslash goes on, unbroken, on the next line
    let value = text;
    while (value.endsWith('\\') && i + 1 < lines.length) value = value.slice(0, -1) + lines[++i];
    if (value.startsWith('+')) {
      const field = current?.fields.at(-1);
      if (!field) throw fail(n, "a '+' continuation line with no field before it");
      field.value += '\n' + value.slice(value.startsWith('+ ') ? 2 : 1);
      continue;
    }
    const m = FIELD.exec(value);
    if (!m) throw fail(n, `expected 'Name: value', a '+' continuation, a '#' comment or a blank line, not ${JSON.stringify(text)}`);
    current ??= { line: n, fields: [] };
    current.fields.push({ name: m[1], value: m[2], line: n });
  }
  if (current) finish(current);
  return records;
}

function readDescriptor(rec: RecRecord, fail: (line: number, message: string) => TreeError): Map<string, number> {
  const data = rec.fields.find((f) => !f.name.startsWith('%'));
  if (data) throw fail(data.line, `field '${data.name}' in a record descriptor; leave a blank line before the data records`);
  if (!rec.fields.some((f) => f.name === '%rec')) throw fail(rec.line, 'record descriptor without a %rec field');
  const mandatory = new Map<string, number>();
  for (const f of rec.fields) {
    if (f.name !== '%mandatory') continue;
    for (const name of f.value.split(/[ \t\n]+/)) if (name && !mandatory.has(name)) mandatory.set(name, f.line);
  }
  return mandatory;
}
