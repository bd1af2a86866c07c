/**
 * The layers of src/ (eslint.config.js): an import points down, never up
 * nor sideways, and reaches another folder only through its face. Each
 * test lints one module's text, as it would stand at that path.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { ESLint } from 'eslint';
import { REPO } from './helpers.ts';

const eslint = new ESLint({ cwd: REPO });

/** The messages of the layer rules for `code` as the module src/`file`. */
async function layerProblems(file: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: path.join(REPO, 'src', file) });
  return result!.messages.filter((m) => m.ruleId === 'no-restricted-imports' || m.ruleId === 'no-restricted-syntax').map((m) => m.message);
}

describe('the layers of src/', function () {
  it('lets a folder import the layers below it, through their faces', async () => {
    const code = `import { homeLayout } from '../home.ts';
import { parseRec } from '../tree/rec.ts';
import type { Rule } from '../engine/index.ts';
export const f = async () => [homeLayout, parseRec, await import('../archive/pack.ts')] as unknown as Rule;
`;
    assert.deepEqual(await layerProblems('fetch/x.ts', code), []);
  });

  it('refuses an import of a layer above', async () => {
    const [problem] = await layerProblems('fetch/x.ts', `export { outputDir } from '../store/outputs.ts';\n`);
    assert.match(problem!, /fetch\/ may import only from the layers below its own/);
  });

  it('refuses an import of a folder of the same layer', async () => {
    const [problem] = await layerProblems('fetch/x.ts', `import { runSandboxed } from '../sandbox/bwrap.ts';\nexport default runSandboxed;\n`);
    assert.match(problem!, /fetch\/ may import only from the layers below its own/);
  });

  it('counts an import of types alone', async () => {
    const [problem] = await layerProblems('tree/x.ts', `import type { Settings } from '../settings.ts';\nexport type S = Settings;\n`);
    assert.match(problem!, /tree\/ may import only from the layers below its own/);
  });

  it('counts a lazy import()', async () => {
    const [problem] = await layerProblems('store/x.ts', `export const f = () => import('../cache/substitute.ts');\n`);
    assert.match(problem!, /store\/ may import only from the layers below its own/);
  });

  it('refuses a module another folder keeps private, imported or loaded', async () => {
    const problems = await layerProblems('cli/x.ts', `import { commit } from '../engine/commit.ts';\nexport const f = () => [commit, import('../ipfs/gateway.ts')];\n`);
    assert.deepEqual(
      problems.map((p) => /^(?:'[^']*' import is restricted from being used by a pattern\. )?(\w+)\/ is imported through its face/.exec(p)?.[1]),
      ['engine', 'ipfs'],
    );
  });

  it('holds the modules of src/ itself to their layers too', async () => {
    const [problem] = await layerProblems('settings.ts', `import { homeLayout } from './home.ts';\nexport default homeLayout;\n`);
    assert.match(problem!, /settings\.ts may import only from the layers below its own/);
  });
});
