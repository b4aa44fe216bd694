#!/usr/bin/env bash
# Does training learn, and is the metric it reports the metric of its own predictions? End to end
# on the real model with a few hundred rows of real GLUE SST-2 and MRPC (copied from
# PETL_DATA_DIR at test time, never committed). Two deliberate bugs once passed every other test: the best epoch always
# set to the last, and argmin for argmax in petl_evaluate (accuracy becomes 1 - accuracy). Here:
#  1. a short run on a learnable task beats the majority class by a margin;
#  2. the dev metric `petl train` reports for its best epoch equals `petl eval` on the saved
#     adapter, the log's line for that epoch, and SST-2's official metric (accuracy) computed in
#     this script with awk from `petl predict`'s labels and the dev file's gold labels: nothing
#     of petl's evaluation code is used for that number;
#  3. the best epoch is the log's best by its own scores, and on a run whose best epoch is not
#     the last, the saved adapter is that epoch's (its eval equals that epoch's score, not the
#     last one's). To make such a run certain rather than lucky, its dev labels are the opposite
#     of the true ones: the more the model learns SST-2, the lower its dev score, so the first
#     epoch is the best by a wide margin (measured: 0.505 then 0.32).
# Environment (set by CTest): PETL, PETL_MODEL_DIR, PETL_DATA_DIR.
set -u
fail() { echo "cli_e2e: FAIL: $*" >&2; exit 1; }
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${PETL_DATA_DIR:?}"
src=$PETL_DATA_DIR/glue/SST-2
for f in SST-2/train.tsv SST-2/dev.tsv MRPC/train.tsv MRPC/dev.tsv; do
    [ -f "$PETL_DATA_DIR/glue/$f" ] ||
        exec bash "${0%/*}/skip.sh" cli_e2e data "no $f under $PETL_DATA_DIR/glue"
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/sst" "$tmp/flip"
head -n 401 "$src/train.tsv" > "$tmp/sst/train.tsv" # 400 rows: header + 400
head -n 201 "$src/dev.tsv" > "$tmp/sst/dev.tsv"     # 200 rows: 101 negative, 99 positive
cp "$tmp/sst/train.tsv" "$tmp/flip/train.tsv"
awk -F'\t' -v OFS='\t' 'NR == 1 { print; next } { $2 = 1 - $2; print }' "$tmp/sst/dev.tsv" \
    > "$tmp/flip/dev.tsv"
common=(--model "$PETL_MODEL_DIR" --task sst2 --max-len 64 --threads 2)

# Helpers. num FILE KEY: the first number after "KEY": in FILE (flat JSON as petl prints it).
num() { grep -o "\"$2\": *-\?[0-9.eE+-]*" "$1" | head -1 | sed 's/.*: *//'; }
# same A B: equal as numbers, to 1e-6 (accuracies here are multiples of 1/200).
same() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "" && b != "" && d < 1e-6 && d > -1e-6) }'; }
# epoch_scores LOG: "EPOCH SCORE" per epoch line of a --log file (epochs from 1).
epoch_scores() {
    grep '"train_loss"' "$1" | sed 's/.*"epoch":\([0-9]*\),.*"score":\([0-9.eE+-]*\).*/\1 \2/' |
        awk '{ print $1 + 1, $2 }'
}
# log_best LOG: the epoch a correct trainer keeps: the first with the highest score.
log_best() { epoch_scores "$1" | awk 'NR == 1 || $2 > b { b = $2; e = $1 } END { print e }'; }
# official DEV_TSV ADAPTER TASK: "ACCURACY F1" of `petl predict` on the dev rows against the dev
# file's labels, counted here (F1 of label "1", GLUE's for MRPC). TASK sst2: sentence in column 1,
# label in 2; mrpc: label in 1, the pair in 4 and 5. Each output line's label must also be the
# label of its highest probability (labels "0", "1" in that order, checked in
# adapter_config.json).
official() {
    tr -d ' \n' < "$2/adapter_config.json" | grep -q '"labels":\["0","1"\]' ||
        fail "$2: labels are not [\"0\", \"1\"]"
    awk -F'\t' -v task="$3" '
        function js(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
        NR > 1 && task == "sst2" { printf "{\"text\": %s}\n", js($1) }
        NR > 1 && task == "mrpc" { printf "{\"text_a\": %s, \"text_b\": %s}\n", js($4), js($5) }' \
        "$1" > "$tmp/in.jsonl"
    "$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$2" --threads 2 < "$tmp/in.jsonl" \
        > "$tmp/pred.jsonl" 2> "$tmp/pred.err" || fail "predict: $(cat "$tmp/pred.err")"
    awk -F'\t' -v task="$3" 'NR > 1 { print (task == "sst2" ? $2 : $1) }' "$1" > "$tmp/gold.txt"
    [ "$(wc -l < "$tmp/pred.jsonl")" -eq "$(wc -l < "$tmp/gold.txt")" ] ||
        fail "predict wrote $(wc -l < "$tmp/pred.jsonl") lines for $(wc -l < "$tmp/gold.txt") inputs"
    sed 's/^{"label": "\([^"]*\)", "scores": \[\([^,]*\), \([^]]*\)\]}$/\1 \2 \3/' \
        "$tmp/pred.jsonl" | paste -d' ' - "$tmp/gold.txt" |
        awk 'NF != 4 { print "bad line " NR ": " $0 > "/dev/stderr"; bad = 1; exit }
             { want = ($3 > $2) ? "1" : "0"
               if ($1 != want) { print "line " NR ": label " $1 " but scores " $2 ", " $3 \
                                 > "/dev/stderr"; bad = 1; exit }
               n++; ok += ($1 == $4); tp += ($1 == 1 && $4 == 1); fp += ($1 == 1 && $4 == 0)
               fn += ($1 == 0 && $4 == 1) }
             END { if (bad || n == 0) exit 1
                   printf "%.6f %.6f\n", ok / n, tp ? 2 * tp / (2 * tp + fp + fn) : 0 }'
}

# 1-2. A learnable run: 2 epochs at lr 1e-3 (measured on 2 threads: dev 0.70, then 0.725-0.745).
"$PETL" train "${common[@]}" --data "$tmp/sst" --out "$tmp/ad" --epochs 2 --lr 1e-3 \
    --log "$tmp/log.jsonl" > "$tmp/sum.json" 2> "$tmp/train.err" ||
    fail "train exited $?: $(tail -3 "$tmp/train.err")"
reported=$(num "$tmp/sum.json" accuracy)
best=$(num "$tmp/sum.json" best_epoch)
[ -n "$reported" ] && [ -n "$best" ] || fail "summary: $(cat "$tmp/sum.json")"
[ "$(epoch_scores "$tmp/log.jsonl" | wc -l)" -eq 2 ] || fail "log: not 2 epoch lines"
[ "$best" = "$(log_best "$tmp/log.jsonl")" ] ||
    fail "best_epoch $best, but the log's scores are: $(epoch_scores "$tmp/log.jsonl" | tr '\n' ';')"
logged=$(epoch_scores "$tmp/log.jsonl" | awk -v e="$best" '$1 == e { print $2 }')
same "$reported" "$logged" || fail "summary accuracy $reported, log's epoch $best: $logged"
"$PETL" eval --model "$PETL_MODEL_DIR" --adapter "$tmp/ad" --data "$tmp/sst" --threads 2 \
    > "$tmp/eval.json" 2> "$tmp/eval.err" || fail "eval exited $?: $(cat "$tmp/eval.err")"
evaluated=$(num "$tmp/eval.json" accuracy)
same "$reported" "$evaluated" || fail "train reported $reported, eval of the saved adapter $evaluated"
official=$(official "$tmp/sst/dev.tsv" "$tmp/ad" sst2) || fail "official accuracy (above)"
official=${official%% *}
same "$evaluated" "$official" ||
    fail "petl's dev accuracy $evaluated, but its predictions score $official against the labels"
# Majority class of these 200 dev rows: 101 / 200 = 0.505. A model that learned nothing (or
# predicts one class) scores at most that; the margin (0.1, 20 rows) is well under the measured
# 0.22-0.24 and well over run-to-run noise.
majority=$(awk -F'\t' 'NR > 1 { c[$2]++; n++ } END { for (k in c) if (c[k] > m) m = c[k];
                                                    printf "%.6f\n", m / n }' "$tmp/sst/dev.tsv")
awk -v a="$official" -v m="$majority" 'BEGIN { exit !(a >= m + 0.1) }' ||
    fail "dev accuracy $official does not beat the majority class ($majority) by 0.1: no learning"
echo "learnable run: best epoch $best, train $reported = eval $evaluated = predict $official" \
    "(majority $majority)"

# 3. A run whose best epoch is not the last: dev labels flipped, default lr, 2 epochs.
"$PETL" train "${common[@]}" --data "$tmp/flip" --out "$tmp/adf" --epochs 2 \
    --log "$tmp/logf.jsonl" > "$tmp/sumf.json" 2> "$tmp/trainf.err" ||
    fail "train (flipped dev) exited $?: $(tail -3 "$tmp/trainf.err")"
scores=$(epoch_scores "$tmp/logf.jsonl" | tr '\n' ';')
want=$(log_best "$tmp/logf.jsonl")
last=$(epoch_scores "$tmp/logf.jsonl" | tail -1)
[ "$(epoch_scores "$tmp/logf.jsonl" | wc -l)" -eq 2 ] || fail "flipped log: not 2 epoch lines"
[ "$want" != "${last%% *}" ] ||
    fail "set-up: the flipped-dev run's best epoch is its last ($scores): nothing to check"
best=$(num "$tmp/sumf.json" best_epoch)
[ "$best" = "$want" ] || fail "best_epoch $best; the log's scores ($scores) make it $want"
reported=$(num "$tmp/sumf.json" accuracy)
logged=$(epoch_scores "$tmp/logf.jsonl" | awk -v e="$want" '$1 == e { print $2 }')
same "$reported" "$logged" || fail "summary accuracy $reported, log's epoch $want: $logged"
"$PETL" eval --model "$PETL_MODEL_DIR" --adapter "$tmp/adf" --data "$tmp/flip" --threads 2 \
    > "$tmp/evalf.json" 2> "$tmp/evalf.err" || fail "eval exited $?: $(cat "$tmp/evalf.err")"
evaluated=$(num "$tmp/evalf.json" accuracy)
same "$evaluated" "$logged" ||
    fail "saved adapter scores $evaluated; epoch $want (the best) scored $logged, the last ${last#* }"
official=$(official "$tmp/flip/dev.tsv" "$tmp/adf" sst2) || fail "official accuracy (above)"
official=${official%% *}
same "$evaluated" "$official" ||
    fail "petl's dev accuracy $evaluated, but its predictions score $official against the labels"
echo "best epoch not last: epochs $scores saved epoch $best ($evaluated = predict $official)"

# 2 again for a metric other than accuracy: MRPC's F1 (of the paraphrase class) and accuracy, a
# sentence-pair task. One short epoch: what is checked is that the numbers agree, whatever the
# model learned (here it mostly predicts the majority class, 103 of 150 rows: F1 0.81).
mkdir "$tmp/mrpc"
head -n 201 "$PETL_DATA_DIR/glue/MRPC/train.tsv" > "$tmp/mrpc/train.tsv"
head -n 151 "$PETL_DATA_DIR/glue/MRPC/dev.tsv" > "$tmp/mrpc/dev.tsv"
"$PETL" train "${common[@]}" --task mrpc --data "$tmp/mrpc" --out "$tmp/adm" --epochs 1 \
    > "$tmp/summ.json" 2> "$tmp/trainm.err" || fail "train (MRPC) exited $?: $(tail -3 "$tmp/trainm.err")"
"$PETL" eval --model "$PETL_MODEL_DIR" --adapter "$tmp/adm" --data "$tmp/mrpc" --threads 2 \
    > "$tmp/evalm.json" 2> "$tmp/evalm.err" || fail "eval exited $?: $(cat "$tmp/evalm.err")"
official=$(official "$tmp/mrpc/dev.tsv" "$tmp/adm" mrpc) || fail "official MRPC metrics (above)"
for k in accuracy f1; do
    want=$(echo "$official" | awk -v k=$k '{ print k == "accuracy" ? $1 : $2 }')
    reported=$(num "$tmp/summ.json" $k)
    evaluated=$(num "$tmp/evalm.json" $k)
    same "$reported" "$evaluated" && same "$evaluated" "$want" ||
        fail "MRPC $k: train reported $reported, eval $evaluated, predictions score $want"
done
echo "MRPC: accuracy, F1 of train = eval = predict: $official"
echo "cli_e2e: ok"
