#!/usr/bin/env bash
# make bench: every benchmark in order, each on its own throwaway cluster, then one page with all their
# reports, bench/results/README.md.
#   bench/run_all.sh            smart_read.sh, repair_read.sh, backfill.sh, space_reuse.sh, parallel.sh,
#                               live_workload.sh, live_recipe.sh, disk_floor.sh, citus.sh (~60 min on 2 cores)
#   BENCH_SCALE=1 ...           also backfill.sh --scale (10M rows, ~12 min more)
#   BENCH_CITUS=0 ...           without citus.sh (it needs Citus: installed, or CITUS_TARBALL; see test/tools/citus.sh)
#   bench/run_all.sh --report   only rebuild README.md from the reports already in bench/results
# Other BENCH_* variables pass through to the scripts (see each script's header). Exits non-zero only
# when a benchmark breaks; a goal that FAILs is a result, not an error.
set -euo pipefail
cd "$(dirname "$0")"

runs=("smart_read.sh" "repair_read.sh" "backfill.sh" "space_reuse.sh" "parallel.sh" "live_workload.sh" "live_recipe.sh" "disk_floor.sh")
[[ ${BENCH_SCALE:-0} != 1 ]] || runs=("smart_read.sh" "repair_read.sh" "backfill.sh" "backfill.sh --scale" "space_reuse.sh" "parallel.sh" "live_workload.sh" "live_recipe.sh" "disk_floor.sh")
if [[ ${BENCH_CITUS:-1} == 0 ]]; then
    echo "bench: BENCH_CITUS=0: citus.sh left out" >&2
else
    runs+=("citus.sh")
fi
case ${1:-} in
    "") ;;
    --report) runs=() ;;
    *) echo "usage: $0 [--report]" >&2; exit 2 ;;
esac
for run in ${runs[@]+"${runs[@]}"}; do
    echo "== bench/$run" >&2
    # shellcheck disable=SC2086  # "backfill.sh --scale" is a script and its argument
    bash ./$run
done

{
    echo "# Benchmark results"
    echo
    echo "Assembled by bench/run_all.sh ($(date -u '+%Y-%m-%d %H:%M UTC')) from the reports below; each section"
    echo "is one script's own report, with the date it ran. Ratios compare methods measured in the same run on"
    echo "the same cluster; absolute times come from a small shared machine and move from run to run."
    # live_workload_<tag>.md: trade-off points measured with BENCH_JOB_ARGS (see live_workload.sh)
    tagged=$(cd results && for f in live_workload_*.md live_recipe_*.md; do [[ -f $f ]] && echo "${f%.md}"; done)
    floors=$(cd results && for f in disk_floor_*.md; do [[ -f $f ]] && echo "${f%.md}"; done)
    for r in smart_read repair_read backfill backfill_scale space_reuse parallel live_workload live_recipe $tagged $floors citus; do
        [[ -f results/$r.md ]] || continue  # backfill_scale.md exists only after a --scale run
        echo
        sed 's/^#/##/' "results/$r.md"  # one level down: the page has its own title
    done
} >results/README.md
echo "bench: wrote bench/results/README.md" >&2
