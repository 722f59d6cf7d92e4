#!/bin/bash
# Interleaved A/B runs of weir-bench binaries on a noisy machine.
#
#   bench/scripts/ab.sh ROUNDS EVENTS CORES "q0 q4" path/to/weir-bench-a path/to/weir-bench-b ...
#
# Each round runs every binary once per query, in turn, so a slow spell of the machine hits all
# binaries alike. Prints, per query, each binary's median M events/s over the rounds and the
# median of the per-round ratios to the first binary (the figure to quote), then every run.
# Copy a binary aside (cp target/release/weir-bench /tmp/base) before rebuilding.
set -euo pipefail
if [ $# -lt 5 ]; then
  sed -n 2,9p "$0" >&2
  exit 2
fi
ulimit -l 8192 2>/dev/null || true
rounds=$1; events=$2; cores=$3; queries=$4; shift 4
bins=("$@")
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for r in $(seq "$rounds"); do
  for q in $queries; do
    for b in "${bins[@]}"; do
      t=$("$b" nexmark --query "$q" --events "$events" --cores "$cores" 2>&1 \
        | awk '/throughput/ {print $2 / 1e6}')
      echo "$r $q $(basename "$b") ${t:-nan}" >> "$tmp"
    done
  done
done
names=()
for b in "${bins[@]}"; do names+=("$(basename "$b")"); done
python3 - "$tmp" "${names[@]}" <<'PY'
import collections, math, statistics as st, sys
path, bins = sys.argv[1], sys.argv[2:]
runs = collections.defaultdict(dict)
for line in open(path):
    r, q, b, t = line.split()
    runs[(q, int(r))][b] = float(t)
for q in dict.fromkeys(q for q, _ in sorted(runs, key=lambda k: k[1])):
    rounds = [v for (qq, _), v in sorted(runs.items()) if qq == q]
    ok = [x for x in rounds if all(not math.isnan(x.get(b, math.nan)) for b in bins)]
    if not ok:
        print(q, "no complete round")
        continue
    med = {b: st.median(x[b] for x in ok) for b in bins}
    ratio = {b: st.median(x[b] / x[bins[0]] for x in ok) for b in bins[1:]}
    print(q, " ".join(f"{b}={med[b]:.2f}" for b in bins),
          "| ratio to", bins[0] + ":", " ".join(f"{b}={ratio[b]:.3f}" for b in bins[1:]),
          "| runs:", " ".join(b + ":" + ",".join(f"{x[b]:.1f}" for x in rounds) for b in bins))
PY
