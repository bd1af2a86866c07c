/**
 * Built-in modules loaded on first use. A no-op build must start and finish
 * in tens of milliseconds; loading net, child_process and crypto up front
 * costs several of them and a no-op needs none.
 */
export const crypto = (): typeof import('node:crypto') => process.getBuiltinModule('node:crypto');
export const childProcess = (): typeof import('node:child_process') => process.getBuiltinModule('node:child_process');
export const net = (): typeof import('node:net') => process.getBuiltinModule('node:net');
