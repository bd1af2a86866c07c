/**
 * The pkghash texts of what was built: `$PEERPKGS_HOME/pkghash-texts/<pkghash>`
 * holds the canonical text whose sha256 is that pkghash (tree/pkghash.ts).
 * A build that succeeds (or a substitution) records its package's text and
 * every dependency's, so that `peerpkgs why` can set the text an output was
 * built from beside today's, down through the dependencies that changed.
 * Which pkghash an output was built from is the redo state's record
 * (outputs.ts's builtFromPkghash); this only says what that hash was made of.
 *
 * Named by their content, each file is written once, through a temporary
 * and a rename, and checked against its name when read: a damaged one is
 * no record at all.
 */
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { homeLayout } from '../home.ts';
import { withTemporaryFile } from '../archive/temporary.ts';
import { sha256 } from '../tree/package.ts';

/** Record texts (pkghash → text) not recorded yet. */
export function recordTexts(home: string, texts: Map<string, string>): void {
  const dir = homeLayout.pkghashTexts(home);
  let made = false;
  for (const [hash, text] of texts) {
    const file = path.join(dir, hash);
    if (fs.existsSync(file)) continue;
    if (!made) fs.mkdirSync(dir, { recursive: true });
    made = true;
    withTemporaryFile(file, (tmp) => {
      fs.writeFileSync(tmp, text);
      fs.renameSync(tmp, file);
    });
  }
}

/** The text of `pkghash`, if recorded (and undamaged). */
export function recordedText(home: string, pkghash: string): string | null {
  if (!/^[0-9a-f]{64}$/.test(pkghash)) return null;
  try {
    const text = fs.readFileSync(path.join(homeLayout.pkghashTexts(home), pkghash), 'utf8');
    return sha256(text) === pkghash ? text : null;
  } catch {
    return null;
  }
}
