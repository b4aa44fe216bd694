#!/usr/bin/env bash
# `petl serve` against careless or hostile admin requests and greedy clients, end to end, on a
# free loopback port (127.0.0.1 only): POST /v1/tasks loads only from inside --adapters (after
# symlinks and ..) and never echoes a file's content in its errors; a request of long inputs
# runs in pieces with other requests between them, and its large work buffers are given back.
# (Connection limits, deadlines and Content-Length: tests/test_server.c, no model needed.)
# Environment (set by CTest): PETL, PETL_MODEL_DIR, PETL_DATA_DIR.
set -u
fail() {
    echo "cli_serve_abuse: FAIL: $*" >&2
    [ -n "${log:-}" ] && [ -f "$log" ] && tail -n 20 "$log" >&2
    exit 1
}
skip() { # skip WHAT REASON: exit 77 (tests/skip.sh, where present, applies PETL_REQUIRE_ALL)
    [ -f "${0%/*}/skip.sh" ] && exec bash "${0%/*}/skip.sh" cli_serve_abuse "$1" "$2"
    echo "cli_serve_abuse: SKIP ($1): $2"
    exit 77
}
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${PETL_DATA_DIR:?}"
. "${0%/*}/serve_lib.sh"
command -v curl > /dev/null || skip tool "curl is not installed"
sst=$PETL_DATA_DIR/glue/SST-2
[ -f "$sst/train.tsv" ] && [ -f "$sst/dev.tsv" ] || skip data "no SST-2 under $PETL_DATA_DIR/glue"
[ -f "$PETL_MODEL_DIR/config.json" ] || skip model "no model at $PETL_MODEL_DIR"
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill -9 "$pid" 2> /dev/null; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT
C=(curl -s --max-time 60)

# --- adapters: short inputs (max_len 64) and long ones (max_len 512) -------------------------
mkdir -p "$tmp/d" "$tmp/ads"
head -n 25 "$sst/train.tsv" > "$tmp/d/train.tsv"
head -n 9 "$sst/dev.tsv" > "$tmp/d/dev.tsv"
for t in sst2:64 long:512; do
    "$PETL" train --model "$PETL_MODEL_DIR" --task sst2 --data "$tmp/d" --out "$tmp/ads/${t%%:*}" \
        --epochs 1 --batch 8 --max-len "${t#*:}" --threads 2 > /dev/null 2> "$tmp/train.err" ||
        fail "petl train ${t%%:*}: $(tail -n 3 "$tmp/train.err")"
done
# Outside the adapters folder: an adapter, and a "secret" file.
cp -r "$tmp/ads/sst2" "$tmp/outside"
marker=SECRETMARKERx  # letters only: a JSON parser quotes such a word whole ("near '...'")
printf '%s:7f3a9c:0:0\n' "$marker" > "$tmp/secret.txt"
# Inside: hidden (not loaded at start) folders to be loaded through the admin route.
mkdir "$tmp/ads/.leak" "$tmp/ads/.leak2"
cp "$tmp/secret.txt" "$tmp/ads/.leak/adapter_config.json"
cp "$tmp/ads/sst2/adapter.safetensors" "$tmp/ads/.leak/"
ln -s "$tmp/secret.txt" "$tmp/ads/.leak2/adapter_config.json"
cp "$tmp/ads/sst2/adapter.safetensors" "$tmp/ads/.leak2/"
ln -s "$tmp/outside" "$tmp/ads/.link-out"
ln -s sst2 "$tmp/ads/.link-in"
token=0123456789abcdef-test-token
printf '%s\n' "$token" > "$tmp/token"
chmod 600 "$tmp/token"
AUTH=(-H "Authorization: Bearer $token")

# The new limits' options: out of range is a usage error.
for bad in "--request-timeout 0" "--max-per-address 0" "--max-batch-tokens 0"; do
    # shellcheck disable=SC2086
    "$PETL" serve --adapters "$tmp/ads" $bad > /dev/null 2>&1
    [ $? -eq 2 ] || fail "$bad should be a usage error (2)"
done
"$PETL" serve --help | grep -q -- '--request-timeout' || fail "--help lacks --request-timeout"

log=$tmp/serve.log
# Under AddressSanitizer freed memory sits in a quarantine (256 MB) instead of going back to
# the system, which the RSS check below would take for a leak: no quarantine for this server
# (tests/cli_serve.sh runs the server with it). Without ASan the variable is not read.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0" \
    "$PETL" serve --model "$PETL_MODEL_DIR" --adapters "$tmp/ads" --host 127.0.0.1 --port 0 \
    --threads 2 --admin-token-file "$tmp/token" 2> "$log" &
pid=$!
wait_for_port "$log" "$pid"

load() { # load CODE NAME PATH
    expect "$1" POST /v1/tasks "${AUTH[@]}" --data-binary "{\"name\": \"$2\", \"path\": \"$3\"}"
    grep -q "$marker" "$tmp/body" && fail "load of $3 echoed the file's content: $(cat "$tmp/body")"
    grep -q "$tmp" "$tmp/body" && fail "load of $3 showed a server path: $(cat "$tmp/body")"
    return 0
}

# --- 13. POST /v1/tasks: confined to --adapters, errors without file content -----------------
load 403 a "../outside"
grep -q 'outside the adapters folder' "$tmp/body" || fail "no reason for ../: $(cat "$tmp/body")"
load 403 b "$tmp/outside"
load 403 c ".link-out"
load 403 d "sst2/../../outside"
load 403 e ".leak2" # its config is a symlink to a file outside
load 422 f ".leak"  # damaged config: the parser's message would quote it
grep -q 'damaged' "$tmp/body" || fail "no kind of failure for a damaged config: $(cat "$tmp/body")"
grep -q "$marker" "$log" || fail "the server log lacks the full reason of the refused load"
load 422 g "no-such-adapter"
load 201 h ".link-in" # a symlink that stays inside is fine
load 201 i "$tmp/ads/sst2"
expect 200 POST /v1/predict --data-binary '{"task": "h", "inputs": ["fine"]}'
echo "confined loads: ok"

# --- 9. inputs of the other shape than the adapter's ---------------------------------------
expect 400 POST /v1/predict --data-binary '{"task": "sst2", "inputs": ["fine", ["a", "b"]]}'
grep -q 'inputs\[1\]' "$tmp/body" && grep -q 'single texts' "$tmp/body" ||
    fail "no reason for a pair sent to a single-text adapter: $(cat "$tmp/body")"
expect 200 POST /v1/predict --data-binary '{"task": "sst2", "inputs": ["fine", ["one"]]}'
echo "input shapes: ok"

# --- 12. a request of long inputs beside short ones ------------------------------------------
rss() { awk '/^VmRSS:/ { print int($2 / 1024) }' "/proc/$pid/status"; }
expect 200 POST /v1/predict --data-binary '{"task": "long", "inputs": ["warm up"]}'
rss0=$(rss)
text=$(printf 'word%d ' $(seq 1 500))
{ printf '{"task": "long", "inputs": ['
  for i in $(seq 1 15); do printf '"%s %d",' "$text" "$i"; done
  printf '"%s"]}' "$text"; } > "$tmp/large.req"
"${C[@]}" -o "$tmp/large.out" -w '%{http_code}\n' --data-binary @"$tmp/large.req" \
    "$base/v1/predict" > "$tmp/large.code" &
lpid=$!
sleep 0.3
during=0 n=0
while kill -0 "$lpid" 2> /dev/null && [ "$n" -lt 200 ]; do
    code=$("${C[@]}" -o /dev/null -w '%{http_code}' \
        --data-binary '{"task": "sst2", "inputs": ["a short one"]}' "$base/v1/predict")
    [ "$code" = 200 ] || fail "a short request beside the long one: status $code"
    n=$((n + 1))
    kill -0 "$lpid" 2> /dev/null && during=$((during + 1))
done
wait "$lpid"
[ "$(cat "$tmp/large.code")" = 200 ] || fail "the long request: status $(cat "$tmp/large.code")"
grep -o '"label"' "$tmp/large.out" | wc -l | grep -qx 16 || fail "the long request: not 16 results"
echo "long request (16 x ~500 tokens, 8 pieces): $during short requests answered while it ran"
[ "$during" -ge 2 ] || fail "only $during short requests were answered while the long one ran"
sleep 0.5
rss1=$(rss)
echo "server RSS: $rss0 MB before the long request, $rss1 MB after"
[ "$rss1" -le $((rss0 + 100)) ] || fail "RSS $rss1 MB after the long request, $rss0 MB before"

kill -TERM "$pid"
wait "$pid" || fail "server exited $? after SIGTERM"
pid=
echo "cli_serve_abuse: ok"
