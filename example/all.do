# The example project: a word-count report over words/*.txt.
# Shows default.EXT.do rules, a generated file list with redo-always and
# redo-stamp, and dependencies through several levels.
redo-ifchange report.txt
cat report.txt >&2
