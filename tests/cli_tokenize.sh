#!/usr/bin/env bash
# `petl tokenize` end to end: output against the reference (BertTokenizerFast, max_length 12,
# produced with scripts/reference's venv), bad lines, options. Env: PETL (the binary),
# PETL_MODEL_DIR.
set -u
fail() { echo "cli_tokenize: FAIL: $*" >&2; exit 1; }
: "${PETL:?set PETL to the petl binary}"
MODEL=${PETL_MODEL_DIR:?set PETL_MODEL_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/in.jsonl" <<'JSON'
{"text": "Hello, world!"}
{"text_a": "The cat sat.", "text_b": "A dog ran."}
{"text": "Caf\u00e9 \u0130stanbul \u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3 \u4e2d\u6587 \ud83d\ude00 a[MASK]b"}
{"text": ""}
{"text_a": "one two three four five six", "text_b": "seven eight nine ten eleven"}
{"text": "tab\there\u0000nul \u200bzero"}
JSON
cat >"$tmp/want.jsonl" <<'JSON'
{"input_ids": [101, 7592, 1010, 2088, 999, 102], "token_type_ids": [0, 0, 0, 0, 0, 0]}
{"input_ids": [101, 1996, 4937, 2938, 1012, 102, 1037, 3899, 2743, 1012, 102], "token_type_ids": [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]}
{"input_ids": [101, 7668, 9960, 1173, 18199, 29733, 29735, 29736, 29730, 29733, 1746, 102], "token_type_ids": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}
{"input_ids": [101, 102], "token_type_ids": [0, 0]}
{"input_ids": [101, 2028, 2048, 2093, 2176, 2274, 102, 2698, 2809, 3157, 2702, 102], "token_type_ids": [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]}
{"input_ids": [101, 21628, 2182, 11231, 2140, 5717, 102], "token_type_ids": [0, 0, 0, 0, 0, 0, 0]}
JSON
"$PETL" tokenize --model "$MODEL" --max-len 12 <"$tmp/in.jsonl" >"$tmp/out.jsonl" ||
    fail "exit status $? on good input"
diff -u "$tmp/want.jsonl" "$tmp/out.jsonl" || fail "output differs from the reference"

# --tokens adds the token strings; --max-len 0 truncates nothing.
out=$(echo '{"text": "Hello [SEP] world"}' | "$PETL" tokenize --model "$MODEL" --tokens) ||
    fail "--tokens"
[[ $out == *'"tokens": ["[CLS]", "hello", "[SEP]", "world", "[SEP]"]'* ]] || fail "--tokens: $out"
long=$(printf 'a %.0s' $(seq 300))
n128=$(echo "{\"text\": \"$long\"}" | "$PETL" tokenize --model "$MODEL" | grep -o '10[12]' | wc -l)
[[ $n128 -eq 2 ]] || fail "default --max-len: $n128 special tokens"
out=$(echo "{\"text\": \"$long\"}" | "$PETL" tokenize --model "$MODEL" --max-len 0)
[[ $(grep -o ', 1037' <<<"$out" | wc -l) -eq 300 ]] || fail "--max-len 0 truncated"

# A malformed line: the lines before it are written, exit 1, the message names the line.
printf '%s\n' '{"text": "ok"}' '{"text": "broken' '{"text": "never"}' >"$tmp/bad.jsonl"
"$PETL" tokenize --model "$MODEL" <"$tmp/bad.jsonl" >"$tmp/out" 2>"$tmp/err"
rc=$?
[[ $rc -eq 1 ]] || fail "malformed line: exit $rc"
grep -q 'line 2' "$tmp/err" || fail "malformed line: message: $(cat "$tmp/err")"
[[ $(wc -l <"$tmp/out") -eq 1 ]] || fail "malformed line: lines before it not written"
echo '{"txt": "x"}' | "$PETL" tokenize --model "$MODEL" >/dev/null 2>"$tmp/err"
[[ $? -eq 1 ]] && grep -q 'line 1' "$tmp/err" || fail "missing text field"

# Invalid UTF-8 in the input line is an error that names the line.
printf '{"text": "ok"}\n{"text": "caf\xc3"}\n' |
    "$PETL" tokenize --model "$MODEL" >/dev/null 2>"$tmp/err"
[[ $? -eq 1 ]] && grep -q 'line 2' "$tmp/err" || fail "invalid UTF-8: $(cat "$tmp/err")"

# Options.
"$PETL" tokenize --help >"$tmp/help" || fail "--help exit status"
grep -q -- '--max-len' "$tmp/help" || fail "--help text"
"$PETL" tokenize --max-len -3 </dev/null 2>/dev/null
[[ $? -eq 2 ]] || fail "negative --max-len accepted"
"$PETL" tokenize --bogus </dev/null 2>/dev/null
[[ $? -eq 2 ]] || fail "unknown option accepted"
"$PETL" tokenize --model "$tmp/nowhere" </dev/null 2>"$tmp/err"
[[ $? -eq 1 ]] && grep -q 'vocab.txt' "$tmp/err" || fail "missing model: $(cat "$tmp/err")"
echo "cli_tokenize: ok"
