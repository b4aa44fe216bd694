#!/usr/bin/env python3
"""Writes crafted .safetensors files and the reference reader's verdict on each to
tests/golden/safetensors/ (manifest.tsv). The crafted files are named *.st, not
*.safetensors, so that nothing in the repository looks like model weights. tests/test_safetensors.c opens every file with petl
and checks that it agrees.

The verdict comes from the real reader: safetensors.safe_open (the Rust validation every
loader goes through: it checks the whole header and layout when the file is opened), then the
metadata and every tensor's shape and dtype through get_slice. Each case declares
what petl must do:
  ok      the reference accepts, petl must accept
  error   the reference rejects, petl must reject
  strict  the reference accepts, petl deliberately rejects (see the note)
The script stops if the reference disagrees with a declaration, so a new safetensors release
that changes behaviour shows up here rather than as a silent drift.

Manifest columns: file, expect, detail (a substring petl's error message must contain, or
"-"), note (why; for errors, the start of the reference's message).

Usage: .venv-ref/bin/python scripts/reference/gen-safetensors-cases.py
"""
import json
import os
import struct
import sys
import tempfile

import safetensors
from safetensors import safe_open

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "safetensors")


def st(header, data=b"", n=None, raw=False):
    """A file: 8-byte length (n, default the header's), header (str/bytes/dict), data."""
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode("utf-8")
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def ent(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


F1 = ent("F32", [1], 0, 4)  # one float at the start of the buffer
Z4 = b"\0" * 4
ONE = struct.pack("<f", 1.5)

CASES = [
    # --- valid files
    ("ok_basic", "ok", st({"__metadata__": {"format": "pt"}, "a": ent("F32", [2], 0, 8),
                           "b": ent("I64", [1, 1], 8, 16)}, b"\0" * 16), "-", "two tensors"),
    ("ok_unsorted", "ok", st({"b": ent("F32", [1], 4, 8), "a": F1}, b"\0" * 8), "-",
     "header order differs from offset order"),
    ("ok_scalar", "ok", st({"s": ent("F32", [], 0, 4)}, ONE), "-", "rank-0 scalar"),
    ("ok_zero_size", "ok", st({"z": ent("F32", [0, 3], 0, 0)}), "-", "zero-size tensor only"),
    ("ok_zero_shared", "ok", st({"z": ent("F16", [0], 0, 0), "a": F1, "y": ent("U8", [2, 0], 4, 4)},
                                Z4), "-", "zero-size tensors at the start and the end"),
    ("ok_empty", "ok", st("{}"), "-", "no tensors"),
    ("ok_meta_empty", "ok", st('{"__metadata__":{}}'), "-", "empty metadata"),
    ("ok_lead_ws", "ok", st(' \t\n{"a":' + json.dumps(F1) + "}", Z4), "-", "leading whitespace"),
    ("ok_trail_ws", "ok", st('{"a":' + json.dumps(F1) + "} \t\r\n", Z4), "-",
     "trailing JSON whitespace"),
    ("ok_padded", "ok", st('{"a":' + json.dumps(F1) + "}" + " " * 9, Z4), "-",
     "header padded with spaces"),
    ("ok_unaligned", "ok", st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
                              struct.pack("<2f", 1.0, -2.0)), "-", "data at an odd offset"),
    ("ok_unicode", "ok", st('{"\\u00e9t\u00e9":' + json.dumps(F1) + ',"":{"dtype":"U8",'
                            '"shape":[1],"data_offsets":[4,5]}}', b"\0" * 5), "-",
     "escaped and raw UTF-8 names, an empty name"),
    ("ok_all_dtypes", "ok", None, "-", "each dtype petl knows, one element"),
    ("ok_big_dim_empty", "ok", st({"a": ent("U8", [4611686018427387904, 0], 0, 0)}), "-",
     "a dimension of 2^62 times 0 is empty"),
    ("ok_zero_then_huge", "ok", st({"a": ent("U8", [0, 4294967296, 4294967296], 0, 0)}), "-",
     "0 x 2^32 x 2^32: the zero comes first, no overflow"),
    # --- invalid for both
    ("err_empty", "error", b"", "shorter than the 8-byte", "0 bytes"),
    ("err_short", "error", b"\x02\0\0\0\0", "shorter than the 8-byte", "5 bytes"),
    ("err_header_too_large", "error", st("{}", n=100000001), "over the limit",
     "N = 100,000,001"),
    ("err_header_past_end", "error", st("{}", n=100), "runs past the end", "N beyond the file"),
    ("err_header_zero", "error", st(""), "invalid JSON", "N = 0"),
    ("err_data_short", "error", st({"a": ent("F32", [2], 0, 8)}, Z4), "past the end of the data",
     "4 of 8 data bytes"),
    ("err_trailing", "error", st({"a": F1}, Z4 + b"\0"), "trailing bytes", "one byte too many"),
    ("err_overlap", "error", st({"a": ent("F32", [2], 0, 8), "b": ent("F32", [1], 4, 8)},
                                b"\0" * 8), "overlap", "b overlaps a"),
    ("err_gap", "error", st({"a": F1, "b": ent("F32", [1], 8, 12)}, b"\0" * 12), "gap",
     "4 unused bytes"),
    ("err_not_from_zero", "error", st({"a": ent("F32", [1], 4, 8)}, b"\0" * 8), "expected 0",
     "first tensor at 4"),
    ("err_zero_past_end", "error", st({"a": F1, "z": ent("U8", [0], 8, 8)}, Z4), "expected 4",
     "zero-size tensor beyond the data"),
    ("err_end_before_begin", "error", st({"a": ent("U8", [0], 4, 0)}, Z4), "end before",
     "data_offsets [4, 0]"),
    ("err_size_mismatch", "error", st({"a": ent("F32", [3], 0, 8)}, b"\0" * 8), "needs 12",
     "shape [3] F32 in 8 bytes"),
    ("err_shape_overflow", "error", st({"a": ent("F32", [4294967296, 4294967296], 0, 0)}),
     "overflows", "product 2^64 wraps to 0"),
    ("err_bytes_wrap", "error", st({"a": ent("F32", [4611686018427387904], 0, 0)}), "overflows",
     "2^62 elements x 4 bytes wraps to 0"),
    ("err_dtype_unknown", "error", st({"a": ent("F31", [1], 0, 4)}, Z4), "unknown dtype",
     "F31"),
    ("err_dtype_lowercase", "error", st({"a": ent("f32", [1], 0, 4)}, Z4), "unknown dtype",
     "f32"),
    ("err_dtype_number", "error", st('{"a":{"dtype":9,"shape":[1],"data_offsets":[0,4]}}', Z4),
     "dtype is not a string", "dtype 9"),
    ("err_offset_real", "error", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}',
                                    Z4), "data_offsets", "4.0"),
    ("err_offset_exp", "error", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}',
                                   Z4), "data_offsets", "4e0"),
    ("err_offset_negative", "error", st('{"a":{"dtype":"U8","shape":[0],"data_offsets":[-4,-4]}'
                                        '}'), "negative", "-4"),
    ("err_offset_minus_zero", "error", st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[-0,1]'
                                          '}}', b"\0"), "negative", "-0"),
    ("err_offset_2p64", "error", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,'
                                    '18446744073709551616]}}', Z4), "too big", "2^64"),
    ("err_offset_u64max", "error", st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,'
                                      '18446744073709551615]}}', b"\0"), "too big", "2^64 - 1"),
    ("err_offsets_three", "error", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}}',
                                      Z4), "two non-negative", "three offsets"),
    ("err_shape_negative", "error", st('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}',
                                       Z4), "negative", "shape [-1]"),
    ("err_shape_string", "error", st('{"a":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}}',
                                     Z4), "shape[0]", 'shape ["1"]'),
    ("err_shape_real", "error", st('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}',
                                   Z4), "shape[0]", "shape [1.5]"),
    ("err_missing_shape", "error", st('{"a":{"dtype":"F32","data_offsets":[0,4]}}', Z4),
     "missing 'shape'", "no shape"),
    ("err_missing_dtype", "error", st('{"a":{"shape":[1],"data_offsets":[0,4]}}', Z4),
     "missing 'dtype'", "no dtype"),
    ("err_entry_array", "error", st('{"a":[1]}'), "expected an object", "entry is an array"),
    ("err_top_array", "error", st("[]"), "not a JSON object", "header is an array"),
    ("err_trail_garbage", "error", st("{}x"), "invalid JSON", "x after the object"),
    ("err_trail_nul", "error", st("{}\0\0"), "control byte", "NUL padding"),
    ("err_trail_vt", "error", st("{}\x0b"), "control byte", "vertical tab is not JSON space"),
    ("err_bom", "error", st(b"\xef\xbb\xbf{}"), "invalid JSON", "byte-order mark"),
    ("err_utf8_invalid", "error", st(b'{"\xff":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
                                     b"\0"), "invalid JSON", "byte 0xff in a name"),
    ("err_utf8_overlong", "error", st(b'{"\xc0\xaf":{"dtype":"U8","shape":[1],'
                                      b'"data_offsets":[0,1]}}', b"\0"), "invalid JSON",
     "overlong encoding"),
    ("err_utf8_surrogate", "error", st(b'{"\xed\xa0\x80":{"dtype":"U8","shape":[1],'
                                       b'"data_offsets":[0,1]}}', b"\0"), "invalid JSON",
     "UTF-8-encoded surrogate"),
    ("err_lone_surrogate_escape", "error", st('{"\\ud800":{"dtype":"U8","shape":[1],'
                                              '"data_offsets":[0,1]}}', b"\0"), "invalid JSON",
     "escaped lone surrogate"),
    ("err_control_in_name", "error", st(b'{"a\x01":{"dtype":"U8","shape":[1],'
                                        b'"data_offsets":[0,1]}}', b"\0"), "control byte",
     "raw control character in a string"),
    ("err_meta_int", "error", st('{"__metadata__":{"format":1}}'), "not a string",
     "metadata value 1"),
    ("err_meta_array", "error", st('{"__metadata__":[]}'), "not an object", "metadata array"),
    ("err_tensor_named_metadata", "error", st({"__metadata__": F1}, Z4), "named __metadata__",
     "a tensor entry under __metadata__"),
    ("err_deep", "error", st('{"__metadata__":' + "[" * 100 + "]" * 100 + "}"), "nests deeper",
     "nesting 101 deep"),
    # --- the reference accepts, petl refuses on purpose
    ("strict_duplicate_name", "strict", st('{"a":' + json.dumps(F1) + ',"a":' + json.dumps(F1)
                                           + "}", Z4), "duplicate",
     "reference silently keeps the last"),
    ("strict_meta_duplicate_key", "strict", st('{"__metadata__":{"k":"1","k":"2"}}'), "duplicate",
     "reference keeps the last value"),
    ("strict_extra_key", "strict", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],'
                                      '"x":1}}', Z4), "unknown key 'x'",
     "reference ignores unknown entry keys"),
    ("strict_deep_extra_key", "strict", st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]'
                                           ',"x":' + "[" * 10 + "]" * 10 + "}}", Z4),
     "nests deeper", "deep nesting under an ignored key"),
    ("strict_meta_null", "strict", st('{"__metadata__":null}'), "not an object",
     "reference takes null as no metadata"),
    ("strict_nul_in_name", "strict", st('{"a\\u0000b":' + json.dumps(F1) + "}", Z4), "NUL",
     "names are C strings"),
    ("strict_rank9", "strict", st({"a": ent("F32", [1] * 9, 0, 4)}, Z4), "rank 9",
     "PETL_ST_MAX_RANK is 8 (PETL_ERR_UNSUPPORTED)"),
    ("strict_dtype_c64", "strict", st({"a": ent("C64", [1], 0, 8)}, b"\0" * 8), "C64",
     "known to the reference, not to petl (PETL_ERR_UNSUPPORTED)"),
    ("strict_dtype_f8_e8m0", "strict", st({"a": ent("F8_E8M0", [1], 0, 1)}, b"\0"), "F8_E8M0",
     "known to the reference, not to petl (PETL_ERR_UNSUPPORTED)"),
]


def all_dtypes():
    sizes = {"BOOL": 1, "U8": 1, "I8": 1, "U16": 2, "I16": 2, "F16": 2, "BF16": 2, "U32": 4,
             "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
    header, at = {}, 0
    for name, size in sizes.items():
        header[name.lower()] = ent(name, [1], at, at + size)
        at += size
    return st(header, b"\0" * at)


def reference_verdict(path):
    """(True, "") if the reference reader accepts the file, else (False, its message)."""
    try:
        with safe_open(path, framework="np") as f:
            f.metadata()
            for k in f.keys():
                sl = f.get_slice(k)
                sl.get_shape()
                sl.get_dtype()
        return True, ""
    except Exception as e:  # the reader raises SafetensorError, OSError, ...
        return False, " ".join(str(e).split())[:70]


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".st"):
            os.unlink(os.path.join(OUT, f))
    rows, bad = [], 0
    for name, expect, data, detail, note in CASES:
        if data is None:
            data = all_dtypes()
        fname = name + ".st"
        path = os.path.join(OUT, fname)
        with open(path, "wb") as f:
            f.write(data)
        ok, msg = reference_verdict(path)
        if ok != (expect in ("ok", "strict")):
            print(f"{name}: declared {expect}, reference says {'ok' if ok else msg}",
                  file=sys.stderr)
            bad += 1
        if not ok:
            note = f"{note}; reference: {msg}"
        rows.append(f"{fname}\t{expect}\t{detail}\t{note}")
    with open(os.path.join(OUT, "manifest.tsv"), "w") as f:
        f.write(f"# generated by scripts/reference/gen-safetensors-cases.py with safetensors "
                f"{safetensors.__version__}\n# file\texpect\tdetail\tnote\n")
        f.write("\n".join(rows) + "\n")
    print(f"{len(rows)} cases written to {OUT}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
