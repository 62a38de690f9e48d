#!/usr/bin/env bash
# Runs each fuzz target in turn for SECONDS (default 600) at nice $NICE (default 15), one process at a time, and prints each
# target's final libFuzzer line. Usage: Fuzz/run.sh [SECONDS] [TARGET...]
# New corpus entries go to Fuzz/.work/corpus/TARGET (the committed seeds in Fuzz/Corpus/TARGET stay as they are),
# crashing inputs to Fuzz/.work/artifacts/TARGET/, logs to Fuzz/.work/logs/TARGET.log.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzJSONL FuzzDatasetIndex FuzzTrainState FuzzTransformerConfig FuzzSafetensors
                                     FuzzSeekableZstd FuzzHDF5Shard FuzzEvalWindows FuzzZarray FuzzBloscChunk FuzzParquet)
export LSAN_OPTIONS=suppressions=$PWD/lsan.supp
# Swift's own backtracer, at a trap, reads the crashed process's memory in a way ASan reports as an unknown crash
# instead of the trap; off, a trap is libFuzzer's "deadly signal" with ASan's stack.
export SWIFT_BACKTRACE=enable=no
for t in "${targets[@]}"; do
    mkdir -p ".work/corpus/$t" ".work/artifacts/$t" .work/logs "Corpus/$t"
    dict=(); case $t in FuzzDatasetIndex|FuzzTrainState|FuzzTransformerConfig|FuzzZarray|FuzzJSONL) dict=(-dict=json.dict) ;; esac
    # -detect_leaks=0 turns off the per-input leak check only (Foundation's lazily built caches look like leaks of
    # the first input that fills them); LeakSanitizer still checks the whole run at exit, with lsan.supp.
    going=(); [ "${KEEP_GOING:-0}" = 1 ] && going=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1)
    nice -n "${NICE:-15}" ".build/release/$t" ".work/corpus/$t" "Corpus/$t" "${dict[@]}" "${going[@]}" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -detect_leaks=0 -print_final_stats=1 \
        -artifact_prefix=".work/artifacts/$t/" > ".work/logs/$t.log" 2>&1
    status=$?
    echo "$t exit=$status $(grep -E '^#[0-9]+.*(DONE|cov:)' ".work/logs/$t.log" | tail -1) \
$(grep -E 'stat::number_of_executed_units' ".work/logs/$t.log") crashes=$(ls ".work/artifacts/$t" | wc -l)"
done
