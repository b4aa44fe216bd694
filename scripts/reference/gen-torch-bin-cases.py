#!/usr/bin/env python3
"""Writes torch.save files and crafted (malicious or broken) ones to tests/golden/torchbin/,
with the verdict each must get from petl (manifest.tsv), for tests/test_torch_bin.c.

Files are named *.tbin, not *.bin or *.pt, so that nothing in the repository looks like model
weights. For every file petl must accept, NAME.st holds the same tensors as torch.load gives
them (made contiguous), written by safetensors: the C test checks that petl reads the .tbin
bit for bit as the .st. tiny-roberta.tbin is tests/golden/tiny-roberta/model.st re-saved with
torch.save (the C test runs the model from either file).

The reference verdict comes from torch.load(weights_only=True), torch's restricted
unpickler, which never runs what a file names; a file this script wrote itself from benign
objects is also loaded with the full unpickler where weights_only lacks an opcode (pickle
protocol 4). A crafted file is never given to the full unpickler. Each case declares:
  ok      torch loads it, petl must read the same tensors
  error   torch refuses it, petl must refuse it
  strict  torch loads it, petl deliberately refuses it (see the note)
The script stops if torch disagrees with a declaration.

Manifest columns: file, expect, detail (for ok: the safetensors file under tests/golden/ with
the same tensors; else a substring petl's error message must contain), note.

Usage: .venv-ref/bin/python scripts/reference/gen-torch-bin-cases.py
"""
import collections
import io
import os
import struct
import zipfile

import torch
from safetensors.torch import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "torchbin")
# What the os.system case would create if anything ran it (tests/test_torch_bin.c checks).
PWNED = "/tmp/petl-torchbin-pwned"


def saved(obj, **kw):
    """torch.save into memory: the archive folder is then "archive/", as in HF's files."""
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


# ------------------------------------------------------------------ crafted pickles (protocol 2)
def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(i):
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)
    return b"J" + struct.pack("<i", i)


def p_tuple(*parts):
    return b"(" + b"".join(parts) + b"t"


def p_global(mod, name):
    return b"c" + f"{mod}\n{name}\n".encode()


def p_storage(stype, key, numel):
    return p_tuple(p_str("storage"), p_global("torch", stype), p_str(key), p_str("cpu"),
                   p_int(numel)) + b"Q"


def p_tensor(storage, offset, size, stride):
    """_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())"""
    hooks = p_global("collections", "OrderedDict") + b")R"
    return (p_global("torch._utils", "_rebuild_tensor_v2") +
            p_tuple(storage, p_int(offset), p_tuple(*map(p_int, size)),
                    p_tuple(*map(p_int, stride)), b"\x89", hooks) + b"R")


def p_dict(items, tail=b"", ordered=False):
    """{key: value-opcodes} (an OrderedDict when ordered), then tail (before STOP)."""
    body = b"".join(p_str(k) + v for k, v in items)
    empty = p_global("collections", "OrderedDict") + b")R" if ordered else b"}"
    return b"\x80\x02" + empty + b"(" + body + b"u" + tail + b"."


def tzip(pkl, storages=None, byteorder=b"little", method=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        z.writestr("archive/data.pkl", pkl)
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


F32x4 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.25)
GOOD_T = p_tensor(p_storage("FloatStorage", "0", 4), 0, [2, 2], [2, 1])


def crafted_ok():
    """Every opcode of protocol 2 petl takes, in the _metadata that BUILD sets: a list with
    APPEND / APPENDS, a float, None, True, LONG1, BININT, BININT2, LONG_BINPUT / LONG_BINGET,
    TUPLE1..3; the tensor's offset as LONG1 and its storage memoised and fetched again."""
    meta = (b"}" + p_str("_metadata") + b"}" +
            p_str("") + b"]" + p_int(1) + b"a(" + b"G" + struct.pack(">d", 1.5) + b"N\x88" +
            b"\x8a\x02\x00\x01" + b"J\xff\xff\xff\xff" + b"M\x34\x12e" +
            b"r\x00\x01\x00\x00" + b"s" +
            p_str("t") + p_int(1) + b"\x85" + p_int(2) + p_int(3) + b"\x86" + b"j\x00\x01\x00\x00" +
            b"\x87s" + b"s")
    storage = p_storage("FloatStorage", "0", 4) + b"q\x07"
    second = (p_global("torch._utils", "_rebuild_tensor_v2") +
              p_tuple(b"h\x07", b"\x8a\x01\x02", p_tuple(p_int(2)), p_tuple(p_int(1)), b"\x88",
                      p_global("collections", "OrderedDict") + b")R") + b"R")
    items = [("w", p_tensor(storage, 0, [2, 2], [2, 1])), ("tail", second)]
    return tzip(p_dict(items, tail=meta + b"b", ordered=True), {"0": F32x4})


def state_dict():
    sd = collections.OrderedDict()
    sd["f32"] = torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7
    base = (torch.arange(10, dtype=torch.float32) - 4.5).to(torch.float16)
    sd["f16.first"] = base[2:5]  # two views of one storage, at offsets 2 and 5
    sd["f16.second"] = base[5:]
    sd["f64.scalar"] = torch.tensor(3.5, dtype=torch.float64)
    sd["bf16.empty"] = torch.zeros(0, 4, dtype=torch.bfloat16)
    sd["bf16"] = torch.tensor([[1.5, -0.25], [1e30, -7.0]], dtype=torch.bfloat16)
    sd["i64"] = torch.tensor([1, -2, 2**40], dtype=torch.int64)
    sd["i32"] = torch.tensor([7, -8], dtype=torch.int32)
    sd["i16"] = torch.tensor([300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-5, 5], dtype=torch.int8)
    sd["u8"] = torch.tensor([250], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["param"] = torch.nn.Parameter(torch.ones(2, 2, 1))
    sd._metadata = collections.OrderedDict({"": {"version": 1}, "f32": {"version": 2}})
    return sd


def v3_dict():
    x = torch.tensor([0.5, -1.0, 2.0])
    return {"f8e4m3": x.to(torch.float8_e4m3fn), "f8e5m2": x.to(torch.float8_e5m2),
            "u16": torch.tensor([1, 65535], dtype=torch.uint16),
            "u32": torch.tensor([4000000000], dtype=torch.uint32),
            "u64": torch.tensor([2**63 + 5], dtype=torch.uint64)}


def tiny_roberta():
    sd = load_file(os.path.join(ROOT, "tests", "golden", "tiny-roberta", "model.st"))
    return saved(collections.OrderedDict(sd))


def tied():
    w = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    return saved(collections.OrderedDict([("emb.weight", w), ("head.weight", w)]))


def deflated(data):
    """The same archive with every entry deflated."""
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename))
    return buf.getvalue()


SMALL = saved(collections.OrderedDict([("a", torch.arange(4, dtype=torch.float32))]))
OS_SYSTEM = tzip(b"\x80\x02" + p_global("os", "system") + p_tuple(p_str("touch " + PWNED)) +
                 b"R.")
EVAL = tzip(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93" +
            b"\x8c\x10print('pwned')\x85R.")
NESTED = tzip(p_dict([("w", GOOD_T), ("x", p_tuple(p_int(1), p_global("posix", "system")))]),
              {"0": F32x4})
REDUCE_STORAGE = tzip(p_dict([("w", p_global("torch", "FloatStorage") + p_tuple(p_int(4)) +
                                b"R")]))
INST = tzip(b"\x80\x02(" + p_str("touch " + PWNED) + b"ios\nsystem\n.")

CASES = [
    # --- real torch.save files
    ("ok_state", "ok", saved(state_dict()), "-",
     "OrderedDict with _metadata; F32 F16 F64 BF16 I64 I32 I16 I8 U8 BOOL, a scalar, an empty "
     "tensor, two views of one storage at offsets, a Parameter"),
    ("ok_v3", "ok", saved(v3_dict()), "-",
     "plain dict; float8 and uint16..64 (_rebuild_tensor_v3 over UntypedStorage)"),
    ("ok_tied", "ok", tied(), "-", "one tensor under two names (memo)"),
    ("ok_proto4", "ok", saved(state_dict(), pickle_protocol=4), "-",
     "pickle protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL"),
    ("ok_opcodes", "ok", crafted_ok(), "-",
     "crafted: every protocol-2 opcode petl takes, LONG1 offset, memoised storage"),
    ("tiny-roberta", "ok", tiny_roberta(), "-", "tests/golden/tiny-roberta/model.st re-saved"),
    # --- malicious: torch refuses them too, without running them
    ("err_os_system", "error", OS_SYSTEM, "global os.system is not allowed",
     "GLOBAL os.system + REDUCE: runs a shell command in pickle.load"),
    ("err_eval_stack_global", "error", EVAL, "global builtins.eval is not allowed",
     "STACK_GLOBAL builtins.eval + REDUCE"),
    ("err_nested_global", "error", NESTED, "global posix.system is not allowed",
     "a global inside a tuple inside the dict, never called"),
    ("err_reduce_storage", "error", REDUCE_STORAGE, "REDUCE calls torch.FloatStorage",
     "REDUCE on an allowed global that is not a callable"),
    ("err_inst", "error", INST, "opcode 0x69 ('i') is not allowed",
     "INST: imports and calls os.system without GLOBAL"),
    # --- broken
    ("err_truncated_half", "error", SMALL[: len(SMALL) // 2], "no zip end record",
     "cut in half"),
    ("err_truncated_tail", "error", SMALL[:-1], "no zip end record", "last byte cut"),
    ("err_no_stop", "error", tzip(p_dict([("w", GOOD_T)])[:-1], {"0": F32x4}), "no STOP",
     "data.pkl without its STOP"),
    ("err_view_past_end", "error",
     tzip(p_dict([("w", p_tensor(p_storage("FloatStorage", "0", 4), 2, [3], [1]))]),
          {"0": F32x4}),
     "tensor 'w' (3 elements of F32 from element 2) runs past the end of its storage",
     "offset 2 + 3 elements in a storage of 4"),
    ("err_missing_storage", "error", tzip(p_dict([("w", GOOD_T)])),
     "storage '0' has no record archive/data/0", "no data/0"),
    ("err_storage_size", "error", tzip(p_dict([("w", GOOD_T)]), {"0": F32x4[:8]}),
     "but archive/data/0 holds 8", "record shorter than numel x 4"),
    ("err_byteorder", "error", tzip(p_dict([("w", GOOD_T)]), {"0": F32x4}, b"middle"),
     "neither little nor big", "unknown byte order"),
    # --- torch reads these, petl refuses them on purpose
    ("strict_noncontig", "strict", saved({"t": torch.arange(6.0).reshape(2, 3).t()}),
     "tensor 't' is not contiguous (size [3, 2], stride [1, 3])",
     "a transposed view: petl reads contiguous tensors only"),
    ("strict_compressed", "strict", deflated(SMALL), "is compressed (method 8, deflate)",
     "re-zipped with deflate: torch.save writes stored entries"),
    ("strict_big_endian", "strict", tzip(p_dict([("w", GOOD_T)]), {"0": F32x4}, b"big"),
     "big-endian", "torch swaps bytes; petl does not"),
    ("strict_legacy", "strict",
     saved({"a": torch.ones(2)}, _use_new_zipfile_serialization=False), "legacy format",
     "the pre-1.6 format"),
    ("strict_not_dict", "strict", saved([torch.ones(2)]), "holds a list, not a state dict",
     "a list of tensors"),
    ("strict_non_tensor", "strict", saved({"w": torch.ones(1), "epoch": 3}),
     "entry 'epoch' is of type int, not a tensor", "a training checkpoint, not a state dict"),
    ("strict_dup_key", "strict", tzip(p_dict([("w", GOOD_T), ("w", GOOD_T)]), {"0": F32x4}),
     "tensor 'w' appears twice", "Python keeps the last"),
]


def reference(name, data):
    """torch's verdict and, when it loads the file, what it loads."""
    try:
        return torch.load(io.BytesIO(data), weights_only=True), None
    except Exception as e:  # noqa: BLE001 - any refusal is the verdict
        if name == "ok_proto4":  # written above by torch.save from benign tensors
            return torch.load(io.BytesIO(data), weights_only=False), None
        text = str(e)
        for mark in ("WeightsUnpickler error:", "Unsupported global:"):  # after torch's advice
            if mark in text:
                text = mark + " " + text.split(mark, 1)[1].strip()
                break
        first = (text.splitlines() or [""])[0][:80]
        return None, f"{type(e).__name__}: {first}"


def main():
    os.makedirs(OUT, exist_ok=True)
    if os.path.exists(PWNED):
        os.remove(PWNED)
    rows = []
    for name, expect, data, detail, note in CASES:
        obj, refusal = reference(name, data)
        if (refusal is None) != (expect in ("ok", "strict")):
            raise SystemExit(f"{name}: declared {expect}, torch says {refusal or 'accepted'}")
        with open(os.path.join(OUT, name + ".tbin"), "wb") as f:
            f.write(data)
        if expect == "ok" and name == "tiny-roberta":  # the same tensors as the model.st
            ref = load_file(os.path.join(ROOT, "tests", "golden", "tiny-roberta", "model.st"))
            assert ref.keys() == obj.keys() and all(torch.equal(ref[k], obj[k]) for k in ref)
            detail = "tiny-roberta/model.st"
        elif expect == "ok":
            st = os.path.join(OUT, name + ".st")
            save_file({k: v.detach().contiguous().clone() for k, v in obj.items()}, st)
            os.chmod(st, 0o644)
            detail = "torchbin/" + name + ".st"
        if expect == "error":
            note = f"{note} (torch: {refusal})"
        rows.append("\t".join([name + ".tbin", expect, detail, note.replace("\t", " ")]))
    if os.path.exists(PWNED):
        raise SystemExit("a malicious case ran: " + PWNED + " exists")
    with open(os.path.join(OUT, "manifest.tsv"), "w") as f:
        f.write("# file\texpect\tdetail\tnote (scripts/reference/gen-torch-bin-cases.py)\n")
        f.write("\n".join(rows) + "\n")
    print(f"{len(rows)} cases in {OUT}")


if __name__ == "__main__":
    main()
