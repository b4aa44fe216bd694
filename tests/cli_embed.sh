#!/usr/bin/env bash
# `petl embed` end to end: outputs against transformers' (tests/golden/embed_minilm_*.jsonl, from
# scripts/reference/gen-forward-golden.py), batch sizes, output selection, errors and --help.
# Environment (set by CTest): PETL = the petl binary, PETL_MODEL_DIR, TESTS = the tests folder.
set -u
fail() { echo "cli_embed: FAIL: $*" >&2; exit 1; }
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${TESTS:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
in=$TESTS/golden/embed_minilm_input.jsonl
want=$TESTS/golden/embed_minilm_expected.jsonl

# Max abs difference between the numbers of two JSON-lines files of vectors, line by line and
# in order; fails on a different number of lines or of values. Keys are dropped first so that
# the letters of "pooler_output" are not read as exponents.
maxdiff() {
    awk '
        function nums(line, arr,   n) {
            gsub(/"[a-z_]+"/, "", line)
            gsub(/[][{}:,]/, " ", line)
            return split(line, arr, " ")
        }
        NR == FNR { a[FNR] = $0; na = FNR; next }
        {
            nb = FNR
            n1 = nums(a[FNR], x); n2 = nums($0, y)
            if (n1 != n2 || n1 == 0) { print "values " n1 " vs " n2 " on line " FNR; bad = 1; exit }
            for (i = 1; i <= n1; i++) { d = x[i] - y[i]; if (d < 0) d = -d; if (d > m) m = d }
        }
        END {
            if (bad) exit 1
            if (na != nb) { print "lines " na " vs " nb; exit 1 }
            printf "%.3g\n", m
        }' "$1" "$2"
}
below() { awk -v d="$1" -v t="$2" 'BEGIN { exit !(d + 0 <= t + 0) }'; }

# Against the reference, batch of 32 (all four lines in one padded batch) and of 1.
"$PETL" embed --model "$PETL_MODEL_DIR" < "$in" > "$tmp/b32.jsonl" || fail "embed exited $?"
d=$(maxdiff "$want" "$tmp/b32.jsonl") || fail "output does not match the golden layout: $d"
echo "batch 32 vs transformers: max abs diff $d"
below "$d" 1e-4 || fail "batch 32: max abs diff $d over 1e-4"
"$PETL" embed --model "$PETL_MODEL_DIR" --batch 1 --threads 1 < "$in" > "$tmp/b1.jsonl" ||
    fail "embed --batch 1 exited $?"
d=$(maxdiff "$want" "$tmp/b1.jsonl") || fail "batch 1 layout: $d"
below "$d" 1e-4 || fail "batch 1: max abs diff $d over 1e-4"
d=$(maxdiff "$tmp/b1.jsonl" "$tmp/b32.jsonl") || fail "batch 1 vs 32 layout: $d"
echo "batch 1 vs batch 32: max abs diff $d"
below "$d" 1e-5 || fail "batch 1 vs 32: max abs diff $d over 1e-5"

# --output selects and orders nothing else: only the asked keys.
"$PETL" embed --model "$PETL_MODEL_DIR" --output mean,cls < "$in" > "$tmp/sel.jsonl" ||
    fail "--output exited $?"
head -n 1 "$tmp/sel.jsonl" | grep -q '^{"cls": \[.*\], "mean": \[.*\]}$' ||
    fail "--output mean,cls: unexpected line layout"
grep -q pooler "$tmp/sel.jsonl" && fail "--output mean,cls wrote a pooler output"

# A malformed line: the lines before it are written, exit 1, the message names the line.
{ head -n 1 "$in"; echo '{"text": "fine"}'; echo 'not json'; head -n 1 "$in"; } > "$tmp/bad.jsonl"
"$PETL" embed --model "$PETL_MODEL_DIR" < "$tmp/bad.jsonl" > "$tmp/bad.out" 2> "$tmp/bad.err"
rc=$?
[ "$rc" -eq 1 ] || fail "malformed line: exit $rc, expected 1"
grep -q '^petl embed: .*line 3' "$tmp/bad.err" || fail "malformed line: $(cat "$tmp/bad.err")"
[ "$(wc -l < "$tmp/bad.out")" -eq 2 ] || fail "malformed line: lines before it not written"
echo '{"text_a": 1}' | "$PETL" embed --model "$PETL_MODEL_DIR" > /dev/null 2> "$tmp/err"
[ $? -eq 1 ] && grep -q 'line 1' "$tmp/err" || fail "a non-string text: $(cat "$tmp/err")"

# --precision bf16: the same vectors to ~1e-2 (test_encoder bounds it against transformers);
# an unknown precision is an error naming it. A CPU without AVX512-BF16 must say so.
"$PETL" embed --model "$PETL_MODEL_DIR" --output cls < "$in" > "$tmp/f32.out" || fail "fp32 run"
if "$PETL" embed --model "$PETL_MODEL_DIR" --output cls --precision bf16 < "$in" \
    > "$tmp/bf16.out" 2> "$tmp/err"; then
    [ "$(wc -l < "$tmp/bf16.out")" -eq "$(wc -l < "$tmp/f32.out")" ] || fail "bf16: line count"
    paste -d '\n' "$tmp/f32.out" "$tmp/bf16.out" | sed 's/[^0-9eE.+-]/ /g' | awk '
        NR % 2 == 1 { n = split($0, a, " ") }
        NR % 2 == 0 { split($0, b, " "); for (i = 1; i <= n; i++) { d = a[i] - b[i]; if (d < 0) d = -d;
                      if (d > m) m = d; if (a[i] != b[i]) diff = 1 } }
        END { printf "cli_embed: bf16 vs fp32 [CLS]: max abs diff %g\n", m;
              exit !(m < 0.02 && diff) }' || fail "bf16 outputs not within 2e-2 of fp32 (or identical)"
else
    grep -q 'AVX512-BF16' "$tmp/err" || fail "bf16 refused without the reason: $(cat "$tmp/err")"
fi
"$PETL" embed --model "$PETL_MODEL_DIR" --precision fp8 < "$in" > /dev/null 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "unknown precision 'fp8'" "$tmp/err" || fail "--precision fp8: $(cat "$tmp/err")"

# Usage.
"$PETL" embed --help > "$tmp/help" || fail "--help exited $?"
grep -q 'usage: petl embed' "$tmp/help" || fail "--help printed no usage"
"$PETL" embed --batch 0 < /dev/null > /dev/null 2>&1
[ $? -eq 2 ] || fail "--batch 0 should be a usage error (2)"
"$PETL" embed --model "$tmp/none" < /dev/null > /dev/null 2> "$tmp/err"
[ $? -eq 1 ] && grep -q '^petl embed: ' "$tmp/err" || fail "missing model: $(cat "$tmp/err")"
# Empty input: no output, success.
"$PETL" embed --model "$PETL_MODEL_DIR" < /dev/null > "$tmp/empty" || fail "empty input failed"
[ ! -s "$tmp/empty" ] || fail "empty input wrote output"
echo "cli_embed: ok"
