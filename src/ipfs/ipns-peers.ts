/**
 * IPNS records between connected peers, without a DHT: an IPNS router
 * that keeps the records published here in the datastore and serves them
 * over libp2p-fetch (`/libp2p/fetch/0.0.1`) under the key
 * `/peerpkgs-ipns/<routing key in base32>`, and that asks every connected
 * peer for a name's record when resolving.
 *
 * What a peer answers is only a candidate: each record is checked with
 * @helia/ipns' validator against the routing key (the name's public key
 * signed it, it has not expired), and of the valid ones the best (highest
 * sequence, then longest validity) wins. When only invalid records came
 * back, one of them is returned so that the resolver refuses it as
 * invalid, and says so, rather than calling the name unknown.
 */
import type { Libp2p } from '@libp2p/interface';
import type { Fetch } from '@libp2p/fetch';
import type { Datastore } from 'interface-datastore';
import type { IPNSRouting, IPNSRoutingGetOptions, IPNSRoutingPutOptions } from '@helia/ipns';
import type { Keychain } from '@helia/interface';

export const FETCH_PREFIX = '/peerpkgs-ipns/';

type Ipns = typeof import('@helia/ipns');

export interface PeerRoutingDeps {
  libp2p: Libp2p<{ fetch: Fetch }>;
  datastore: Datastore;
  keychain: Keychain;
  ipns: Ipns;
  Key: typeof import('interface-datastore').Key;
  base32: typeof import('multiformats/bases/base32').base32;
}

export class PeerIpnsRouting implements IPNSRouting {
  private readonly d: PeerRoutingDeps;

  constructor(d: PeerRoutingDeps) {
    this.d = d;
    d.libp2p.services.fetch.registerLookupFunction(FETCH_PREFIX, async (key) => {
      const name = new TextDecoder().decode(key).slice(FETCH_PREFIX.length);
      if (!/^b[a-z2-7]+$/.test(name)) return undefined;
      try {
        return await d.datastore.get(this.dsKey(name));
      } catch {
        return undefined;
      }
    });
  }

  private dsKey(name: string) {
    return new this.d.Key(`/peerpkgs-ipns/${name}`);
  }

  private name(routingKey: Uint8Array): string {
    return this.d.base32.encode(routingKey);
  }

  async put(routingKey: Uint8Array, marshaledRecord: Uint8Array, _opts?: IPNSRoutingPutOptions): Promise<void> {
    await this.d.datastore.put(this.dsKey(this.name(routingKey)), marshaledRecord);
  }

  async get(routingKey: Uint8Array, opts: IPNSRoutingGetOptions = {}): Promise<Uint8Array> {
    const key = FETCH_PREFIX + this.name(routingKey);
    const peers = [...new Map(this.d.libp2p.getConnections().map((c) => [c.remotePeer.toString(), c.remotePeer])).values()];
    const answers = await Promise.all(
      peers.map(async (p) => {
        try {
          return (await this.d.libp2p.services.fetch.fetch(p, key, { signal: opts.signal })) ?? null;
        } catch {
          return null;
        }
      }),
    );
    const found = answers.filter((a): a is Uint8Array => a !== null);
    if (found.length === 0) throw new Error(`no connected peer has a record for this name (asked ${peers.length})`);
    const valid: { bytes: Uint8Array; entry: Awaited<ReturnType<Ipns['ipnsValidator']>> }[] = [];
    for (const bytes of found) {
      try {
        valid.push({ bytes, entry: await this.d.ipns.ipnsValidator(routingKey, bytes, this.d.keychain) });
      } catch {
        // refused: signed by another key, expired, or malformed
      }
    }
    if (valid.length === 0) return found[0]!;
    return valid[
      this.d.ipns.ipnsSelector(
        routingKey,
        valid.map((v) => v.entry),
      )
    ]!.bytes;
  }

  toString(): string {
    return 'PeerIpnsRouting()';
  }
}
