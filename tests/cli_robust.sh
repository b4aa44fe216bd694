#!/usr/bin/env bash
# What a careless or hostile user does to the CLI (issue 16, items 7-10), on the real model and
# a few rows of real GLUE data copied at test time: output that cannot be written (/dev/full,
# `ulimit -f`), tampered adapters (NaN / Inf without the content hash), another task's data or
# input shape, usage errors (exit 2) and FIFOs given as files. Every check fails on petl before
# those items were done. Env (set by CTest): PETL, PETL_MODEL_DIR, PETL_DATA_DIR, TESTS.
set -u
fail() {
    echo "cli_robust: FAIL: $*" >&2
    exit 1
}
skip() {
    if [ -f "${TESTS:-}/skip.sh" ]; then exec bash "$TESTS/skip.sh" cli_robust "$1" "$2"; fi
    echo "cli_robust: SKIP ($1): $2"
    exit 77
}
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${PETL_DATA_DIR:?}"
MODEL=$PETL_MODEL_DIR
glue=$PETL_DATA_DIR/glue
for t in SST-2 CoLA MRPC; do
    [ -f "$glue/$t/train.tsv" ] && [ -f "$glue/$t/dev.tsv" ] || skip data "no $t under $glue"
done
[ -f "$MODEL/model.safetensors" ] || skip model "no model at $MODEL"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in SST-2 CoLA MRPC; do
    mkdir "$tmp/$t"
    head -n 41 "$glue/$t/train.tsv" > "$tmp/$t/train.tsv"
    head -n 21 "$glue/$t/dev.tsv" > "$tmp/$t/dev.tsv"
done
common=(--model "$MODEL" --max-len 64 --threads 2)
printf '{"text": "a fine film"}\n' > "$tmp/one.jsonl"

# Runs petl ARGS... with stdin from $in (default /dev/null); keeps stdout, stderr and status. The
# timeout turns a hang (a FIFO waited on) into a failed check (status 124).
in=/dev/null
limit=120
run() {
    timeout "$limit" "$PETL" "$@" < "$in" > "$tmp/out" 2> "$tmp/err"
    status=$?
}
# expect STATUS WHAT TEXT: the last run exited STATUS and its stderr holds TEXT.
expect() {
    [ "$status" -eq "$1" ] || fail "$2: exit status $status, expected $1: $(head -c 600 "$tmp/err")"
    grep -qF -- "$3" "$tmp/err" || fail "$2: stderr lacks '$3': $(head -c 600 "$tmp/err")"
}

# One tiny SST-2 adapter for the checks below (single-text input).
run train "${common[@]}" --task sst2 --data "$tmp/SST-2" --out "$tmp/sst" --epochs 1
[ "$status" -eq 0 ] || fail "train sst2 exited $status: $(cat "$tmp/err")"

# ---- 7. write errors are errors -----------------------------------------------------------
if [ -w /dev/full ]; then
    "$PETL" tokenize --model "$MODEL" < "$tmp/one.jsonl" > /dev/full 2> "$tmp/err"
    status=$?
    expect 1 "tokenize > /dev/full" "petl tokenize: write error on standard output: No space left"
    "$PETL" inspect "$MODEL" > /dev/full 2> "$tmp/err"
    status=$?
    expect 1 "inspect > /dev/full" "petl inspect: write error on standard output: No space left"
    "$PETL" eval "${common[@]}" --adapter "$tmp/sst" --data "$tmp/SST-2" > /dev/full 2> "$tmp/err"
    status=$?
    expect 1 "eval > /dev/full" "petl eval: write error on standard output: No space left"
    "$PETL" --version > /dev/full 2> "$tmp/err"
    status=$?
    expect 1 "--version > /dev/full" "write error on standard output"
    run train "${common[@]}" --task sst2 --data "$tmp/SST-2" --out "$tmp/full" --epochs 1 \
        --log /dev/full
    expect 1 "train --log /dev/full" "/dev/full: cannot write the log: No space left on device"
else
    echo "cli_robust: no writable /dev/full here: its checks are not run"
fi
# `ulimit -f` (KiB): a file over it used to kill petl with SIGXFSZ (status 153, no message).
(
    ulimit -f 1
    "$PETL" train "${common[@]}" --task sst2 --data "$tmp/SST-2" --out "$tmp/big" --epochs 1 \
        --batch 1 --log "$tmp/big.log" --log-every 1 > /dev/null 2> "$tmp/err"
)
status=$?
expect 1 "train --log over ulimit -f" "big.log: cannot write the log: File too large"
head -n 20 "$tmp/SST-2/dev.tsv" | tail -n 19 | sed 's/\t.*//; s/"//g; s/.*/{"text": "&"}/' \
    > "$tmp/lines.jsonl"
(
    ulimit -f 16
    "$PETL" embed --model "$MODEL" < "$tmp/lines.jsonl" > "$tmp/big.out" 2> "$tmp/err"
)
status=$?
expect 1 "embed stdout over ulimit -f" "petl embed: write error on standard output: File too large"

# A resumed sweep with nothing left to run rewrites its tables: over `ulimit -f 0` it used to
# exit 0 with the old tables in place.
run sweep --model "$MODEL" --threads 2 --task sst2 --data "$tmp/SST-2" --out "$tmp/sw" \
    --grid "seed=1" -- --epochs 1 --max-len 64
[ "$status" -eq 0 ] || fail "sweep exited $status: $(cat "$tmp/err")"
# (stderr through a pipe: the limit applies to every file petl writes, an stderr file too)
(
    ulimit -f 0
    exec "$PETL" sweep --model "$MODEL" --threads 2 --task sst2 --data "$tmp/SST-2" \
        --out "$tmp/sw" --grid "seed=1" -- --epochs 1 --max-len 64
) 2>&1 > /dev/null | cat > "$tmp/err"
status=${PIPESTATUS[0]}
expect 1 "sweep tables over ulimit -f 0" "sw/results.csv: cannot write: File too large"

# ---- 8. NaN or Inf in an adapter is refused at load, hash or no hash ----------------------
# tamper SRC DST HEX: a copy of adapter SRC whose content hash is renamed away (as if written by
# another tool) and whose first stored float is HEX (little-endian bytes).
tamper() {
    cp -r "$1" "$2" && perl -e '
        my ($f, $v) = @ARGV;
        open(my $h, "+<:raw", $f) or die "$f: $!";
        read($h, my $b, 8) == 8 or die "$f: short";
        my $n = unpack("Q<", $b);
        read($h, my $hdr, $n) == $n or die "$f: short header";
        $hdr =~ s/"petl_params_hash"/"xxxx_params_hash"/ or die "$f: no hash";
        seek($h, 8, 0); print $h $hdr;
        seek($h, 8 + $n, 0); print $h pack("H8", $v);
        close($h) or die "$f: $!";' "$2/adapter.safetensors" "$3" || fail "cannot tamper $2"
}
if command -v perl > /dev/null; then
    tamper "$tmp/sst" "$tmp/nan" 0000c07f
    tamper "$tmp/sst" "$tmp/inf" 0000807f
    run eval "${common[@]}" --adapter "$tmp/nan" --data "$tmp/SST-2"
    expect 1 "eval, NaN adapter" "nan/adapter.safetensors: tensor "
    grep -qF "holds NaN at index 0" "$tmp/err" || fail "eval, NaN adapter: $(cat "$tmp/err")"
    run eval "${common[@]}" --adapter "$tmp/inf" --data "$tmp/SST-2"
    expect 1 "eval, Inf adapter" "holds Inf at index 0"
    in=$tmp/lines.jsonl
    run predict --model "$MODEL" --adapter "$tmp/nan"
    expect 1 "predict, NaN adapter" "holds NaN"
    [ ! -s "$tmp/out" ] || fail "predict, NaN adapter: wrote $(head -c 200 "$tmp/out")"
    in=/dev/null
    run ablate --model "$MODEL" --threads 2 --adapter "$tmp/inf" --data "$tmp/SST-2"
    expect 1 "ablate, Inf adapter" "holds Inf"
else
    echo "cli_robust: no perl here to tamper an adapter: the NaN / Inf checks are not run"
fi

# ---- 9. another task's files, the other input shape, duplicate labels: refused -------------
# An SST-2 adapter on CoLA's files (headerless, 4 columns) used to score source ids as sentences.
run eval "${common[@]}" --adapter "$tmp/sst" --data "$tmp/CoLA"
expect 1 "eval sst2 adapter on CoLA files" "CoLA/dev.tsv:1: not SST-2 data"
run train "${common[@]}" --task sst2 --data "$tmp/CoLA" --out "$tmp/x" --epochs 1
expect 1 "train sst2 on CoLA files" "CoLA/train.tsv:1: not SST-2 data"
run eval "${common[@]}" --adapter "$tmp/sst" --data "$tmp/MRPC" --task mrpc
expect 1 "eval sst2 adapter as mrpc" "task mrpc reads text pairs but the adapter was trained on"
grep -q '"pair_input": false' "$tmp/sst/adapter_config.json" ||
    fail "sst2 adapter_config.json lacks pair_input: $(cat "$tmp/sst/adapter_config.json")"
printf '%s\n' '{"text": "a fine film"}' '{"text_a": "a fine", "text_b": "film"}' > "$tmp/pair.jsonl"
in=$tmp/pair.jsonl
run predict --model "$MODEL" --adapter "$tmp/sst"
in=/dev/null
expect 1 "predict a pair with a single-text adapter" "line 2: a text pair (text_b), but the"
[ "$(wc -l < "$tmp/out")" -eq 1 ] || fail "predict: the line before the pair lacks its output"
# A generic task records its train file's width: a file of another width is another task's.
run train "${common[@]}" --task "tsv:text=0,label=1,header" --data "$tmp/SST-2" --out "$tmp/gen" \
    --epochs 1
[ "$status" -eq 0 ] || fail "train tsv spec exited $status: $(cat "$tmp/err")"
grep -q '"data_columns": 2' "$tmp/gen/adapter_config.json" || fail "no data_columns recorded"
run eval "${common[@]}" --adapter "$tmp/gen" --data "$tmp/SST-2"
[ "$status" -eq 0 ] || fail "eval tsv adapter on its own data exited $status: $(cat "$tmp/err")"
run eval "${common[@]}" --adapter "$tmp/gen" --data "$tmp/CoLA"
expect 1 "eval tsv adapter on CoLA" "CoLA/dev.tsv has 4 columns but the adapter was trained on a"
# Two classes of one name: refused at load (eval, predict), not scored.
command -v perl > /dev/null || fail "no perl to edit an adapter_config.json"
cp -r "$tmp/sst" "$tmp/dup"
perl -0pi -e 's/("labels": \[\s*"0",\s*)"1"/$1"0"/ or die' "$tmp/dup/adapter_config.json" ||
    fail "cannot edit the labels"
run eval "${common[@]}" --adapter "$tmp/dup" --data "$tmp/SST-2"
expect 1 "eval, duplicate labels" 'task.labels[0] and [1] are both "0"'
in=$tmp/one.jsonl
run predict --model "$MODEL" --adapter "$tmp/dup"
in=/dev/null
expect 1 "predict, duplicate labels" "label names must be distinct"

# ---- 10. usage errors exit 2; messages name the file; FIFOs and devices are refused ----------
run train "${common[@]}" --task sst2 --data "$tmp/SST-2" --out "$tmp/x" --max-len 100000
expect 2 "train --max-len 100000" "--max-len 100000 is over the model's 512 positions"
grep -qF "$MODEL/config.json" "$tmp/err" || fail "train --max-len: no config.json named"
run train "${common[@]}" --task sst2 --data "$tmp/SST-2" --out "$tmp/x" --precision fp16
expect 2 "train --precision fp16" "unknown precision 'fp16'"
run eval "${common[@]}" --adapter "$tmp/sst" --data "$tmp/SST-2" --max-len 513
expect 2 "eval --max-len 513" "$MODEL/config.json"
run eval "${common[@]}" --adapter "$tmp/sst" --data "$tmp/SST-2" --task bogus
expect 2 "eval --task bogus" "unknown task 'bogus'"
in=$tmp/one.jsonl
run predict --model "$MODEL" --adapter "$tmp/sst" --precision fp8
expect 2 "predict --precision fp8" "unknown precision 'fp8'"
run embed --model "$MODEL" --max-len 600
expect 2 "embed --max-len 600" "$MODEL/config.json"
in=/dev/null
# A tensor of a type petl cannot read: the message names the file (dtype in place: same length).
cp -r "$tmp/sst" "$tmp/i32"
perl -pi -e 's/"dtype":"F32"/"dtype":"I32"/' "$tmp/i32/adapter.safetensors" ||
    fail "cannot edit the dtype"
run eval "${common[@]}" --adapter "$tmp/i32" --data "$tmp/SST-2"
expect 1 "eval, I32 tensor" "i32/adapter.safetensors: tensor '"
grep -qF "dtype I32 cannot be read" "$tmp/err" || fail "eval, I32 tensor: $(cat "$tmp/err")"
# A FIFO as a data, weights or tokenizer file, a device as an eval file: refused at once, not
# waited on (timeout: a hang fails the check instead of the suite).
limit=20
mkdir "$tmp/fifo" "$tmp/fmodel"
mkfifo "$tmp/fifo/train.tsv"
cp "$tmp/SST-2/dev.tsv" "$tmp/fifo/"
run train "${common[@]}" --task sst2 --data "$tmp/fifo" --out "$tmp/x"
expect 1 "train on a FIFO" "fifo/train.tsv: is a FIFO (named pipe), not a regular file"
cp "$MODEL/config.json" "$MODEL/vocab.txt" "$tmp/fmodel/"
mkfifo "$tmp/fmodel/model.safetensors"
in=$tmp/one.jsonl
run embed --model "$tmp/fmodel"
expect 1 "embed with FIFO weights" "fmodel/model.safetensors: is a FIFO"
rm "$tmp/fmodel/model.safetensors"
ln -s "$MODEL/model.safetensors" "$tmp/fmodel/model.safetensors"
mkfifo "$tmp/fmodel/tokenizer_config.json"
run tokenize --model "$tmp/fmodel"
expect 1 "tokenize with a FIFO tokenizer_config.json" "tokenizer_config.json: is a FIFO"
in=/dev/null
run eval "${common[@]}" --adapter "$tmp/sst" --file /dev/zero
expect 1 "eval --file /dev/zero" "/dev/zero: is a character device"

echo "cli_robust: all checks passed"
