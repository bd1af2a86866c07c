# Which inputs exist: checked every run, but the stamp means dependents
# rebuild only when the list really changes.
redo-always
ls words/*.txt >"$3"
redo-stamp <"$3"
