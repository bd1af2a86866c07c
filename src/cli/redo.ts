// Entry point of bin/redo*: cache compiled code first, since these start
// once per redo-* command a .do file runs outside the fast path.
import { enableCompileCache } from 'node:module';
import { restoreWrapperEnv } from './wrapper-env.ts';

enableCompileCache?.();
restoreWrapperEnv();
const { run } = await import('./redo-main.ts');
await run(process.argv.slice(2));
