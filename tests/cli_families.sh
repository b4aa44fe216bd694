#!/usr/bin/env bash
# Every encoder family end to end through the CLI: the tiny random RoBERTa, XLM-R, DistilBERT,
# ELECTRA and MPNet of tests/golden/tiny-* (their forward and gradients are proven against
# transformers in test_encoder / test_train), each given a WordPiece vocab.txt of single
# characters (the tiny models have 99 ids), on 120 rows of real SST-2. For each family:
#  1. `petl train` (adapters) runs, and the dev accuracy it reports equals `petl eval` on the
#     saved adapter and the accuracy counted here with awk from `petl predict`'s labels against
#     the dev file's gold labels;
#  2. full fine-tuning (which trains ELECTRA's projection and MPNet's relative position bias)
#     and LayerNorm-only tuning run one epoch to a finite loss, and so does bf16 adapter
#     training where the CPU has AVX512-BF16;
#     SQuAD trains a span head on a few questions (MPNet with a tokenizer.json of its own
#     template, <s> q </s></s> c </s>), and its F1 is the eval's;
#  3. `petl embed` writes one vector of the hidden size per input;
#  4. `petl serve` with two adapters of the family (one forward over both tasks' rows) answers
#     each task with `petl predict`'s labels and probabilities (within 1e-5);
#  5. `petl sweep` over two learning rates keeps the better (its score = eval of OUT/best), and
#     `petl ablate` starts from the adapter's own eval accuracy.
# Environment (set by CTest): PETL, PETL_DATA_DIR, TESTS.
set -u
fail() { echo "cli_families: FAIL: $*" >&2; exit 1; }
: "${PETL:?}" "${PETL_DATA_DIR:?}" "${TESTS:?}"
glue=$PETL_DATA_DIR/glue
for f in "$glue/SST-2/train.tsv" "$glue/SST-2/dev.tsv" "$PETL_DATA_DIR/squad/dev-v1.1.json"; do
    [ -f "$f" ] || exec bash "$TESTS/skip.sh" cli_families data "no $f"
done
command -v curl > /dev/null || exec bash "$TESTS/skip.sh" cli_families tool "no curl"
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done; rm -rf "$tmp"' EXIT
C=(curl -s --max-time 30)
source "$TESTS/serve_lib.sh"

# 99 tokens: the specials, then characters and their continuations (WordPiece splits every word
# into them).
{
    printf '%s\n' '[PAD]' '[UNK]' '[CLS]' '[SEP]' '[MASK]'
    for c in {a..z}; do echo "$c"; done
    for c in {a..z}; do echo "##$c"; done
    for c in {0..9}; do echo "$c"; done
    for c in {0..9}; do echo "##$c"; done
    printf '%s\n' . , "'" - '!' '?' ';' : '(' ')' '"' '&' '/' '*' '`' '$' '%' '+' '=' '#' '@' '['
} > "$tmp/vocab.txt"
[ "$(wc -l < "$tmp/vocab.txt")" -eq 99 ] || fail "vocab.txt has $(wc -l < "$tmp/vocab.txt") lines"
# MPNet's gets the same characters in a tokenizer.json laid out as all-mpnet-base-v2's: BERT's
# normalizer and pre-tokenizer, WordPiece, RoBERTa's template <s> A </s></s> B </s> (type ids 0)
awk 'BEGIN { split("<s> <pad> </s> <unk> <mask>", sp, " ") }
    function js(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
    { tok[NR - 1] = NR <= 5 ? sp[NR] : $0 }
    END {
        printf "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": ["
        for (i = 0; i < 5; i++)
            printf "%s{\"id\": %d, \"content\": %s, \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}", (i ? ", " : ""), i, js(tok[i])
        printf "], \"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true, \"handle_chinese_chars\": true, \"strip_accents\": null, \"lowercase\": true}"
        printf ", \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}"
        printf ", \"post_processor\": {\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", 2], \"cls\": [\"<s>\", 0], \"trim_offsets\": true, \"add_prefix_space\": false}"
        printf ", \"decoder\": {\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": true}"
        printf ", \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"<unk>\", \"continuing_subword_prefix\": \"##\", \"max_input_chars_per_word\": 100, \"vocab\": {"
        for (i = 0; i < NR; i++) printf "%s%s: %d", (i ? ", " : ""), js(tok[i]), i
        printf "}}}\n"
    }' "$tmp/vocab.txt" > "$tmp/tokenizer-mpnet.json"

mkdir -p "$tmp/sst"
head -n 81 "$glue/SST-2/train.tsv" > "$tmp/sst/train.tsv" # header + 80 rows
head -n 41 "$glue/SST-2/dev.tsv" > "$tmp/sst/dev.tsv"     # header + 40 rows
awk -F'\t' 'NR > 1 { gsub(/\\/, "\\\\", $1); gsub(/"/, "\\\"", $1); printf "{\"text\": \"%s\"}\n", $1 }' \
    "$tmp/sst/dev.tsv" > "$tmp/dev.jsonl"

num() { grep -o "\"$2\": *-\?[0-9.eE+-]*" "$1" | head -1 | sed 's/.*: *//'; }
same() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; exit !(a != "" && b != "" && d < 1e-6 && d > -1e-6) }'; }
bf16=1
grep -q avx512_bf16 /proc/cpuinfo || bf16=0

for fam in roberta xlm-roberta distilbert electra mpnet; do
    m=$tmp/model-$fam
    mkdir -p "$m"
    ln -s "$TESTS/golden/tiny-$fam/config.json" "$m/config.json"
    ln -s "$TESTS/golden/tiny-$fam/model.st" "$m/model.safetensors"
    if [ "$fam" = mpnet ]; then
        cp "$tmp/tokenizer-mpnet.json" "$m/tokenizer.json"
        echo '{"text": "ab"}' | "$PETL" tokenize --model "$m" > "$tmp/tok.json" ||
            fail "mpnet: tokenize with its tokenizer.json"
        grep -q '"input_ids": \[0, 5, 32, 2\]' "$tmp/tok.json" ||
            fail "mpnet: tokenizer.json template: $(cat "$tmp/tok.json")"
    else
        cp "$tmp/vocab.txt" "$m/vocab.txt"
    fi
    common=(--model "$m" --task sst2 --data "$tmp/sst" --max-len 60 --batch 16 --threads 2)

    # 1. adapters: reported = eval = counted from predictions
    ad=$tmp/ads-$fam/a
    mkdir -p "$tmp/ads-$fam"
    "$PETL" train "${common[@]}" --out "$ad" --epochs 2 --adapter-size 8 --lr 1e-3 \
        > "$tmp/train.json" 2> "$tmp/train.err" || fail "$fam: train: $(tail -n 3 "$tmp/train.err")"
    reported=$(num "$tmp/train.json" accuracy)
    "$PETL" eval --model "$m" --adapter "$ad" --data "$tmp/sst" --threads 2 > "$tmp/eval.json" \
        2> "$tmp/eval.err" || fail "$fam: eval: $(cat "$tmp/eval.err")"
    evaluated=$(num "$tmp/eval.json" accuracy)
    "$PETL" predict --model "$m" --adapter "$ad" --threads 2 < "$tmp/dev.jsonl" \
        > "$tmp/pred-$fam.jsonl" 2> "$tmp/pred.err" || fail "$fam: predict: $(cat "$tmp/pred.err")"
    counted=$(grep -o '"label": *"[01]"' "$tmp/pred-$fam.jsonl" | grep -o '[01]' |
        paste - <(tail -n +2 "$tmp/sst/dev.tsv" | cut -f2) |
        awk '{ n++; c += $1 == $2 } END { if (n == 40) printf "%.6f", c / n }')
    same "$reported" "$evaluated" && same "$evaluated" "$counted" ||
        fail "$fam: train reported $reported, eval $evaluated, predictions give $counted"
    grep -q "\"model_type\": *\"$fam\"" "$ad/adapter_config.json" ||
        fail "$fam: the adapter does not record its base's model_type"

    # 2. the other tune modes, and bf16
    modes=("full" "layernorm")
    [ "$bf16" = 1 ] && modes+=("adapter --precision bf16")
    for mode in "${modes[@]}"; do
        # shellcheck disable=SC2086 # mode is the value and, for bf16, one more option
        "$PETL" train "${common[@]}" --out "$tmp/m-$fam" --force --epochs 1 --tune $mode \
            --log "$tmp/log.jsonl" > "$tmp/train.json" 2> "$tmp/train.err" ||
            fail "$fam --tune $mode: $(tail -n 3 "$tmp/train.err")"
        loss=$(grep '"train_loss"' "$tmp/log.jsonl" | tail -1 | grep -o '"train_loss": *[0-9.eE+-]*' |
            sed 's/.*: *//')
        awk -v l="$loss" 'BEGIN { exit !(l != "" && l + 0 == l && l > 0 && l < 100) }' ||
            fail "$fam --tune $mode: train loss '$loss'"
        rm -f "$tmp/log.jsonl"
    done

    # SQuAD: a span head on every token, the windows in the tokenizer's template (MPNet's
    # <s> q </s></s> c </s>); exact match and F1 reported = eval
    "$PETL" train --model "$m" --task squad --data "$PETL_DATA_DIR/squad/dev-v1.1.json" \
        --train-articles 0:1 --eval-articles 1:2 --max-train-questions 16 --max-eval-questions 16 \
        --max-len 60 --doc-stride 24 --max-query-len 16 --epochs 1 --batch 16 --threads 2 \
        --out "$tmp/sq-$fam" > "$tmp/sq.json" 2> "$tmp/sq.err" ||
        fail "$fam: train --task squad: $(tail -n 3 "$tmp/sq.err")"
    "$PETL" eval --model "$m" --adapter "$tmp/sq-$fam" --data "$PETL_DATA_DIR/squad/dev-v1.1.json" \
        --articles 1:2 --max-questions 16 --threads 2 > "$tmp/sqe.json" 2> "$tmp/sq.err" ||
        fail "$fam: eval --task squad: $(tail -n 3 "$tmp/sq.err")"
    same "$(num "$tmp/sq.json" f1)" "$(num "$tmp/sqe.json" f1)" ||
        fail "$fam: squad f1 $(num "$tmp/sq.json" f1) (train) vs $(num "$tmp/sqe.json" f1) (eval)"

    # 3. embed
    head -n 3 "$tmp/dev.jsonl" | "$PETL" embed --model "$m" --max-len 60 --threads 2 --output mean \
        > "$tmp/emb.jsonl" 2> "$tmp/emb.err" || fail "$fam: embed: $(cat "$tmp/emb.err")"
    [ "$(wc -l < "$tmp/emb.jsonl")" -eq 3 ] || fail "$fam: embed wrote $(wc -l < "$tmp/emb.jsonl") lines"
    n=$(head -n 1 "$tmp/emb.jsonl" | grep -o '"mean": *\[[^]]*\]' | tr ',' '\n' | wc -l)
    [ "$n" -eq 32 ] || fail "$fam: embed vector of $n values, hidden size 32"

    # 4. serve: two tasks of this family in one forward
    cp -r "$ad" "$tmp/ads-$fam/b"
    "$PETL" serve --model "$m" --adapters "$tmp/ads-$fam" --host 127.0.0.1 --port 0 --threads 2 \
        --batch-window-ms 50 2> "$tmp/serve-$fam.log" &
    pid=$!
    pids+=("$pid")
    # (a log of its own: a shared one may still hold the previous family's address when
    # wait_for_port first reads it, before this server's redirection truncates it)
    wait_for_port "$tmp/serve-$fam.log" "$pid"
    body=$(awk 'BEGIN { printf "[" } NR <= 8 { sub(/^\{"text": /, ""); sub(/\}$/, ""); printf "%s%s", (NR > 1 ? "," : ""), $0 } END { printf "]" }' "$tmp/dev.jsonl")
    cpids=()
    rm -f "$tmp/resp-a.json" "$tmp/resp-b.json" # (no stale answers from the last family)
    for task in a b; do
        "${C[@]}" -o "$tmp/resp-$task.json" -X POST "$base/v1/predict" \
            -d "{\"task\": \"$task\", \"inputs\": $body}" &
        cpids+=($!)
    done
    for p in "${cpids[@]}"; do
        wait "$p" || fail "$fam: a predict request failed (curl exit $?)"
    done
    # "LABEL P0" per row: the label and the first class's probability, which differ from row to
    # row even where a barely trained model gives every row the same label
    rows() { grep -o '"label": *"[01]", *"scores": *\[[0-9.eE+-]*' | sed 's/"label": *"\([01]\)".*\[/\1 /'; }
    head -n 8 "$tmp/pred-$fam.jsonl" | rows > "$tmp/want"
    [ "$(wc -l < "$tmp/want")" -eq 8 ] || fail "$fam: predict output: $(head -n 2 "$tmp/pred-$fam.jsonl")"
    for task in a b; do
        tr '{' '\n' < "$tmp/resp-$task.json" | rows > "$tmp/got"
        paste "$tmp/want" "$tmp/got" | awk -v t="$task" -v f="$fam" '
            { n++; d = $2 - $4; if ($1 != $3 || d > 1e-5 || d < -1e-5) { print f ": serve task " t " row " n ": " $3 " " $4 ", predict " $1 " " $2; bad = 1 } }
            END { exit bad || n != 8 }' ||
            fail "$fam: serve and predict differ: $(head -c 300 "$tmp/resp-$task.json")"
    done
    kill -TERM "$pid"
    wait "$pid" || fail "$fam: serve exited $? on SIGTERM"
    # 5. sweep (two learning rates; best's dev score = eval of best) and ablate (its "full" is
    # the adapter's eval accuracy)
    "$PETL" sweep --model "$m" --task sst2 --data "$tmp/sst" --out "$tmp/sw-$fam" \
        --grid "lr=1e-3,3e-3" --threads 2 -- --epochs 1 --max-len 60 --batch 16 --adapter-size 8 \
        > "$tmp/sw.out" 2> "$tmp/sw.err" || fail "$fam: sweep: $(tail -n 3 "$tmp/sw.err")"
    [ "$(wc -l < "$tmp/sw-$fam/results.csv")" -eq 3 ] || fail "$fam: sweep results.csv: $(cat "$tmp/sw-$fam/results.csv")"
    best=$(grep -o '"score": *[0-9.eE+-]*' "$tmp/sw-$fam/results.json" | sed 's/.*: *//' | sort -g | tail -1)
    "$PETL" eval --model "$m" --adapter "$tmp/sw-$fam/best" --data "$tmp/sst" --threads 2 \
        > "$tmp/eval.json" 2> "$tmp/eval.err" || fail "$fam: eval of the sweep's best: $(cat "$tmp/eval.err")"
    same "$best" "$(num "$tmp/eval.json" accuracy)" ||
        fail "$fam: sweep's best score $best, eval of best $(num "$tmp/eval.json" accuracy)"
    "$PETL" ablate --model "$m" --adapter "$ad" --data "$tmp/sst" --threads 2 > "$tmp/abl.json" \
        2> "$tmp/abl.err" || fail "$fam: ablate: $(cat "$tmp/abl.err")"
    layers=$(num "$tmp/abl.json" layers)
    same "$(num "$tmp/abl.json" full)" "$evaluated" && [ "${layers:-0}" -ge 1 ] ||
        fail "$fam: ablate: $(head -c 300 "$tmp/abl.json") (eval $evaluated)"
    echo "cli_families: $fam: dev accuracy $reported (train = eval = predictions), squad f1 $(num "$tmp/sq.json" f1), full / layernorm$([ "$bf16" = 1 ] && echo " / bf16") train, embed, serve, sweep, ablate ok"
done
echo "cli_families: all passed"
