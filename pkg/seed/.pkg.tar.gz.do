# The seed is not built from source: its tarball is made reproducibly by
# bootstrap/make-seed (tcc, musl, GNU make and busybox from pinned Debian
# packages) and taken from the distfile store by the sha256 in fetch.
redo-ifchange fetch
if ! do-fetch -o . fetch; then
	echo "pkg/seed: the seed is not in the distfile store: run bootstrap/make-seed (it makes the same bytes on any machine)" >&2
	exit 5
fi
mv seed.tar.gz "$3"
