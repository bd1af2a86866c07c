/**
 * engine/: redo: targets, .do lookup, state, the out-of-date decision, the
 * jobserver, locks and the worker protocol. Knows nothing of packages:
 * they come in through the Rule interface (rules.ts).
 *
 * The face of the folder: another folder imports these modules, or this
 * file, and no other module of it (eslint.config.js says why).
 * Private: commit.ts, env.ts, job.ts, ood.ts, paths.ts, slots.ts, waits.ts, worker.ts.
 */
export * from './dofile.ts';
export * from './engine.ts';
export * from './fifo.ts';
export * from './jobserver.ts';
export * from './lazy.ts';
export * from './locks.ts';
export * from './log.ts';
export * from './plugins.ts';
export * from './protocol.ts';
export * from './queries.ts';
export * from './rules.ts';
export * from './state.ts';
