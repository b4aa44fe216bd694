#!/usr/bin/env bash
# `petl inspect` end to end: a model folder and its .safetensors file (text and --json), the
# tiny checkpoints of tests/golden/tiny-* (every family's key layout), a malformed file (exit 1, message
# names the file), usage errors (exit 2) and --help. Env: PETL (the binary), PETL_MODEL_DIR,
# TESTS (the tests folder).
set -euo pipefail
fail() {
    echo "cli_inspect: FAIL: $*" >&2
    exit 1
}
: "${PETL:?set PETL to the petl binary}"
MODEL=${PETL_MODEL_DIR:?set PETL_MODEL_DIR}
TESTS=${TESTS:?set TESTS to the tests folder}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs petl inspect ARGS..., keeping stdout, stderr and the exit status.
run() {
    set +e
    "$PETL" inspect "$@" >"$tmp/out" 2>"$tmp/err"
    status=$?
    set -e
}
has() { grep -qF -- "$1" "$tmp/out" || fail "output of '$2' lacks: $1"; }

run --help
[ "$status" -eq 0 ] || fail "--help exit status $status"
has "usage: petl inspect" "--help"

# The model folder: config summary, parameters, layout, files.
run "$MODEL"
[ "$status" -eq 0 ] || fail "model folder: exit status $status: $(cat "$tmp/err")"
for want in "6 layers, hidden 384, 12 heads (head size 32), intermediate 1536" \
    "vocab 30522, act gelu, max positions 512" "parameters: 22713216 (22.7M) in 104 tensors" \
    'no "bert." prefix, LayerNorm weight/bias, pooler present' "model.safetensors" \
    "config.json"; do
    has "$want" "inspect MODEL"
done
grep -q '^warning' "$tmp/out" && fail "warning on the real model: $(grep '^warning' "$tmp/out")"

run "$MODEL" --json
[ "$status" -eq 0 ] || fail "model folder --json: exit status $status"
for want in '"num_params": 22713216' '"hidden_size": 384' '"layer_norm": "weight/bias"' \
    '"pooler": true' '"prefix": ""' '"layer_norm_eps": 1e-12' '"name": "model.safetensors"'; do
    has "$want" "inspect MODEL --json"
done

# The file: one line per tensor, counts, metadata.
run "$MODEL/model.safetensors"
[ "$status" -eq 0 ] || fail "model file: exit status $status"
[ "$(grep -c ' F32 \| I64 ' "$tmp/out")" -eq 104 ] || fail "expected 104 tensor lines"
grep -qE '^embeddings\.word_embeddings\.weight +F32 +\[30522, 384\]$' "$tmp/out" ||
    fail "no line for the word embeddings"
has "104 tensors, 22713216 parameters" "inspect FILE"
has "metadata: format = pt" "inspect FILE"

run "$MODEL/model.safetensors" --json
[ "$status" -eq 0 ] || fail "model file --json: exit status $status"
has '"num_tensors": 104' "inspect FILE --json"
has '"format": "pt"' "inspect FILE --json"

# Key layouts of the tiny checkpoints, when the encoder's golden files are there.
# They are committed as model.st (nothing in the repository is named like model weights):
# link each into a model folder first.
tiny="$tmp/tiny"
for v in prefixed nopool; do
    mkdir -p "$tiny/$v"
    ln -s "$TESTS/golden/tiny-bert/$v/config.json" "$tiny/$v/config.json"
    ln -s "$TESTS/golden/tiny-bert/$v/model.st" "$tiny/$v/model.safetensors"
done
if [ -d "$tiny/prefixed" ]; then
    run "$tiny/prefixed"
    [ "$status" -eq 0 ] || fail "tiny prefixed: exit status $status: $(cat "$tmp/err")"
    has '"bert." prefix, LayerNorm gamma/beta' "inspect tiny-bert/prefixed"
    run "$tiny/nopool"
    [ "$status" -eq 0 ] || fail "tiny nopool: exit status $status: $(cat "$tmp/err")"
    has "pooler absent" "inspect tiny-bert/nopool"
fi

# The other families' layouts: their prefixes and layer names, and their own encoder tensors
# (ELECTRA's projection, MPNet's relative position bias) are not counted as task heads.
for v in xlm-roberta distilbert electra mpnet; do
    mkdir -p "$tiny/$v"
    ln -s "$TESTS/golden/tiny-$v/config.json" "$tiny/$v/config.json"
    ln -s "$TESTS/golden/tiny-$v/model.st" "$tiny/$v/model.safetensors"
    run "$tiny/$v"
    [ "$status" -eq 0 ] || fail "tiny $v: exit status $status: $(cat "$tmp/err")"
    grep -q '^warning' "$tmp/out" && fail "warning on tiny $v: $(grep '^warning' "$tmp/out")"
    grep -qF "other tensors" "$tmp/out" && fail "tiny $v: encoder tensors counted as heads"
    has "2 layers in the file" "inspect tiny-$v"
done
run "$tiny/xlm-roberta"
has '"roberta." prefix, LayerNorm weight/bias, pooler present' "inspect tiny-xlm-roberta"
run "$tiny/distilbert"
has 'config: distilbert, 2 layers, hidden 32, 4 heads' "inspect tiny-distilbert"
has 'no "distilbert." prefix, LayerNorm weight/bias, pooler absent' "inspect tiny-distilbert"
run "$tiny/mpnet" --json
has '"model_type": "mpnet"' "inspect tiny-mpnet --json"

# A malformed file: exit 1, one message on stderr naming the file and the problem.
bad="$TESTS/golden/safetensors/err_overlap.st"
run "$bad"
[ "$status" -eq 1 ] || fail "malformed file: exit status $status, want 1"
grep -qF "petl inspect: $bad: tensor 'b' begins at data byte 4" "$tmp/err" ||
    fail "message does not name the file and problem: $(cat "$tmp/err")"
[ -s "$tmp/out" ] && fail "output on stdout for a malformed file"

# A folder without a model: the missing file is named.
mkdir "$tmp/empty"
run "$tmp/empty"
[ "$status" -eq 1 ] || fail "empty folder: exit status $status, want 1"
grep -qF "$tmp/empty/config.json" "$tmp/err" || fail "message does not name config.json"
run "$tmp/missing.safetensors"
[ "$status" -eq 1 ] || fail "missing file: exit status $status, want 1"
grep -qF "$tmp/missing.safetensors: cannot open" "$tmp/err" || fail "missing file not named"

# Usage errors.
run
[ "$status" -eq 2 ] || fail "no argument: exit status $status, want 2"
run --frobnicate "$MODEL"
[ "$status" -eq 2 ] || fail "unknown option: exit status $status, want 2"
run "$MODEL" "$MODEL"
[ "$status" -eq 2 ] || fail "two paths: exit status $status, want 2"

# torch.save's format: the same tensors as the safetensors file, and a folder with only
# pytorch_model.bin summarised as the one with model.safetensors
run "$TESTS/golden/torchbin/tiny-roberta.tbin"
[ "$status" -eq 0 ] || fail "tiny-roberta.tbin: exit $status: $(cat "$tmp/err")"
grep -v ': 39 tensors\|^metadata' "$tmp/out" | sort > "$tmp/bin.txt"
run "$TESTS/golden/tiny-roberta/model.st"
grep -v ': 39 tensors\|^metadata' "$tmp/out" | sort > "$tmp/st.txt"
[ -s "$tmp/bin.txt" ] && cmp -s "$tmp/bin.txt" "$tmp/st.txt" || fail "the .bin lists other tensors than the safetensors file"
mkdir "$tmp/binonly"
cp "$TESTS/golden/tiny-roberta/config.json" "$tmp/binonly/"
cp "$TESTS/golden/torchbin/tiny-roberta.tbin" "$tmp/binonly/pytorch_model.bin"
run "$tmp/binonly"
[ "$status" -eq 0 ] || fail "a folder with pytorch_model.bin only: exit $status: $(cat "$tmp/err")"
has "pytorch_model.bin" "a .bin-only folder"

echo "cli_inspect: ok"
