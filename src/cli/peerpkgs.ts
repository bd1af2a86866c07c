// Entry point of bin/peerpkgs and its p2pkgs-named links.
import { enableCompileCache } from 'node:module';

enableCompileCache?.();
const { run } = await import('./peerpkgs-main.ts');
await run(process.argv.slice(2));
