/**
 * OCI image export: a closure's outputs as an OCI image layout (a
 * directory: oci-layout, index.json, blobs/sha256/), or that layout as one
 * `oci-archive` tar when the path ends in .tar.
 *
 * One layer per package, in merge order (each after its run-deps), as
 * nix2container and dockerTools.buildLayeredImage make them: images that
 * share a package share its layer, in registries and on disk. The layers
 * hold the merge's plan (merge.ts), not the raw outputs: package i's layer
 * is every path of the plan that package i provides, at the place and with
 * the directory modes the plan gives it. So no two layers disagree on a
 * path, the image's root is the merge whatever the layer order, and a
 * strategy's loser is in no layer at all (an upper layer could otherwise
 * bring back what --prefer-existing or --namespaced took away). A package
 * untouched by conflicts gets the layer of its output alone.
 *
 * Reproducible: the same outputs give the same manifest digest wherever and
 * whenever they are exported. Layers are packed as package archives are
 * (archive/pack.ts: sorted, mtime 0, uid/gid 0, permission bits only) but
 * without the manifest entry and uncompressed, as nix2container's are: a
 * compressor's bytes may change between zlib versions, and a layer's
 * digest must not. The config says created 1970-01-01 and holds no host
 * data; JSON is written with keys in a fixed order and no whitespace.
 */
const { createHash } = process.getBuiltinModule('node:crypto');
const fs = process.getBuiltinModule('node:fs');
import * as path from 'node:path';
import { packDir } from '../archive/pack.ts';
import { temporaryName, forget } from '../archive/temporary.ts';
import { planMerge, writeMerged, replaceDir, MergeError, type DirNode, type MergePlan, type Output, type Settled, type Strategy } from '../archive/merge.ts';
import { removeTreeSync } from '../archive/files.ts';

export const LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar';
export const ANNOTATION_NAME = 'org.peerpkgs.package.name';
export const ANNOTATION_PKGHASH = 'org.peerpkgs.pkghash';
export const ANNOTATION_OUTPUT = 'org.peerpkgs.output.sha256';
/** What a container runtime's default is, so that programs find the usual places. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const EPOCH = '1970-01-01T00:00:00Z';

export interface OciOptions {
  /** A directory for the image layout, or FILE.tar for an oci-archive; replaced only once complete. */
  out: string;
  /** The closure's unpacked outputs, each after its run-deps. */
  packages: Output[];
  strategy?: Strategy;
  entrypoint?: string[];
  cmd?: string[];
  /** K=V, added to (or replacing) PATH=DEFAULT_PATH. */
  env?: string[];
  /** NAME[:TAG], TAG defaulting to latest. */
  tag?: string;
}

export interface OciLayer {
  name: string;
  digest: string;
  size: number;
}

export interface OciResult {
  /** Of the image manifest: the image's identity. */
  digest: string;
  layers: OciLayer[];
  settled: Settled[];
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** NAME[:TAG] split as docker does: the tag is after the last colon that follows the last slash. */
export function parseTag(tag: string): { name: string; tag: string } {
  const slash = tag.lastIndexOf('/');
  const colon = tag.lastIndexOf(':');
  const [name, t] = colon > slash ? [tag.slice(0, colon), tag.slice(colon + 1)] : [tag, 'latest'];
  // the OCI layout's ref.name grammar for a tag (what umoci and skopeo accept)
  if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(t)) throw new MergeError(`--tag ${tag}: the tag ${JSON.stringify(t)} is not [A-Za-z0-9_][A-Za-z0-9._-]*`);
  if (name === '' || /\s/.test(name)) throw new MergeError(`--tag ${tag}: not NAME[:TAG]`);
  return { name, tag: t };
}

/** The config's Env: PATH first, then the user's, a later K=V replacing an earlier one. */
export function imageEnv(env: string[] = []): string[] {
  const vars = new Map<string, string>([['PATH', DEFAULT_PATH]]);
  for (const kv of env) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new MergeError(`--env ${kv}: not K=V`);
    vars.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return [...vars].map(([k, v]) => `${k}=${v}`);
}

/** Node's name for the machine, as OCI (GOARCH) spells it. */
function architecture(): string {
  const goarch: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return goarch[process.arch] ?? process.arch;
}

/**
 * The part of the plan package `i` provides: its layer. A file several
 * packages provide alike is taken from package i's own output, so that the
 * layer keeps i's hardlinks as i's output has them.
 */
function layerOf(plan: MergePlan, dir: DirNode, i: number, rel = ''): DirNode {
  const mine: DirNode = { ...dir, children: new Map() };
  for (const [name, n] of dir.children) {
    const k = n.providers.indexOf(i);
    if (k < 0) continue;
    const p = rel ? `${rel}/${name}` : name;
    // in a layer, .wh.X deletes X of the layers below
    if (name.startsWith('.wh.')) throw new MergeError(`${plan.outputs[i]!.name} provides ${p}: an image layer cannot hold it, .wh. names are whiteouts in OCI layers`);
    mine.children.set(name, n.type === 'directory' ? layerOf(plan, n, i, p) : { ...n, src: n.sources[k]! });
  }
  return mine;
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export async function exportOci(opts: OciOptions): Promise<OciResult> {
  const plan = planMerge(opts.packages, opts.strategy ?? 'error');
  const ref = opts.tag !== undefined ? parseTag(opts.tag) : null;
  const env = imageEnv(opts.env);
  const out = path.resolve(opts.out);
  const archive = out.endsWith('.tar');
  if (!archive) checkReplaceable(out);

  fs.mkdirSync(path.dirname(out), { recursive: true });
  // named as temporaries are, so that what a SIGKILL leaves is swept
  const layout = temporaryName(out);
  fs.mkdirSync(layout);
  // the layers' hardlink trees go next to the output store, so that linking works
  const near = opts.packages.length > 0 ? path.dirname(opts.packages[0]!.dir) : path.dirname(out);
  let tree: string | null = null;
  // ^C makes the CLI exit while packing: nothing may stay behind
  const onExit = () => {
    if (tree !== null) removeTreeSync(tree);
    removeTreeSync(layout);
  };
  process.once('exit', onExit);
  try {
    const blobs = path.join(layout, 'blobs/sha256');
    fs.mkdirSync(blobs, { recursive: true });
    const blob = (data: string): { digest: string; size: number } => {
      const digest = sha256(data);
      fs.writeFileSync(path.join(blobs, digest), data);
      return { digest: `sha256:${digest}`, size: Buffer.byteLength(data) };
    };

    const layers: Descriptor[] = [];
    const diffIds: string[] = [];
    for (let i = 0; i < opts.packages.length; i++) {
      const p = opts.packages[i]!;
      tree = temporaryName(path.join(near, 'oci-layer'));
      fs.mkdirSync(tree);
      const part: MergePlan = { ...plan, root: layerOf(plan, plan.root, i) };
      writeMerged(part, tree);
      const packed = await packDir(tree, path.join(blobs, 'layer'), { peerpkgsArchive: false });
      removeTreeSync(tree);
      forget(tree);
      tree = null;
      fs.renameSync(path.join(blobs, 'layer'), path.join(blobs, packed.sha256));
      const annotations: Record<string, string> = { [ANNOTATION_NAME]: p.name, [ANNOTATION_OUTPUT]: p.sha256 };
      if (p.pkghash !== undefined) annotations[ANNOTATION_PKGHASH] = p.pkghash;
      layers.push({ mediaType: LAYER_MEDIA_TYPE, digest: `sha256:${packed.sha256}`, size: packed.size, annotations });
      // uncompressed: the diff_id is the layer's own digest
      diffIds.push(`sha256:${packed.sha256}`);
    }

    const imageConfig: Record<string, unknown> = { Env: env };
    if (opts.entrypoint !== undefined) imageConfig.Entrypoint = opts.entrypoint;
    if (opts.cmd !== undefined) imageConfig.Cmd = opts.cmd;
    const config = blob(JSON.stringify({ created: EPOCH, architecture: architecture(), os: 'linux', config: imageConfig, rootfs: { type: 'layers', diff_ids: diffIds } }));
    const manifest = blob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config.digest, size: config.size },
        layers,
      }),
    );
    const annotations: Record<string, string> = { 'org.opencontainers.image.ref.name': ref?.tag ?? 'latest' };
    // the full name, for containerd and nerdctl, which import by it
    if (ref !== null) annotations['io.containerd.image.name'] = `${ref.name}:${ref.tag}`;
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: manifest.digest,
          size: manifest.size,
          platform: { architecture: architecture(), os: 'linux' },
          annotations,
        },
      ],
    };
    fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify(index));
    fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    // fixed modes, not the umask's: the archive packs them
    for (const d of [layout, path.join(layout, 'blobs'), blobs]) fs.chmodSync(d, 0o755);
    for (const f of ['index.json', 'oci-layout']) fs.chmodSync(path.join(layout, f), 0o644);
    for (const f of fs.readdirSync(blobs)) fs.chmodSync(path.join(blobs, f), 0o644);

    if (archive) {
      await packDir(layout, out, { peerpkgsArchive: false });
      removeTreeSync(layout);
    } else {
      replaceDir(layout, out);
    }
    return { digest: manifest.digest, layers: layers.map((l, i) => ({ name: opts.packages[i]!.name, digest: l.digest, size: l.size })), settled: plan.settled };
  } catch (e) {
    if (tree !== null) removeTreeSync(tree);
    removeTreeSync(layout);
    throw e;
  } finally {
    process.off('exit', onExit);
    if (tree !== null) forget(tree);
    forget(layout); // in place, packed, or removed
  }
}

/** An image layout directory is replaced only if it is one (it has oci-layout) or is empty: `-o ~` must not delete a home. */
function checkReplaceable(out: string): void {
  const st = fs.statSync(out, { throwIfNoEntry: false });
  if (st === undefined) return;
  if (!st.isDirectory()) throw new MergeError(`${out} exists and is not a directory: remove it, or name a FILE.tar for an oci-archive`);
  if (!fs.existsSync(path.join(out, 'oci-layout')) && fs.readdirSync(out).length > 0) {
    throw new MergeError(`${out} exists and is not an OCI image layout (it has no oci-layout): remove it or choose another place`);
  }
}
