#!/usr/bin/env bash
# Sourced by the petl serve tests (tests/cli_serve*.sh), which define fail(), tmp (a scratch
# folder) and C (the curl command with its options).
# wait_for_port LOG PID: waits (at most 60 s) for the server PID to print its loopback address in
# LOG; sets port and base (http://127.0.0.1:PORT). Fails when the server exits first. LOG must be
# new to this server: an earlier server's log may be read before the new one truncates it.
wait_for_port() {
    local log=$1 pid=$2
    port=
    for _ in $(seq 1 600); do
        port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log")
        [ -n "$port" ] && break
        kill -0 "$pid" 2> /dev/null || fail "server exited at start: $(cat "$log")"
        sleep 0.1
    done
    [ -n "$port" ] || fail "server did not start within 60 s"
    base=http://127.0.0.1:$port
}

# req METHOD PATH [curl args...]: prints the status code of a request to $base; the body goes
# to $tmp/body, the headers to $tmp/hdr.
req() {
    local m=$1 p=$2
    shift 2
    "${C[@]}" -X "$m" -o "$tmp/body" -D "$tmp/hdr" -w '%{http_code}' "$@" "$base$p"
}

# expect CODE METHOD PATH [curl args...]: req, failing unless the status is CODE.
expect() {
    local want=$1
    shift
    local got
    got=$(req "$@")
    [ "$got" = "$want" ] || fail "$1 $2: status $got, expected $want: $(cat "$tmp/body")"
}
