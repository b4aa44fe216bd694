#!/usr/bin/env bash
# `petl sweep`, `petl ablate` and `petl plot` end to end on the real model with a few rows of
# real GLUE SST-2 (copied from PETL_DATA_DIR at test time): a 2x2 grid killed mid-sweep and
# resumed (finished runs kept, the same run set as planned), the tables and OUT/best, an
# ablation matrix, and valid PNG / SVG images.
# Environment (set by CTest): PETL, PETL_MODEL_DIR, PETL_DATA_DIR.
set -u
fail() { echo "cli_sweep: FAIL: $*" >&2; exit 1; }
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${PETL_DATA_DIR:?}"
src=$PETL_DATA_DIR/glue/SST-2
if [ ! -f "$src/train.tsv" ] || [ ! -f "$src/dev.tsv" ]; then
    exec bash "${0%/*}/skip.sh" cli_sweep data "no SST-2 under $PETL_DATA_DIR/glue"
fi
tmp=$(mktemp -d)
pid=
# The sweep runs in its own process group (setsid): killing the group also takes a petl train
# the sweep was spawning at that instant, which a kill of its listed children would miss; such
# an orphan would go on holding its run's lock (and writing its folder) beside the resumed sweep.
kill_run() {
    [ -n "$pid" ] || return 0
    kill -9 -- "-$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    for _ in $(seq 1 200); do pgrep -g "$pid" > /dev/null || break; sleep 0.05; done
    pid=
}
trap 'kill_run; rm -rf "$tmp"' EXIT
mkdir "$tmp/sst"
head -n 17 "$src/train.tsv" > "$tmp/sst/train.tsv"
head -n 9 "$src/dev.tsv" > "$tmp/sst/dev.tsv"
sweep=("$PETL" sweep --model "$PETL_MODEL_DIR" --task sst2 --data "$tmp/sst" --out "$tmp/sw"
       --threads 2 --grid "size=2,4 seed=1,2" -- --max-len 32 --epochs 1 --batch 8)
ids="size2_seed1 size2_seed2 size4_seed1 size4_seed2"

# Bad grids fail before anything runs.
"$PETL" sweep --task sst2 --data "$tmp/sst" --out "$tmp/bad" --grid "colour=red" 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "unknown axis 'colour'" "$tmp/err" || fail "bad grid: $(cat "$tmp/err")"
[ ! -e "$tmp/bad" ] || fail "a bad grid created its folder"

# The sweep folder is created with its missing parents (mkdir -p).
"$PETL" sweep --model "$PETL_MODEL_DIR" --task sst2 --data "$tmp/sst" --out "$tmp/new/deeper/sw" \
    --threads 2 --grid "size=2" -- --max-len 32 --epochs 1 --batch 8 > /dev/null 2> "$tmp/err" ||
    fail "sweep into a new nested folder: $(cat "$tmp/err")"
[ -f "$tmp/new/deeper/sw/runs/size2/summary.json" ] || fail "nested sweep: no summary"

# Start, kill (sweep and its petl train) once the first run is done and the second started.
setsid "${sweep[@]}" > /dev/null 2> "$tmp/sw1.err" &
pid=$!
for _ in $(seq 1 1200); do
    [ -f "$tmp/sw/runs/size2_seed1/summary.json" ] && [ -d "$tmp/sw/runs/size2_seed2" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
[ -f "$tmp/sw/runs/size2_seed1/summary.json" ] || fail "first run did not finish: $(cat "$tmp/sw1.err")"
kill_run
[ -f "$tmp/sw/runs/size4_seed2/summary.json" ] && fail "the sweep finished before it was killed"
first=$(stat -c %Y.%s "$tmp/sw/runs/size2_seed1/summary.json")

# Resume: the finished run is kept, the others run, the run set is the planned one.
"${sweep[@]}" > /dev/null 2> "$tmp/sw2.err" || fail "resumed sweep: $(cat "$tmp/sw2.err")"
grep -q '\[1/4\] size2_seed1: done before, kept' "$tmp/sw2.err" || fail "run 1 redone: $(cat "$tmp/sw2.err")"
[ "$(stat -c %Y.%s "$tmp/sw/runs/size2_seed1/summary.json")" = "$first" ] || fail "run 1 rewritten"
[ "$(ls "$tmp/sw/runs" | tr '\n' ' ')" = "$ids " ] || fail "run folders: $(ls "$tmp/sw/runs")"
csv=$tmp/sw/results.csv
head -1 "$csv" | grep -q '^id,size,seed,accuracy,score,trainable,trainable_pct,steps,best_epoch,seconds,wall_seconds,peak_rss_mb$' ||
    fail "CSV header: $(head -1 "$csv")"
[ "$(tail -n +2 "$csv" | cut -d, -f1 | tr '\n' ' ')" = "$ids " ] || fail "CSV rows: $(cat "$csv")"
tail -n +2 "$csv" | awk -F, 'NF != 12 || $4 < 0 || $4 > 1 || $6 <= 0 || $12 <= 0 { exit 1 }' ||
    fail "CSV values: $(cat "$csv")"
grep -q '"finished": 4' "$tmp/sw/results.json" || fail "results.json: not 4 finished"
best=$(sed -n 's/^  "best": "\(.*\)",$/\1/p' "$tmp/sw/results.json")
[ -n "$best" ] && [ "$(cat "$tmp/sw/best/SWEEP_RUN")" = "$best" ] || fail "best '$best' not in OUT/best"
cmp -s "$tmp/sw/best/adapter.safetensors" "$tmp/sw/runs/$best/adapter/adapter.safetensors" ||
    fail "OUT/best is not the best run's adapter"
# A finished sweep rerun trains nothing.
"${sweep[@]}" > /dev/null 2> "$tmp/sw3.err" || fail "third run: $(cat "$tmp/sw3.err")"
[ "$(grep -c 'done before, kept' "$tmp/sw3.err")" -eq 4 ] || fail "rerun trained: $(cat "$tmp/sw3.err")"

# Ablation: an L x L matrix, null below the diagonal, the all-removed corner a score.
"$PETL" ablate --model "$PETL_MODEL_DIR" --adapter "$tmp/sw/best" --data "$tmp/sst" --threads 2 \
    --plot "$tmp/abl.svg" > "$tmp/abl.json" 2> "$tmp/abl.err" || fail "ablate: $(cat "$tmp/abl.err")"
L=$(sed -n 's/.*"layers": \([0-9]*\),.*/\1/p' "$tmp/abl.json")
[ -n "$L" ] && [ "$L" -ge 1 ] || fail "ablate JSON: $(cat "$tmp/abl.json")"
sed 's/.*"matrix": \[\[\(.*\)\]\]}$/\1/; s/\], \[/\n/g' "$tmp/abl.json" | awk -F', ' -v L="$L" '
    { if (NF != L) exit 1
      for (j = 1; j <= L; j++) {
          if (j < NR && $j != "null") exit 1
          if (j >= NR && ($j == "null" || $j < 0 || $j > 1)) exit 1 } }
    END { if (NR != L) exit 1 }' || fail "matrix shape / nulls: $(cat "$tmp/abl.json")"
grep -q '"full": 0\.[0-9]*\|"full": 1' "$tmp/abl.json" || fail "no full score"

# Images: PNG signature and IHDR size; SVG well-formed with the series and labels.
if command -v gnuplot > /dev/null || [ -n "${PETL_GNUPLOT:-}" ]; then
    "$PETL" plot "$tmp/sw/results.json" --x size --y accuracy --series seed --out "$tmp/c.png" \
        2> "$tmp/err" || fail "plot png: $(cat "$tmp/err")"
    "$PETL" plot "$tmp/sw/results.json" --x trainable_pct --y score --series seed \
        --out "$tmp/c.svg" 2> "$tmp/err" || fail "plot svg: $(cat "$tmp/err")"
    [ "$(head -c 8 "$tmp/c.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "PNG signature"
    [ "$(dd if="$tmp/c.png" bs=1 skip=12 count=4 2>/dev/null)" = IHDR ] || fail "no IHDR"
    [ "$(od -An -tu1 -j16 -N8 "$tmp/c.png" | tr -s ' ' | sed 's/^ //')" = "0 0 3 132 0 0 2 88" ] ||
        fail "PNG not 900x600: $(od -An -tu1 -j16 -N8 "$tmp/c.png")"
    for svg in "$tmp/c.svg" "$tmp/abl.svg"; do
        if command -v xmllint > /dev/null; then
            xmllint --noout "$svg" || fail "$svg is not XML"
        fi
        grep -q '<svg' "$svg" || fail "$svg has no svg root"
    done
    for t in '>seed<' '>1<' '>2<' 'trained parameters' '>score<'; do
        grep -q "$t" "$tmp/c.svg" || fail "SVG lacks $t"
    done
    grep -q 'last layer removed' "$tmp/abl.svg" || fail "heatmap SVG lacks its axis label"
else
    no_gnuplot=1 # the rest still runs; the test then reports itself skipped (below)
fi
"$PETL" plot "$tmp/sw/results.json" --x size --y accuracy --out "$tmp/c.gif" 2> /dev/null
[ $? -eq 2 ] || fail "a .gif output should be a usage error"
if [ -n "${no_gnuplot:-}" ]; then
    bash "${0%/*}/skip.sh" cli_sweep tool "no gnuplot: the PNG / SVG checks did not run"
    exit $? # not exec: the EXIT trap removes $tmp
fi
echo "cli_sweep: ok"
