#!/usr/bin/env bash
# Every global symbol the library defines carries the petl_ prefix, so that linking libpetl.a
# never collides with a program's own matmul_forward or head_forward. usage: symbols.sh LIBPETL
set -u
lib=${1:?usage: symbols.sh LIBPETL}
command -v nm >/dev/null || exec bash "$(dirname "$0")/skip.sh" symbols tool "no nm: binutils"
syms=$(nm -g --defined-only "$lib" 2>/dev/null | awk '$2 ~ /^[TDBRVWGS]$/ {print $3}') || {
    echo "symbols: FAIL: nm could not read $lib" >&2
    exit 1
}
[ -n "$syms" ] || { echo "symbols: FAIL: no symbols in $lib" >&2; exit 1; }
# (AddressSanitizer adds an __odr_asan.NAME twin of each global variable: NAME is checked)
bad=$(sed 's/^__odr_asan\.//' <<<"$syms" | grep -v '^petl_' | sort -u)
if [ -n "$bad" ]; then
    echo "symbols: FAIL: $(wc -l <<<"$bad") global symbols without the petl_ prefix:" >&2
    echo "$bad" >&2
    exit 1
fi
echo "symbols: ok: $(wc -l <<<"$syms") global symbols, all petl_*"
