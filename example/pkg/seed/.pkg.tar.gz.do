# The example tree's seed: Debian's busybox-static from this machine, a
# shell and core utilities, packed as a package (bin/busybox and a link per
# applet): the example builds with nothing but this machine. The real tree's
# seed, pkg/seed, is made reproducibly by bootstrap/make-seed.
redo-ifchange /usr/bin/busybox
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
mkdir "$d/bin"
cp /usr/bin/busybox "$d/bin/busybox"
for a in $(/usr/bin/busybox --list); do
	[ "$a" = busybox ] || ln -s busybox "$d/bin/$a"
done
tar -C "$d" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -czf "$3" bin
