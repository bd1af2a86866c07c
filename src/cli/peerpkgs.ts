// Entry point of bin/peerpkgs and its p2pkgs-named links.
// Node's built-in modules are taken with process.getBuiltinModule across
// src/, not imported as ES modules: an ES import of node:fs or node:crypto
// builds a facade that reads every export, so that the lazy parts (fs's
// streams, promises, readline and watchers; crypto's webcrypto and keys)
// load in every command whether it uses them or not.
import { enableCompileCache } from 'node:module';
import { restoreWrapperEnv } from './wrapper-env.ts';

enableCompileCache?.();
restoreWrapperEnv();
const { run } = await import('./peerpkgs-main.ts');
await run(process.argv.slice(2));
