#!/usr/bin/env bash
# The default suite: build the mini-world zoo, run every method's smoke presets, then generate all
# paper tables, the leaderboard and (if available) the HTML report. Finished runs are skipped, so a
# second invocation only does what is missing. Exit status 1 if any run failed.
set -uo pipefail
cd "$(dirname "$0")"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"      # one thread: deterministic, and fair speed ratios
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT="${EFFBENCH_RESULTS:-results}"
TRACKER="${EFFBENCH_TRACKER:-wandb}"
start=$(date +%s)
failed=()

step() { printf '\n==> %s\n' "$*"; }

JOBS="${EFFBENCH_JOBS:-2}"     # independent single-threaded jobs at once (2 cores: 2)
mkdir -p "$OUT/logs"

# the suite: every method's smoke* presets, and the zoo models they name (with their dependencies)
mapfile -t plan < <(python - <<'PY'
import json, subprocess
data = json.loads(subprocess.run(["effbench", "list", "--json"], capture_output=True, text=True, check=True).stdout)
zoo = []
for m in data["methods"]:
    for p in m["presets"]:
        if p == "smoke" or p.startswith("smoke_"):
            print("run", m["method"], p)
            zoo += [z for z in m["zoo"].get(p, []) if z not in zoo]
print("zoo", *zoo)
PY
)
runs=(); zoo_names=()
for line in "${plan[@]}"; do
  case "$line" in run\ *) runs+=("${line#run }") ;; zoo\ *) read -r -a zoo_names <<< "${line#zoo }" ;; esac
done

step "zoo: train the ${#zoo_names[@]} mini-world models the suite needs (and their dependencies), $JOBS at a time (cached in \${EFFBENCH_HOME:-~/.cache/effbench})"
effbench zoo build "${zoo_names[@]}" --jobs "$JOBS" || failed+=("zoo build")

# methods that measure multi-process speedups run alone; the rest two at a time, one thread each
SOLO="asyncdiff"
run_one() {   # method preset -> log file; prints one status line
  local method=$1 preset=$2 t0 rc
  t0=$(date +%s)
  effbench run "$method" --preset "$preset" --out "$OUT" --tracker "$TRACKER" --quiet > "$OUT/logs/$method.$preset.log" 2>&1
  rc=$?
  printf '    %-22s %-16s %s  (%ss, log %s)\n' "$method" "$preset" "$([ $rc -eq 0 ] && echo ok || echo FAILED)" \
    "$(( $(date +%s) - t0 ))" "$OUT/logs/$method.$preset.log"
  return $rc
}
step "runs: every method's smoke presets (skips finished runs)"
pids=(); names=()
for line in "${runs[@]}"; do
  read -r method preset <<< "$line"
  case " $SOLO " in *" $method "*) continue ;; esac
  run_one "$method" "$preset" & pids+=($!); names+=("$method/$preset")
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || failed+=("${names[0]}"); pids=("${pids[@]:1}"); names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || failed+=("${names[$i]}"); done
for line in "${runs[@]}"; do
  read -r method preset <<< "$line"
  case " $SOLO " in *" $method "*) run_one "$method" "$preset" || failed+=("$method/$preset") ;; esac
done

step "paper tables -> paper_tables/"
effbench table --all --results "$OUT" || failed+=("tables")
step "leaderboard -> $OUT/leaderboard.md"
effbench leaderboard --results "$OUT" > /dev/null && echo "wrote $OUT/leaderboard.md" || failed+=("leaderboard")
if effbench report --help > /dev/null 2>&1; then
  step "HTML report -> $OUT/report/index.html"
  effbench report --results "$OUT" || failed+=("report")
fi

elapsed=$(( $(date +%s) - start ))
step "summary"
python - "$OUT" <<'PY'
import sys
from collections import Counter
from benchmarks.record import RecordStore
recs, problems = RecordStore(sys.argv[1]).read()
c = Counter((r.method, r.status) for r in recs)
for m in sorted({r.method for r in recs}):
    print(f"  {m:<20} ok {c[(m, 'ok')]:>3}   error {c[(m, 'error')]:>3}")
print(f"  records: {len(recs)}, damaged lines skipped: {len(problems)}")
PY
echo "  wall time: ${elapsed}s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "  FAILED: ${failed[*]}"
  exit 1
fi
echo "  all runs ok"
