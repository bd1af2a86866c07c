/**
 * `peerpkgs verify [--repair] [VENVDIR...]`: what the user sees of
 * store/verify.ts (the output store) and export/venv.ts's checkVenv.
 *
 * Every damaged path is named with its package on stdout, one a line;
 * the caller exits with its own status for "damaged" when something is
 * (left) damaged.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { checkOutput, repairOutput, storedOutputs, type Damage, type OutputCheck } from '../store/verify.ts';
import { homeLayout } from '../home.ts';
import { checkVenv } from '../export/venv.ts';
import { UsageError, parse } from './frame.ts';

export const VERIFY_HELP = `usage: peerpkgs verify [--repair]     check the output store
       peerpkgs verify VENVDIR...     check venvs

Rehashes every unpacked output in $PEERPKGS_HOME/outputs against the
manifest of its archive (type, mode, size, sha256, link target of each
path), and names each path that differs, is missing, or was added, with
its output and package. --repair restores them from the archive each
output was unpacked from, in place, so that venvs and sandbox roots
sharing a file are repaired with it. With VENVDIRs, checks those venvs
against their packages instead (a damaged venv is made again with
bin/venv -o VENVDIR). Exit status 9 when something is damaged.
`;

const where = (p: string) => (p === '' ? '.' : p);

/** Returns true when something is (left) damaged. */
export async function verifyCommand(argv: string[], home: string, out: (s: string) => void): Promise<boolean> {
  const { values, positionals: venvs } = parse(argv, { repair: { type: 'boolean' } });
  const repair = values.repair ?? false;
  if (repair && venvs.length) throw new UsageError('--repair repairs the output store; make a damaged venv again with bin/venv -o VENVDIR');
  const outputsDir = homeLayout.outputs(home);
  let damaged = 0;

  if (venvs.length) {
    for (const v of venvs) {
      // a venv named that is not there is the command line's mistake (exit 2), not a damaged venv
      fs.statSync(v);
      const c = await checkVenv(path.resolve(v), outputsDir);
      for (const d of c.damage) out(`${path.join(v, where(d.path))}: ${d.what}\n`);
      for (const n of c.unknown) out(`${v}: package ${n}: its output is not in the store, its files were not checked (build it)\n`);
      if (c.damage.length) {
        damaged++;
        out(`${v}: damaged: make it again with bin/venv -o ${v}, and run peerpkgs verify --repair for the outputs it shares\n`);
      }
    }
    out(`${venvs.length} venvs checked, ${damaged} damaged\n`);
    return damaged > 0;
  }

  const shas = storedOutputs(outputsDir);
  let repaired = 0;
  for (const sha of shas) {
    const c = await checkOutput(outputsDir, sha);
    const label = `${c.dir}${c.name ? ` (${c.name})` : ''}`;
    if (c.unchecked) out(`${label}: not checked: ${c.unchecked}\n`);
    if (!c.damage.length) continue;
    tell(out, label, c.damage);
    if (!repair) {
      damaged++;
      continue;
    }
    const failed = await repairOutput(c);
    const after: OutputCheck = failed === null ? await checkOutput(outputsDir, sha) : c;
    if (failed === null && !after.damage.length) {
      repaired++;
      out(`${label}: repaired ${c.damage.length} paths from ${c.archive}\n`);
    } else {
      damaged++;
      out(`${label}: cannot repair: ${failed ?? `${after.damage.length} paths still differ`}\n`);
    }
  }
  out(`${shas.length} outputs checked, ${damaged} damaged${repair ? `, ${repaired} repaired` : damaged ? ' (peerpkgs verify --repair restores them)' : ''}\n`);
  return damaged > 0;
}

function tell(out: (s: string) => void, label: string, damage: Damage[]): void {
  for (const d of damage) out(`${label}: ${where(d.path)}: ${d.what}\n`);
}
