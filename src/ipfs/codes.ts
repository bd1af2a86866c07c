/**
 * The multicodec and multihash codes the IPFS code reads and writes
 * (https://github.com/multiformats/multicodec/blob/master/table.csv), named
 * once: the modules that use them load none of multiformats' codecs just
 * for a number.
 */
export const IDENTITY = 0x00;
export const SHA256 = 0x12;
export const RAW = 0x55;
export const DAG_PB = 0x70;
export const DAG_CBOR = 0x71;
