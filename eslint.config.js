// Lint: the recommended JS and TypeScript rules, no style opinions (tsc checks
// types), and the layers of src/: which folder may import which.
import * as fs from 'node:fs';
import * as path from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The layers of src/, top to bottom: a folder, or a module of src/ itself,
// imports only from the layers below its own, and the folders of one layer
// do not import each other. Every import counts, `import type` and
// `await import()` too: a lazy load is still a dependency.
const LAYERS = [
  ['cli'], // a command table: nothing imports it
  ['seed'], // the seed rebuilt by the tree, with an engine of its own
  ['pkgrules'], // a package's build: substitute, fetch, sandbox, store the output
  ['export', 'cache'],
  ['store', 'mirrors'],
  ['ipfs'],
  ['sandbox', 'fetch'],
  ['home.ts'], // the $PEERPKGS_HOME layout: fetch, sandbox and ipfs name their directories here
  ['settings.ts'], // every PKG_* and PEERPKGS_* variable, read once; uses tree's rec parser
  ['tree'],
  ['engine'], // knows nothing of packages: they come in through its Rule interface
  ['archive'], // with the temporaries and file primitives every layer shares
  ['errors.ts', 'version.ts'],
];

const src = path.join(import.meta.dirname, 'src');

// A folder's face is its index.ts: the modules it re-exports. Another folder
// imports the index or one of those modules, never another module of the
// folder, so that what is private may change without looking outside.
// Naming the module rather than the index is allowed on purpose: an ES
// module is loaded whole, with everything it imports, so `../tree/index.ts`
// would load all of tree/ where bin/redo, which starts once for every
// redo-* command a .do runs outside the fast path, needs two of its
// modules (the hot entry points load the modules they loaded before the
// faces were drawn, no more); and a lazy `await import()` of one module
// of cache/ would become a load of all of cache/.
function face(folder) {
  const index = path.join(src, folder, 'index.ts');
  if (!fs.existsSync(index)) throw new Error(`src/${folder}/index.ts is missing: every folder of src/ has one, its public face`);
  const text = fs.readFileSync(index, 'utf8');
  return [...text.matchAll(/^export\s[^;]*?from\s+'\.\/([\w-]+)\.ts'/gm)].map((m) => m[1]);
}

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const isFolder = (unit) => !unit.endsWith('.ts');

/**
 * The rules that hold `unit` to its layer: ESLint's own no-restricted-imports
 * for static imports (`import type` and `export … from` included), and
 * no-restricted-syntax for import() expressions, which the former does not
 * see. No plugin: eslint-plugin-import (no-restricted-paths) names no
 * ESLint after 9 among its peers, and it and eslint-plugin-boundaries want
 * a resolver, where here every import names its folder in its specifier.
 */
function layerRules(unit, layer) {
  const from = isFolder(unit) ? '\\.\\./' : '\\./'; // how a module of the unit names one of src/
  const above = LAYERS.slice(0, layer + 1)
    .flat()
    .filter((u) => u !== unit);
  const below = LAYERS.slice(layer + 1).flat();
  const name = isFolder(unit) ? `${unit}/` : unit;
  const patterns = [];
  if (above.length) {
    patterns.push({
      regex: `^${from}(?:${above.map((u) => (isFolder(u) ? `${u}/` : `${escape(u)}$`)).join('|')})`,
      message: `${name} may import only from the layers below its own (${below.join(', ')}): the layers are in eslint.config.js`,
    });
  }
  for (const folder of below.filter(isFolder)) {
    const open = ['index', ...face(folder)];
    patterns.push({
      regex: `^${from}${folder}/(?!(?:${open.map(escape).join('|')})\\.ts$)`,
      message: `${folder}/ is imported through its face: ${folder}/index.ts or a module it re-exports`,
    });
  }
  // esquery's regular expressions end at the first slash: write it \x2F
  const syntax = patterns.map((p) => ({
    selector: `ImportExpression[source.value=/${p.regex.replaceAll('/', '\\x2F')}/]`,
    message: p.message,
  }));
  return {
    files: [isFolder(unit) ? `src/${unit}/**/*.ts` : `src/${unit}`],
    rules: {
      'no-restricted-imports': ['error', { patterns }],
      'no-restricted-syntax': ['error', ...syntax],
    },
  };
}

// every folder and module of src/ has its place
const placed = LAYERS.flat();
for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
  const unit = entry.name;
  if ((entry.isDirectory() || unit.endsWith('.ts')) && !placed.includes(unit)) {
    throw new Error(`src/${unit} has no layer: add it to LAYERS in eslint.config.js`);
  }
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'test/fixtures/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // CommonJS files (mocha's reporter) run in Node with its globals
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable', process: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...LAYERS.flatMap((units, layer) => units.map((unit) => layerRules(unit, layer))),
);
