/**
 * peerpkgs' own version, as package.json gives it: what an SBOM names as
 * its tool and a provenance as its builder's version, read from the one
 * place a release changes it.
 */
const fs = process.getBuiltinModule('node:fs');

// src/version.ts and dist/version.js are both one level below the checkout
export const PEERPKGS_VERSION: string = (JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
