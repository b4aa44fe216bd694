#!/usr/bin/env bash
# `petl serve` end to end: the real server on a free loopback port (127.0.0.1 only), called with
# curl. Adapters are trained here with very short `petl train` runs on a few dozen rows of real
# GLUE SST-2 (single texts) and STS-B (pairs, regression), copied from PETL_DATA_DIR at test time
# (never committed). Checks every route and error code, predictions against `petl predict`,
# load / unload under concurrent traffic, 503 + Retry-After on a full queue, and SIGTERM.
# Environment (set by CTest): PETL, PETL_MODEL_DIR, PETL_DATA_DIR.
set -u
fail() {
    echo "cli_serve: FAIL: $*" >&2
    [ -n "${log:-}" ] && [ -f "$log" ] && tail -n 20 "$log" >&2
    exit 1
}
: "${PETL:?}" "${PETL_MODEL_DIR:?}" "${PETL_DATA_DIR:?}"
. "${0%/*}/serve_lib.sh"
command -v curl > /dev/null || fail "curl is not installed"
glue=$PETL_DATA_DIR/glue
for f in SST-2/train.tsv SST-2/dev.tsv STS-B/train.tsv STS-B/dev.tsv; do
    if [ ! -f "$glue/$f" ]; then
        exec bash "${0%/*}/skip.sh" cli_serve data "no $f under $glue"
    fi
done
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done; rm -rf "$tmp"' EXIT
trap 'exit 1' TERM INT
C=(curl -s --max-time 20)

# --- adapters --------------------------------------------------------------------------------
mkdir -p "$tmp/sst" "$tmp/sts" "$tmp/ads"
head -n 25 "$glue/SST-2/train.tsv" > "$tmp/sst/train.tsv"
head -n 9 "$glue/SST-2/dev.tsv" > "$tmp/sst/dev.tsv"
head -n 25 "$glue/STS-B/train.tsv" > "$tmp/sts/train.tsv"
head -n 9 "$glue/STS-B/dev.tsv" > "$tmp/sts/dev.tsv"
for t in sst2:sst stsb:sts; do
    "$PETL" train --model "$PETL_MODEL_DIR" --task "${t%%:*}" --data "$tmp/${t#*:}" \
        --out "$tmp/ads/${t%%:*}" --epochs 1 --batch 8 --max-len 64 --threads 2 \
        > /dev/null 2> "$tmp/train.err" || fail "petl train ${t%%:*}: $(tail -n 3 "$tmp/train.err")"
done
# An adapter for another base: same files, another content hash. Hidden (not loaded at start),
# inside --adapters (POST /v1/tasks loads only from there).
cp -r "$tmp/ads/sst2" "$tmp/ads/.foreign"
sed -i 's/"content_hash": "[0-9a-f]*"/"content_hash": "0123456789abcdef"/' \
    "$tmp/ads/.foreign/adapter_config.json"
grep -q 0123456789abcdef "$tmp/ads/.foreign/adapter_config.json" ||
    fail "could not fake a foreign base"
mkdir "$tmp/ads/.hidden-ignored" # a hidden folder is not a task
token=0123456789abcdef-test-token
printf '%s\n' "$token" > "$tmp/token"
chmod 600 "$tmp/token"
AUTH=(-H "Authorization: Bearer $token")

# --- usage -----------------------------------------------------------------------------------
"$PETL" serve --help > "$tmp/help" || fail "--help exited $?"
grep -q 'usage: petl serve' "$tmp/help" || fail "--help printed no usage"
"$PETL" serve --port 1 > /dev/null 2>&1
[ $? -eq 2 ] || fail "missing --adapters should be a usage error (2)"
"$PETL" serve --adapters "$tmp/ads" --port 70000 > /dev/null 2>&1
[ $? -eq 2 ] || fail "--port 70000 should be a usage error (2)"
"$PETL" serve --adapters "$tmp/ads" --precision fp16 > /dev/null 2> "$tmp/err"
[ $? -eq 2 ] && grep -q "unknown precision 'fp16'" "$tmp/err" ||
    fail "--precision fp16 should be a usage error (2): $(cat "$tmp/err")"
"$PETL" serve --model "$PETL_MODEL_DIR" --adapters "$tmp/none" > /dev/null 2> "$tmp/err"
[ $? -eq 1 ] && grep -q '^petl serve: ' "$tmp/err" || fail "missing adapters dir: $(cat "$tmp/err")"

# start_server LOG ARGS...: starts petl serve on a free port; sets pid and port.
start_server() {
    log=$1
    shift
    "$PETL" serve --model "$PETL_MODEL_DIR" --adapters "$tmp/ads" --host 127.0.0.1 --port 0 \
        --threads 2 "$@" 2> "$log" &
    pid=$!
    pids+=("$pid")
    wait_for_port "$log" "$pid"
}

# stop_server: SIGTERM, wait at most 60 s, expect exit 0.
stop_server() {
    kill -TERM "$pid"
    for _ in $(seq 1 600); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2> /dev/null && fail "server still running 60 s after SIGTERM"
    wait "$pid"
    local rc=$?
    [ "$rc" -eq 0 ] || fail "server exited $rc after SIGTERM"
    grep -q 'stopped' "$log" || fail "no 'stopped' line in the log"
}

body_has() { grep -q -- "$1" "$tmp/body" || fail "body lacks '$1': $(cat "$tmp/body")"; }

start_server "$tmp/serve.log" --admin-token-file "$tmp/token" --max-body 4096 --max-inputs 16
grep -q 'loaded task sst2 from' "$log" || fail "no load line for sst2"
grep -q 'loaded task stsb from' "$log" || fail "no load line for stsb"

# --- routes ----------------------------------------------------------------------------------
expect 200 GET /healthz
body_has '"status":"ok"'
expect 200 GET /v1/tasks
body_has '"name":"sst2"'
body_has '"name":"stsb"'
body_has '"regression":true'
body_has '"content_hash":"'
grep -q "\.hidden-ignored" "$tmp/body" && fail "a hidden folder was loaded"
expect 200 GET /v1/tasks/sst2
body_has '"labels":\["0","1"\]'
expect 200 GET /metrics
grep -q '^# TYPE petl_http_requests_total counter' "$tmp/body" || fail "metrics: no counter"

# --- predictions equal petl predict's ---------------------------------------------------------
# Ten dev texts of each task, as petl predict input lines and as one request.
tail -n +2 "$glue/SST-2/dev.tsv" | head -n 10 | cut -f1 > "$tmp/sst.txt"
tail -n +2 "$glue/STS-B/dev.tsv" | head -n 10 | cut -f8,9 > "$tmp/sts.txt"
jstr() { sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/","/' ; } # TSV -> JSON string body(s)
sed 's/.*/{"text": "&"}/' < <(jstr < "$tmp/sst.txt") > "$tmp/sst.jsonl"
sed 's/.*/{"text_a": "&"}/; s/","/", "text_b": "/' < <(jstr < "$tmp/sts.txt") > "$tmp/sts.jsonl"
{ printf '{"task": "sst2", "inputs": ['; jstr < "$tmp/sst.txt" | sed 's/.*/"&"/' | paste -sd,
  printf ']}'; } > "$tmp/sst.req"
{ printf '{"task": "stsb", "inputs": ['; jstr < "$tmp/sts.txt" | sed 's/.*/["&"]/' | paste -sd,
  printf ']}'; } > "$tmp/sts.req"
OMP_NUM_THREADS=2 "$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$tmp/ads/sst2" \
    < "$tmp/sst.jsonl" > "$tmp/sst.want" || fail "petl predict sst2 exited $?"
OMP_NUM_THREADS=2 "$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$tmp/ads/stsb" \
    < "$tmp/sts.jsonl" > "$tmp/sts.want" || fail "petl predict stsb exited $?"
[ "$(wc -l < "$tmp/sst.want")" -eq 10 ] && [ "$(wc -l < "$tmp/sts.want")" -eq 10 ] ||
    fail "petl predict did not write 10 lines"

# compare WANT GOT: labels equal, every number within 1e-6 (rows batched differently round
# differently in the last float bit; see docs/serving.md).
compare() {
    # One result per line: {"label": ..., "scores": [...]} or {"score": x}.
    sed -e 's/^.*"results":\[//' -e 's/\]}$//' -e 's/},{/}\n{/g' "$2" > "$2.lines"
    awk -F'[][{}:, ]+' '
        NR == FNR { a[FNR] = $0; n = FNR; next }
        {
            m = FNR
            x = a[FNR]; y = $0
            gsub(/[ "]/, "", x); gsub(/[ "]/, "", y)
            split(x, p, /[][{}:,]+/); split(y, q, /[][{}:,]+/)
            for (i in p) {
                if (p[i] ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/ && q[i] ~ /^-?[0-9.]+(e[-+]?[0-9]+)?$/) {
                    d = p[i] - q[i]; if (d < 0) d = -d; if (d > md) md = d
                } else if (p[i] != q[i]) { print "line " FNR ": " x " vs " y; bad = 1 }
            }
        }
        END { if (n != m) { print "results " n " vs " m; bad = 1 }
              if (bad) exit 1; printf "%.3g\n", md }' "$1" "$2.lines"
}
expect 200 POST /v1/predict --data-binary @"$tmp/sst.req"
cp "$tmp/body" "$tmp/sst.got"
d=$(compare "$tmp/sst.want" "$tmp/sst.got") || fail "sst2 vs petl predict: $d"
awk -v d="$d" 'BEGIN { exit !(d <= 1e-6) }' || fail "sst2 vs petl predict: max diff $d"
echo "sst2: server vs petl predict, same labels, max score diff $d"
expect 200 POST /v1/predict --data-binary @"$tmp/sts.req"
cp "$tmp/body" "$tmp/sts.got"
d=$(compare "$tmp/sts.want" "$tmp/sts.got") || fail "stsb vs petl predict: $d"
awk -v d="$d" 'BEGIN { exit !(d <= 1e-6) }' || fail "stsb vs petl predict: max diff $d"
echo "stsb: server vs petl predict, max score diff $d"

# --- errors ----------------------------------------------------------------------------------
expect 400 POST /v1/predict --data-binary '{"task": "sst2", "inputs": ["a"'
body_has 'invalid JSON'
expect 400 POST /v1/predict --data-binary ''
expect 400 POST /v1/predict --data-binary '[1, 2]'
expect 400 POST /v1/predict --data-binary '{"task": "sst2", "inputs": []}'
expect 400 POST /v1/predict --data-binary '{"task": "sst2", "inputs": [1]}'
body_has 'inputs\[0\]'
expect 400 POST /v1/predict --data-binary '{"task": "sst2", "inputs": [["a", "b", "c"]]}'
expect 400 POST /v1/predict --data-binary '{"task": "sst2", "input": ["a"]}'
body_has 'unknown field'
expect 400 POST /v1/predict --data-binary '{"task": "../etc", "inputs": ["a"]}'
expect 400 POST /v1/predict --data-binary '{"task": "sst2", "inputs": ["a\u0000b"]}'
printf '{"task": "sst2", "inputs": ["\xff"]}' > "$tmp/badutf8"
expect 400 POST /v1/predict --data-binary @"$tmp/badutf8"
expect 404 POST /v1/predict --data-binary '{"task": "nope", "inputs": ["a"]}'
body_has "no task 'nope'"
expect 404 GET /nowhere
expect 404 GET /v1/tasks/nope
expect 405 GET /v1/predict
grep -qi '^Allow: POST' "$tmp/hdr" || fail "405 without Allow: $(cat "$tmp/hdr")"
expect 405 PUT /v1/tasks
grep -qi '^Allow: GET, POST' "$tmp/hdr" || fail "405 without Allow: $(cat "$tmp/hdr")"
expect 405 POST /healthz
head -c 5000 /dev/zero | tr '\0' a > "$tmp/big"
expect 413 POST /v1/predict --data-binary @"$tmp/big"
expect 413 POST /v1/predict -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big"
expect 413 POST /v1/predict --data-binary \
    "{\"task\": \"sst2\", \"inputs\": [$(seq -s, 1 17 | sed 's/[0-9]*/"&"/g')]}"
body_has 'limit is 16'
# Long inputs are truncated to the adapter's max_len, not refused.
long=$(printf 'word %.0s' $(seq 1 400))
expect 200 POST /v1/predict --data-binary "{\"task\": \"sst2\", \"inputs\": [\"$long\"]}"

# --- admin -----------------------------------------------------------------------------------
load_hot='{"name": "hot", "path": "sst2"}'
expect 401 POST /v1/tasks --data-binary "$load_hot"
grep -qi '^WWW-Authenticate: Bearer' "$tmp/hdr" || fail "401 without WWW-Authenticate"
expect 403 POST /v1/tasks -H 'Authorization: Bearer wrong-token-wrong-token' \
    --data-binary "$load_hot"
expect 401 DELETE /v1/tasks/sst2
expect 403 DELETE /v1/tasks/sst2 -H "Authorization: Bearer ${token}x"
expect 201 POST /v1/tasks "${AUTH[@]}" --data-binary "$load_hot"
body_has '"name":"hot"'
expect 409 POST /v1/tasks "${AUTH[@]}" --data-binary "$load_hot"
expect 422 POST /v1/tasks "${AUTH[@]}" \
    --data-binary "{\"name\": \"foreign\", \"path\": \"$tmp/ads/.foreign\"}"
body_has 'content_hash'
grep -q 'refused to load task foreign' "$log" || fail "no log line for the refused load"
expect 422 POST /v1/tasks "${AUTH[@]}" --data-binary '{"name": "x", "path": "no-such-adapter"}'
expect 400 POST /v1/tasks "${AUTH[@]}" --data-binary '{"name": "x"}'
expect 404 DELETE /v1/tasks/nope "${AUTH[@]}"
expect 200 POST /v1/predict --data-binary '{"task": "hot", "inputs": ["fine"]}'
expect 200 DELETE /v1/tasks/hot "${AUTH[@]}"
grep -q 'unloaded task hot' "$log" || fail "no unload line in the log"
expect 404 POST /v1/predict --data-binary '{"task": "hot", "inputs": ["fine"]}'

# --- load / unload under concurrent traffic -----------------------------------------------------
# Four bounded client loops over sst2, stsb and "hot" while "hot" is loaded and unloaded.
# Requests to sst2 / stsb must all succeed; to hot, 200 or 404 only.
expect 201 POST /v1/tasks "${AUTH[@]}" --data-binary "$load_hot"
client() {
    for i in $(seq 1 25); do
        for t in sst2 hot stsb; do
            in='["good fun", "dull"]'
            [ "$t" = stsb ] && in='[["a man is playing", "a man plays"]]'
            code=$("${C[@]}" -o /dev/null -w '%{http_code}' \
                --data-binary "{\"task\": \"$t\", \"inputs\": $in}" "$base/v1/predict")
            echo "$t $code"
        done
    done > "$tmp/client.$1"
}
cpids=()
for k in 1 2 3 4; do
    client "$k" &
    cpids+=($!)
done
for i in $(seq 1 6); do
    expect 200 DELETE /v1/tasks/hot "${AUTH[@]}"
    sleep 0.1
    expect 201 POST /v1/tasks "${AUTH[@]}" --data-binary "$load_hot"
    sleep 0.1
done
for p in "${cpids[@]}"; do wait "$p"; done
cat "$tmp"/client.* > "$tmp/clients"
n=$(wc -l < "$tmp/clients")
[ "$n" -eq 300 ] || fail "clients made $n requests, not 300"
bad=$(grep -Ev '^(sst2|stsb) 200$|^hot (200|404)$' "$tmp/clients" | sort | uniq -c)
[ -z "$bad" ] || fail "unexpected statuses under load / unload: $bad"
echo "concurrent: $(grep -c ' 200$' "$tmp/clients") of 300 ok," \
    "$(grep -c '^hot 404$' "$tmp/clients") hot requests while unloaded"
expect 200 GET /healthz

# --- metrics -----------------------------------------------------------------------------------
expect 200 GET /metrics
for m in 'petl_http_requests_total{route="/v1/predict",code="200"}' \
    'petl_http_requests_total{route="/v1/predict",code="413"}' \
    'petl_predict_requests_total{task="sst2",code="200"}' \
    'petl_request_seconds_bucket{task="sst2",le="+Inf"}' \
    'petl_queue_seconds_count{task="stsb"}' 'petl_batch_rows_bucket{le="1"}' \
    'petl_batch_tasks_count' 'petl_tasks_loaded 3' 'petl_queue_depth 0'; do
    grep -qF "$m" "$tmp/body" || fail "metrics lack $m"
done
grep -q 'task="nope"' "$tmp/body" && fail "metrics carry a label from an unknown task name"

stop_server
grep -q 'received SIGTERM' "$log" || fail "no SIGTERM line"

# --- a full queue: 503 with Retry-After ----------------------------------------------------------
# One row per batch and one waiting request: concurrent requests of 16 rows overflow the queue.
start_server "$tmp/serve2.log" --queue 1 --max-batch 1 --batch-window-ms 0
sixteen=$(printf '"some words to classify",%.0s' $(seq 1 15))
got503=0
for attempt in 1 2 3 4 5; do
    cpids=()
    for k in $(seq 1 12); do
        "${C[@]}" -o /dev/null -D "$tmp/h503.$k" -w '%{http_code}\n' \
            --data-binary "{\"task\": \"sst2\", \"inputs\": [$sixteen \"end\"]}" \
            "$base/v1/predict" > "$tmp/c503.$k" &
        cpids+=($!)
    done
    for p in "${cpids[@]}"; do wait "$p"; done
    if grep -q 503 "$tmp"/c503.*; then got503=1; break; fi
done
[ "$got503" = 1 ] || fail "no 503 with a queue of 1 under 12 concurrent requests"
grep -l 503 "$tmp"/c503.* | head -n 1 | sed 's/c503/h503/' | xargs grep -qi '^Retry-After: 1' ||
    fail "503 without Retry-After"
grep -hv '^\(200\|503\)$' "$tmp"/c503.* && fail "statuses other than 200 / 503 on a full queue"
expect 200 GET /healthz
# SIGTERM with requests in flight: they finish, the server exits 0.
cpids=()
for k in 1 2 3; do
    "${C[@]}" -o /dev/null -w '%{http_code}\n' \
        --data-binary "{\"task\": \"sst2\", \"inputs\": [$sixteen \"end\"]}" \
        "$base/v1/predict" > "$tmp/inflight.$k" &
    cpids+=($!)
done
sleep 0.2
stop_server
for p in "${cpids[@]}"; do wait "$p"; done
grep -hv '^\(200\|503\|000\)$' "$tmp"/inflight.* && fail "in-flight requests failed at SIGTERM"

# --- --precision bf16: the server's answers are petl predict --precision bf16's ---------------
if OMP_NUM_THREADS=2 "$PETL" predict --model "$PETL_MODEL_DIR" --adapter "$tmp/ads/sst2" \
    --precision bf16 < "$tmp/sst.jsonl" > "$tmp/sst16.want" 2> "$tmp/err"; then
    start_server "$tmp/serve3.log" --precision bf16
    expect 200 POST /v1/predict --data-binary @"$tmp/sst.req"
    cp "$tmp/body" "$tmp/sst16.got"
    d=$(compare "$tmp/sst16.want" "$tmp/sst16.got") || fail "bf16 sst2 vs petl predict: $d"
    cmp -s "$tmp/sst16.want" "$tmp/sst.want" && fail "bf16 predictions equal fp32's bit for bit"
    stop_server
else
    grep -q 'AVX512-BF16' "$tmp/err" || fail "bf16 predict: $(cat "$tmp/err")"
fi
echo "cli_serve: ok"
