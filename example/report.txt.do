redo-ifchange filelist
counts=$(sed 's/\.txt$/.count/' filelist)
redo-ifchange $counts
total=0
for c in $counts; do
	n=$(cat "$c")
	total=$((total + n))
	printf '%-24s %6d\n' "${c%.count}" "$n"
done
printf '%-24s %6d\n' total "$total"
