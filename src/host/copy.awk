# Copies SRC DST [SRC DST...] (the arguments), every write checked: awk stops, exit
# 2, on a failed one; exit 1 when a SRC cannot be read. Prints `sets` when a line
# refers to an ipset (the match or the target): persist_checked then tests the files
# in a namespace of their own. The one way persisted files are written
# (persist_checked). Tested in programs.host.test.ts.
BEGIN {
  for (i = 1; i + 1 < ARGC; i += 2) {
    printf "" > ARGV[i + 1]
    while ((r = (getline l < ARGV[i])) > 0) {
      print l > ARGV[i + 1]
      if (l ~ /(-m set|-j SET|--match-set|--add-set|--del-set|--map-set)( |$)/) sets = 1
    }
    if (r < 0) { print "cannot read " ARGV[i] > "/dev/stderr"; exit 1 }
    close(ARGV[i]); close(ARGV[i + 1])
  }
  if (sets) print "sets"
  exit 0 }
