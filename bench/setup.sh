# bench/setup.sh -- sourced by bench/run (make bench) and bench/instr (make
# bench-instr) from the checkout root: installs the Node peer with its
# native add-ons (`npm ci` in bench/node, pinned by its lock file, again only
# when that file changes) and raises the open-file limit for the
# 10,000-connection idle workload; exports BENCH_NOFILE, the limit set.

peer=bench/node
stamp=$peer/node_modules/.lock-stamp
if ! [ -f "$stamp" ] || ! cmp -s "$peer/package-lock.json" "$stamp"; then
  echo "installing the Node peer (npm ci in $peer)"
  (cd "$peer" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$peer/package-lock.json" "$stamp"
fi

# Servers and the load generator inherit this limit: 10,000 idle
# connections need as many descriptors on each side.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=65536
[ "$hard" -gt 65536 ] && hard=65536
ulimit -n "$hard"
if [ "$hard" -lt 10200 ]; then
  echo "bench: open-file limit $hard: the idle workload uses $((hard - 200)) connections" >&2
fi
BENCH_NOFILE=$hard
export BENCH_NOFILE
