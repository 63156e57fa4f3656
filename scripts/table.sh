#!/usr/bin/env bash
# Run one table experiment for several seeds side by side, one process per seed.
#
#   scripts/table.sh fcn_table_embedded 0 1 2            # then: python -m fcnlab.report <sweep>
#   JOBS=1 scripts/table.sh segnet_table_embedded 0 -- trainer.max_steps=600
#
# Why processes and not a parallel Hydra launcher: the FCN stages chain within a seed (FCN-16s
# starts from FCN-32s), so each seed's jobs must run in order; seeds are independent. On the
# 2-core development CPU one training process uses about one core (a second thread gave FCN-8s
# under 15% more iterations per second), so two seeds side by side take about the wall time of
# one. Each process gets OMP_NUM_THREADS=${THREADS:-1}; at most ${JOBS:-2} run at once. Every
# job resumes (the experiments set resume=auto), so re-running finishes what an interruption left.
# Exit status: 0 when every seed's sweep finished, else 1, naming the seeds that failed and their
# logs (logs/tables/<experiment>-seed<k>.log).
set -u
if [ $# -lt 2 ]; then
    echo "usage: $0 EXPERIMENT SEED [SEED ...] [-- OVERRIDES ...]" >&2
    exit 2
fi
experiment=$1; shift
seeds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do seeds+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
python=${PYTHON:-python}
jobs=${JOBS:-2}
log_dir=${FCNLAB_LOG_DIR:-logs}/tables
mkdir -p "$log_dir"
running() { jobs -rp | wc -l; }
for seed in "${seeds[@]}"; do
    while [ "$(running)" -ge "$jobs" ]; do sleep 2; done
    log="$log_dir/$experiment-seed$seed.log"
    rm -f "$log.rc"
    echo "seed $seed: $python train.py -m experiment=$experiment seed=$seed $* > $log"
    ( OMP_NUM_THREADS=${THREADS:-1} "$python" train.py -m "experiment=$experiment" "seed=$seed" \
          "$@" > "$log" 2>&1; echo $? > "$log.rc" ) &
done
wait
failed=()
for seed in "${seeds[@]}"; do
    rc=$(cat "$log_dir/$experiment-seed$seed.log.rc" 2>/dev/null || echo missing)
    [ "$rc" = 0 ] || failed+=("$seed (exit $rc)")
done
if [ ${#failed[@]} -gt 0 ]; then
    for f in "${failed[@]}"; do
        echo "seed $f failed: see $log_dir/$experiment-seed${f%% *}.log" >&2
    done
    exit 1
fi
echo "all seeds finished; report: python -m fcnlab.report $log_dir/<the experiment's sweep folder>"
