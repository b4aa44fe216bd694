#!/usr/bin/env bash
# SQuAD v1.1 end to end on the real model and the real dev file (PETL_DATA_DIR/squad, read in
# place): `petl train --task squad` on a few questions of the training articles (short windows to
# keep it to seconds), the adapter folder and its squad settings, `petl eval` (same scores as the
# training run's dev evaluation, on the held-out articles by default), `petl predict` (answers are
# context[start:end] in code points), bad input (malformed lines, missing / empty context,
# overlapping article ranges, a file whose answer does not match its context), a two-run sweep
# (results.csv with exact_match and f1, score = F1), and a run killed
# with SIGKILL and resumed from its checkpoint giving a byte-identical adapter.
# Environment (set by CTest): PETL, PETL_MODEL_DIR, PETL_DATA_DIR.
set -u
fail() { echo "cli_squad: FAIL: $*" >&2; exit 1; }
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${PETL_DATA_DIR:?}"
dev=$PETL_DATA_DIR/squad/dev-v1.1.json
if [ ! -f "$dev" ]; then
    exec bash "${0%/*}/skip.sh" cli_squad data "no $dev"
fi
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
model=(--model "$PETL_MODEL_DIR" --threads 2)
small=(--max-len 64 --doc-stride 32 --max-query-len 24 --batch 8)

# Train: the default split of the dev file (articles 0:38 / 38:48), 12 + 8 questions.
"$PETL" train "${model[@]}" "${small[@]}" --task squad --data "$dev" --out "$tmp/ad" \
    --epochs 1 --lr 1e-3 --max-train-questions 12 --max-eval-questions 8 --log "$tmp/log.jsonl" \
    > "$tmp/sum.json" 2> "$tmp/train.err" || fail "train exited $?: $(cat "$tmp/train.err")"
want='^squad: 12 train questions ([0-9]* windows, articles 0:38 of .*), 8 dev questions'
want+=' ([0-9]* windows, articles 38:48), span head$'
grep -q "$want" "$tmp/train.err" || fail "no data line: $(cat "$tmp/train.err")"
grep -q '^{"task": "squad", .*"exact_match": [0-9.e-]*, "f1": [0-9.e-]*, "seconds": ' \
    "$tmp/sum.json" || fail "summary: $(cat "$tmp/sum.json")"
grep -q '"dev":{"exact_match":' "$tmp/log.jsonl" || fail "log: $(cat "$tmp/log.jsonl")"
cfg=$tmp/ad/adapter_config.json
for want in '"head": "span"' '"max_seq_len": 64' '"doc_stride": 32' '"max_query_len": 24' \
    '"max_answer_len": 30' '"n_best": 20' '"eval_articles": "38:48"' '"labels": \[\]'; do
    grep -q "$want" "$cfg" || fail "adapter_config.json lacks $want"
done
grep -q 'qa_outputs.weight' "$tmp/ad/adapter.safetensors" || fail "no qa_outputs tensor"

# eval: the held-out articles by default, the same numbers as the training run's dev evaluation.
"$PETL" eval "${model[@]}" --adapter "$tmp/ad" --data "$PETL_DATA_DIR/squad" \
    --max-questions 8 > "$tmp/eval.json" 2> "$tmp/eval.err" ||
    fail "eval exited $?: $(cat "$tmp/eval.err")"
want='^{"task": "squad", "split": "dev-v1.1.json", "articles": "38:48", "n": 8, '
want+='"exact_match": [0-9.e-]*, "f1": [0-9.e-]*}$'
grep -q "$want" "$tmp/eval.json" || fail "eval output: $(cat "$tmp/eval.json")"
f1_train=$(sed 's/.*"f1": \([0-9.e-]*\).*/\1/' "$tmp/sum.json")
f1_eval=$(sed 's/.*"f1": \([0-9.e-]*\).*/\1/' "$tmp/eval.json")
[ "$f1_train" = "$f1_eval" ] || fail "eval f1 $f1_eval differs from the training run's $f1_train"
"$PETL" eval "${model[@]}" --adapter "$tmp/ad" --data "$dev" --articles 40:41 \
    --max-questions 2 > "$tmp/eval2.json" 2> "$tmp/err" || fail "eval --articles: $(cat "$tmp/err")"
grep -q '"articles": "40:41", "n": 2,' "$tmp/eval2.json" || fail "eval2: $(cat "$tmp/eval2.json")"

# predict: one line per question; the answer is context[start:end] in code points.
ctx1='Ünïcödé précède: the Seine flows through Paris, the capital of France.'
ctx2='Pride and Prejudice was written by Jane Austen and published in 1813.'
printf '%s\n' "{\"id\": \"u1\", \"question\": \"Which river?\", \"context\": \"$ctx1\"}" \
    "{\"question\": \"When was it published?\", \"context\": \"$ctx2\", \"id\": 7}" |
    "$PETL" predict "${model[@]}" --adapter "$tmp/ad" > "$tmp/pred.jsonl" 2> "$tmp/pred.err" ||
    fail "predict exited $?: $(cat "$tmp/pred.err")"
[ "$(wc -l < "$tmp/pred.jsonl")" -eq 2 ] || fail "predict wrote $(wc -l < "$tmp/pred.jsonl") lines"
n=0
re='^\{"id": ("u1"|7), "answer": "([^"]*)", "start": ([0-9]+), "end": ([0-9]+), '
re+='"score": -?[0-9.e+-]+\}$'
for ctx in "$ctx1" "$ctx2"; do
    n=$((n + 1))
    line=$(sed -n "${n}p" "$tmp/pred.jsonl")
    [[ $line =~ $re ]] || fail "predict line $n: $line"
    ans=${BASH_REMATCH[2]} s=${BASH_REMATCH[3]} e=${BASH_REMATCH[4]}
    got=$(LC_ALL=C.UTF-8 bash -c 'c=$1; printf %s "${c:$2:$3}"' _ "$ctx" "$s" $((e - s)))
    [ -n "$ans" ] && [ "$got" = "$ans" ] ||
        fail "predict line $n: context[$s:$e] is '$got', answer '$ans'"
done

# Bad predict input: the lines before it are answered, then a clear error with the line number.
printf '%s\n' '{"question": "Who?", "context": "Ada Lovelace wrote it."}' '{"question": "x", ' |
    "$PETL" predict "${model[@]}" --adapter "$tmp/ad" > "$tmp/out" 2> "$tmp/err"
[ $? -eq 1 ] && grep -q 'line 2, column [0-9]*: invalid JSON' "$tmp/err" ||
    fail "malformed line: $(cat "$tmp/err")"
[ "$(wc -l < "$tmp/out")" -eq 1 ] || fail "the line before the error was not answered"
echo '{"question": "Who?"}' | "$PETL" predict "${model[@]}" --adapter "$tmp/ad" > /dev/null \
    2> "$tmp/err"
[ $? -eq 1 ] && grep -q 'line 1: "context" is missing' "$tmp/err" ||
    fail "missing context: $(cat "$tmp/err")"
echo '{"question": "Who?", "context": " \t"}' | "$PETL" predict "${model[@]}" --adapter "$tmp/ad" \
    > /dev/null 2> "$tmp/err"
[ $? -eq 1 ] && grep -q 'line 1: empty context' "$tmp/err" ||
    fail "empty context: $(cat "$tmp/err")"

# Without --lr the span head gets 1e-2 (1e-1, the GLUE heads' default, diverges on SQuAD).
"$PETL" train "${model[@]}" "${small[@]}" --task squad --data "$dev" --out "$tmp/head" --tune head \
    --epochs 1 --max-train-questions 4 --max-eval-questions 4 > /dev/null 2> "$tmp/err" ||
    fail "head-only train: $(cat "$tmp/err")"
grep -o '"lr": [0-9.e+-]*' "$tmp/head/adapter_config.json" | head -1 |
    awk '{ v = $2 + 0; exit !(v > 0.0099999 && v < 0.0100001) }' ||
    fail "squad head default lr: $(grep -o '"lr": [^,]*' "$tmp/head/adapter_config.json")"

# A sweep on SQuAD: results.csv has exact_match and f1 columns, and the score is F1 alone.
"$PETL" sweep "${model[@]}" --task squad --data "$dev" --out "$tmp/sweep" --grid "size=2,4" -- \
    "${small[@]}" --epochs 1 --lr 1e-3 --max-train-questions 4 --max-eval-questions 4 \
    > /dev/null 2> "$tmp/err" || fail "squad sweep: $(cat "$tmp/err")"
head -1 "$tmp/sweep/results.csv" | grep -q '^id,size,exact_match,f1,score,' ||
    fail "sweep columns: $(head -1 "$tmp/sweep/results.csv")"
[ "$(wc -l < "$tmp/sweep/results.csv")" -eq 3 ] || fail "sweep rows: $(cat "$tmp/sweep/results.csv")"
awk -F, 'NR > 1 && $4 != $5 { bad = 1 } END { exit bad }' "$tmp/sweep/results.csv" ||
    fail "score is not F1: $(cat "$tmp/sweep/results.csv")"

# Bad training data: overlapping article ranges; an answer that does not match its context.
"$PETL" train "${model[@]}" "${small[@]}" --task squad --data "$dev" --out "$tmp/x" \
    --train-articles 0:39 --max-train-questions 4 --max-eval-questions 4 > /dev/null 2> "$tmp/err"
[ $? -eq 1 ] && grep -q 'overlap' "$tmp/err" || fail "overlapping ranges: $(cat "$tmp/err")"
cat > "$tmp/bad.json" <<'EOF'
{"version": "1.1", "data": [{"title": "T", "paragraphs": [{"context": "Ada wrote it.",
 "qas": [{"id": "q-bad", "question": "Who?", "answers": [{"text": "Bob", "answer_start": 0}]}]}]}]}
EOF
"$PETL" train "${model[@]}" "${small[@]}" --task squad --data "$tmp/bad.json" --out "$tmp/x" \
    --train-articles all > /dev/null 2> "$tmp/err"
[ $? -eq 1 ] && grep -q 'article 0 ("T"), question q-bad: answer 0 ("Bob") does not match' \
    "$tmp/err" || fail "answer mismatch: $(cat "$tmp/err")"
[ ! -e "$tmp/x" ] || fail "a failed run wrote an adapter"

# Kill -9 after a checkpoint, resume, compare with an uninterrupted run byte for byte
# (--tune head: the checkpoint machinery is what is tested, the fastest backward will do).
run=("${model[@]}" "${small[@]}" --task squad --data "$dev" --tune head --epochs 2 --seed 7
    --max-train-questions 12 --max-eval-questions 4 --checkpoint-every 2)
"$PETL" train "${run[@]}" --out "$tmp/ref" > /dev/null 2> "$tmp/ref.err" ||
    fail "reference run: $(cat "$tmp/ref.err")"
"$PETL" train "${run[@]}" --out "$tmp/res" > /dev/null 2> "$tmp/res1.err" &
pid=$!
for _ in $(seq 1 2400); do
    [ -f "$tmp/res.checkpoint.safetensors" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
[ -f "$tmp/res.checkpoint.safetensors" ] || fail "no checkpoint appeared"
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
pid=
[ ! -e "$tmp/res" ] || fail "the run finished before it was killed: make it longer"
"$PETL" train "${run[@]}" --out "$tmp/res" --resume > /dev/null 2> "$tmp/res2.err" ||
    fail "resumed run: $(cat "$tmp/res2.err")"
grep -q 'resuming at step [1-9]' "$tmp/res2.err" || fail "did not resume: $(cat "$tmp/res2.err")"
cmp "$tmp/ref/adapter.safetensors" "$tmp/res/adapter.safetensors" ||
    fail "resumed adapter differs from the uninterrupted run"
echo "resumed: $(grep -o 'resuming at step [0-9]* of [0-9]*' "$tmp/res2.err"), adapter identical"

# Usage.
"$PETL" train --help | grep -q -- '--train-articles' || fail "train --help lacks squad"
"$PETL" train --task sst2 --data x --out y --eval-articles 1:2 > /dev/null 2>&1
[ $? -eq 2 ] || fail "--eval-articles without --task squad should be a usage error (2)"
echo "cli_squad: ok"
