#!/usr/bin/env bash
# `petl export --format adapterhub` against the real adapters library, through golden files
# (scripts/reference/gen-adapterhub-golden.py made them with adapters 1.3.0):
#  1. exporting the committed petl adapters (tests/golden/adapterhub/petl-sst2, which trained
#     its LayerNorms, and petl-sst2-frozen-ln, --freeze-layernorms: no side file) writes exactly
#     the files adapters was given (SHA-256 of each), so what adapters computed from them holds
#     for this build;
#  2. petl predict's class probabilities on 64 SST-2 dev sentences equal adapters' on the export
#     (BertAdapterModel, load_adapter(use_safetensors=True), the LayerNorm side file if any):
#     within 1e-7 (measured 1.8e-8: float32 sums in two orders; 9 printed digits);
#  3. refusals: an OUT that holds anything (left untouched), an adapter with no bottleneck
#     adapters (--tune head), an unknown --format;
#  4. petl import of adapters the adapters library made (below), and round trips (export then
#     import) of a classification and a SQuAD span head.
# Environment (set by CTest): PETL, PETL_MODEL_DIR, PETL_DATA_DIR, TESTS.
set -u
fail() { echo "cli_adapterhub: FAIL: $*" >&2; exit 1; }
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${PETL_DATA_DIR:?}" "${TESTS:?}"
g=$TESTS/golden/adapterhub
[ -f "$PETL_MODEL_DIR/model.safetensors" ] ||
    exec bash "$TESTS/skip.sh" cli_adapterhub model "no $PETL_MODEL_DIR/model.safetensors"
[ -f "$PETL_DATA_DIR/glue/SST-2/train.tsv" ] ||
    exec bash "$TESTS/skip.sh" cli_adapterhub data "no SST-2 under $PETL_DATA_DIR/glue"
sq=$PETL_DATA_DIR/squad/dev-v1.1.json
[ -f "$sq" ] || exec bash "$TESTS/skip.sh" cli_adapterhub data "no $sq"
command -v sha256sum > /dev/null || exec bash "$TESTS/skip.sh" cli_adapterhub tool "no sha256sum"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. and 2., for an adapter that trained its LayerNorms (a side file) and one that did not
for case in petl-sst2:26:5 petl-sst2-frozen-ln:0:4; do
    IFS=: read -r name n_ln n_files <<< "$case"
    "$PETL" export --model "$PETL_MODEL_DIR" --adapter "$g/$name" --out "$tmp/exp-$name" --name sst2 \
        --model-name sentence-transformers/all-MiniLM-L6-v2 > "$tmp/exp.json" 2> "$tmp/exp.err" ||
        fail "$name: export: $(cat "$tmp/exp.err")"
    grep -q "\"layernorm_tensors\": $n_ln}" "$tmp/exp.json" || fail "$name: export report: $(cat "$tmp/exp.json")"
    if [ "$n_ln" -gt 0 ]; then
        grep -q "petl_layernorms.safetensors" "$tmp/exp.err" || fail "$name: no word of the side file"
    else
        [ ! -s "$tmp/exp.err" ] || fail "$name: export said: $(cat "$tmp/exp.err")"
    fi
    n=0
    for f in "$tmp/exp-$name"/*; do
        want=$(grep -o "\"${f##*/}\": \"[0-9a-f]*\"" "$g/$name.json" | grep -o '[0-9a-f]\{64\}')
        got=$(sha256sum "$f" | cut -d' ' -f1)
        [ -n "$want" ] && [ "$want" = "$got" ] || fail "$name: ${f##*/}: sha256 $got, adapters was given $want"
        n=$((n + 1))
    done
    [ "$n" -eq "$n_files" ] || fail "$name: $n files exported, adapters was given $n_files"
    "$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$g/$name" --threads 2 \
        < "$g/sst2-dev.jsonl" > "$tmp/pred.jsonl" 2> "$tmp/pred.err" ||
        fail "$name: predict: $(cat "$tmp/pred.err")"
    grep -o '"scores": *\[[^]]*\]' "$tmp/pred.jsonl" | tr -d '"scores:[] ' | tr ',' ' ' > "$tmp/got"
    tr -d '\n ' < "$g/$name.json" | grep -o '"probs":\[\[.*\]\]' | sed 's/"probs":\[\[//; s/\]\]$//' |
        sed 's/\],\[/\n/g' | tr ',' ' ' > "$tmp/want"
    paste -d' ' "$tmp/got" "$tmp/want" | awk -v c="$name" '
        { n++; for (k = 1; k <= 2; k++) { d = $k - $(k + 2); if (d < 0) d = -d; if (d > worst) worst = d } }
        END { printf "cli_adapterhub: %s: %d rows, worst |p(petl) - p(adapters)| %.2g\n", c, n, worst
              exit !(n == 64 && worst <= 1e-7) }' || fail "$name: petl and adapters differ (bound 1e-7)"
done

# 4. petl import: adapters made by the adapters library itself (hub-houlsby: double_seq_bn,
# swish, a 2-layer head, saved as .bin; hub-ffn: the output adapter alone, gelu, layer 0 left
# out, a 2-layer head of 3 named labels, safetensors) predict adapters' probabilities (bound
# 1e-6: measured 2.3e-7, larger weights than a trained adapter's); seq_bn is refused by name;
# an export imported back predicts as the original
probs_vs() { # PRED.jsonl GOLDEN.json NAME BOUND
    grep -o '"scores": *\[[^]]*\]' "$1" | tr -d '"scores:[] ' | tr ',' ' ' > "$tmp/got"
    tr -d '\n ' < "$2" | grep -o '"probs":\[\[.*\]\]' | sed 's/"probs":\[\[//; s/\]\]$//' |
        sed 's/\],\[/\n/g' | tr ',' ' ' > "$tmp/want"
    paste -d' ' "$tmp/got" "$tmp/want" | awk -v c="$3" -v b="$4" '
        { n++; k = NF / 2; for (i = 1; i <= k; i++) { d = $i - $(i + k); if (d < 0) d = -d; if (d > worst) worst = d } }
        END { printf "cli_adapterhub: import %s: %d rows, worst |p(petl) - p(adapters)| %.2g\n", c, n, worst
              exit !(n == 64 && worst <= b) }'
}
for case in "hub-houlsby|sst2|8|both" "hub-ffn|tsv:text=0,label=1|12|ffn"; do
    IFS='|' read -r name task m place <<< "$case"
    "$PETL" import --from "$g/$name" --model "$PETL_MODEL_DIR" --out "$tmp/imp-$name" --task "$task" \
        --max-len 64 > "$tmp/imp.json" 2> "$tmp/imp.err" || fail "import $name: $(cat "$tmp/imp.err")"
    grep -q "\"adapter_size\": $m, \"placement\": \"$place\"" "$tmp/imp.json" ||
        fail "import $name: $(cat "$tmp/imp.json")"
    "$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$tmp/imp-$name" --threads 2 \
        < "$g/sst2-dev.jsonl" > "$tmp/pred.jsonl" 2> "$tmp/pred.err" || fail "predict $name: $(cat "$tmp/pred.err")"
    probs_vs "$tmp/pred.jsonl" "$g/$name.json" "$name" 1e-6 || fail "import $name: petl and adapters differ"
done
grep -q '"labels": *\[ *"neg", *"mid", *"pos" *\]' <(tr -d '\n' < "$tmp/imp-hub-ffn/adapter_config.json") ||
    fail "hub-ffn: label names not taken from label2id"
"$PETL" import --from "$g/hub-seqbn" --model "$PETL_MODEL_DIR" --out "$tmp/imp-seqbn" > /dev/null \
    2> "$tmp/err" && fail "a seq_bn adapter imported"
grep -q "original_ln_before = true" "$tmp/err" || fail "seq_bn refusal: $(cat "$tmp/err")"
[ ! -e "$tmp/imp-seqbn" ] || fail "a refused import wrote its folder"
"$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$g/petl-sst2-frozen-ln" --threads 2 \
    < "$g/sst2-dev.jsonl" > "$tmp/orig.jsonl" 2> /dev/null || fail "predict"
"$PETL" import --from "$tmp/exp-petl-sst2-frozen-ln" --model "$PETL_MODEL_DIR" --out "$tmp/back" \
    --task sst2 --max-len 64 > /dev/null 2> "$tmp/err" || fail "import of an export: $(cat "$tmp/err")"
"$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$tmp/back" --threads 2 \
    < "$g/sst2-dev.jsonl" > "$tmp/back.jsonl" 2> /dev/null || fail "predict after the round trip"
cmp -s "$tmp/orig.jsonl" "$tmp/back.jsonl" || fail "export then import changed the predictions"
# the same round trip for a SQuAD span head (a question_answering head in AdapterHub)
"$PETL" train --model "$PETL_MODEL_DIR" --task squad --data "$sq" --out "$tmp/sq" \
    --freeze-layernorms --epochs 1 --max-train-questions 4 --max-eval-questions 4 \
    --threads 2 > /dev/null 2> "$tmp/err" || fail "train --task squad: $(tail -n 3 "$tmp/err")"
"$PETL" export --model "$PETL_MODEL_DIR" --adapter "$tmp/sq" --out "$tmp/sqx" > /dev/null \
    2> "$tmp/err" || fail "export of a span head: $(cat "$tmp/err")"
grep -q '"head_type": "question_answering"' "$tmp/sqx/head_config.json" ||
    fail "span head exported as: $(cat "$tmp/sqx/head_config.json")"
"$PETL" import --from "$tmp/sqx" --model "$PETL_MODEL_DIR" --out "$tmp/sqback" --task squad \
    > /dev/null 2> "$tmp/err" || fail "import of a span head: $(cat "$tmp/err")"
printf '%s\n' '{"question": "Who won?", "context": "The Broncos won the game in 2016 against the Panthers."}' \
    '{"question": "Where is it?", "context": "The museum is in Paris, near the river."}' > "$tmp/q.jsonl"
"$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$tmp/sq" < "$tmp/q.jsonl" > "$tmp/a1" 2> /dev/null &&
    "$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$tmp/sqback" < "$tmp/q.jsonl" > "$tmp/a2" \
        2> /dev/null || fail "predict with the span heads"
[ -s "$tmp/a1" ] && cmp -s "$tmp/a1" "$tmp/a2" || fail "span head round trip: $(cat "$tmp/a1") vs $(cat "$tmp/a2")"
echo "cli_adapterhub: SQuAD span head: export then import answers byte for byte as the original"

# 3. refusals
mkdir "$tmp/full" && echo keep > "$tmp/full/notes.txt"
"$PETL" export --model "$PETL_MODEL_DIR" --adapter "$g/petl-sst2" --out "$tmp/full" \
    > /dev/null 2> "$tmp/err" && fail "export into a folder that holds a file"
[ "$(cat "$tmp/full/notes.txt")" = keep ] && [ "$(ls -A "$tmp/full" | wc -l)" -eq 1 ] ||
    fail "the refused export touched the folder"
"$PETL" export --adapter "$g/petl-sst2" --out "$tmp/x" --format onnx > /dev/null 2> "$tmp/err" &&
    fail "--format onnx accepted"
mkdir "$tmp/sst"
head -n 41 "$PETL_DATA_DIR/glue/SST-2/train.tsv" > "$tmp/sst/train.tsv"
head -n 21 "$PETL_DATA_DIR/glue/SST-2/dev.tsv" > "$tmp/sst/dev.tsv"
"$PETL" train --model "$PETL_MODEL_DIR" --task sst2 --data "$tmp/sst" --out "$tmp/head" --tune head \
    --epochs 1 --max-len 32 --threads 2 > /dev/null 2>&1 || fail "train --tune head"
"$PETL" export --model "$PETL_MODEL_DIR" --adapter "$tmp/head" --out "$tmp/hx" > /dev/null 2> "$tmp/err" &&
    fail "a head-only adapter exported"
grep -q "no bottleneck adapters" "$tmp/err" || fail "head-only refusal: $(cat "$tmp/err")"
[ ! -e "$tmp/hx" ] && [ -z "$(ls -A "$tmp" | grep '^\.hx')" ] || fail "a refused export left files"
echo "cli_adapterhub: all passed"
