#!/usr/bin/env python3
"""Known answers for the counter-based dropout (src/rng.h), written from its description alone:
the key derivation, the 32-bit hash and the keep masks that tests/test_rng.c checks. Plain
Python, no dependencies. Usage: scripts/reference/gen-dropout-known-answers.py"""
import struct

M64, M32 = (1 << 64) - 1, (1 << 32) - 1


def mix64(z):  # splitmix64's finaliser
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def dropout_key(seed, purpose, a, row):
    h = mix64(seed ^ 0x243F6A8885A308D3)
    h = mix64(h ^ ((purpose + (1 << 63) + 0x13198A2E03707344) & M64))
    h = mix64(h ^ ((a + 0xA4093822299F31D0) & M64))
    return mix64(h ^ ((row + 0x082EFA98EC4E6C89) & M64))


def lowbias32(x):
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    return x ^ (x >> 16)


def fmix32(x):
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & M32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & M32
    return x ^ (x >> 16)


def dropout_hash(key, c):
    k0 = key & M32
    k1 = ((key >> 32) ^ (((c >> 32) * 0x9E3779B9) & M32)) & M32
    return fmix32(lowbias32((c & M32) ^ k0) ^ k1)


def keep_bits(key, p, start, n):
    """Bit i: element start + i is kept (its 16-bit half of the pair's hash >= p 2^16)."""
    p = struct.unpack("f", struct.pack("f", p))[0]  # the float the C test passes
    thr = int(p * 65536 + 0.5)
    bits = 0
    for i in range(n):
        e = start + i
        u = dropout_hash(key, e >> 1)
        half = u >> 16 if e & 1 else u & 0xFFFF
        bits |= (half >= thr) << i
    return bits


PETL_RNG_DROPOUT_HIDDEN = 5
k = dropout_key(1, PETL_RNG_DROPOUT_HIDDEN, 2, 3)
print(f"petl_dropout_key(1, PETL_RNG_DROPOUT_HIDDEN, 2, 3) = {k:#018x}")
for key, c in [(k, 0), (k, 1), (k, 1000), (0x0123456789ABCDEF, 7),
               (0x0123456789ABCDEF, (1 << 32) + 7)]:
    print(f"petl_dropout_hash({key:#x}, {c}) = {dropout_hash(key, c):#010x}")
for p, start in [(0.1, 0), (0.5, 0), (0.5, (1 << 33) + 1)]:
    print(f"mask p {p} start {start}: {keep_bits(k, p, start, 32):#010x}")
