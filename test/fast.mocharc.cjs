// The fast tier of the tests (npm run test:fast), for the edit loop: the
// whole suite of .mocharc.json but the files that need a seed built from
// Debian's packages or IPFS daemons in other processes, which take minutes
// between them; the rest run side by side, as most of a test's time is
// spent waiting for the commands and servers it starts.
'use strict';
const os = require('node:os');
const suite = require('../.mocharc.json');

module.exports = {
  ...suite,
  ignore: [
    'test/realtree.test.ts', // the real tree, on the seed bootstrap/make-seed makes from Debian's packages
    'test/seed-reproduce.test.ts', // that seed rebuilt from the tree, twice (and a small tree's, twice)
    'test/ipfs.test.ts', // IPFS daemons
    'test/mirrors.test.ts', // fetching from IPFS daemons (the mirror database's own tests go with them)
  ],
  parallel: true,
  // more files at once than cores: a file mostly waits
  jobs: Math.max(3, os.availableParallelism()),
};
