/**
 * `peerpkgs config`: the effective value of every variable and where it
 * came from (the environment, a line of $PEERPKGS_HOME/config, or the
 * default). settings.ts reads and checks them; this only prints.
 */
const fs = process.getBuiltinModule('node:fs');
import { printable } from '../engine/log.ts';
import { settingOrigins, type Origin } from '../settings.ts';
import { EXIT, UsageError, parse, printJson } from './frame.ts';

function from(o: Origin, file: string): string {
  if (o.source === 'file') return `${file}:${o.line}`;
  return o.source === 'default' && o.value === null ? 'unset' : o.source;
}

export async function configCmd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } });
  if (positionals.length) throw new UsageError(`unexpected argument ${positionals[0]}`);
  const { file, origins } = settingOrigins();
  if (values.json) {
    printJson({ file, settings: origins });
    return EXIT.ok;
  }
  const width = Math.max(...origins.map((o) => o.name.length));
  const lines = [`configuration file: ${file}${fs.existsSync(file) ? '' : ' (none)'}`];
  for (const o of origins) lines.push(`${o.name.padEnd(width)}  ${o.value ? `${o.value}  ` : ''}(${from(o, file)})`);
  process.stdout.write(lines.map((l) => printable(l)).join('\n') + '\n');
  return EXIT.ok;
}
