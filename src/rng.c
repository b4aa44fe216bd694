/* Pseudo-random numbers for training: xoshiro256** seeded by splitmix64, keyed streams, the
 * samplers the trainer needs, and counter-based dropout (see rng.h for the determinism rules). */
#include "rng.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <math.h>
#include <string.h>

#define TWO_PI 6.283185307179586476925286766559
#define INV_2_53 (1.0 / 9007199254740992.0) /* 2^-53 */
#define INV_2_24 (1.0f / 16777216.0f)       /* 2^-24 */

/* splitmix64's output function: a bijection on 64 bits with full avalanche, so that keys that
 * differ in one bit give unrelated words. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

void petl_rng_seed(petl_rng *r, uint64_t seed) {
    /* splitmix64 expands the seed, as the xoshiro authors recommend: nearby seeds give
     * unrelated states. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x += 0x9e3779b97f4a7c15ULL;
        r->s[i] = mix64(x);
    }
    /* All four words zero would be a fixed point; splitmix64 practically never gives it, but a
     * generator that silently returns zeros forever is worth one branch. */
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0) r->s[0] = 0x9e3779b97f4a7c15ULL;
}

/* The 64-bit hash of a key (seed, purpose, a, b), shared by the keyed streams and the dropout
 * keys. Each word goes through a bijective mix before the next is folded in, so two keys that
 * share a prefix and differ in the last word always give different hashes. The added odd
 * constants keep (0, 0, 0, 0)-like keys away from the trivial input. */
static uint64_t key_hash(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
    uint64_t h = mix64(seed ^ 0x243f6a8885a308d3ULL);
    h = mix64(h ^ (purpose + 0x13198a2e03707344ULL));
    h = mix64(h ^ (a + 0xa4093822299f31d0ULL));
    return mix64(h ^ (b + 0x082efa98ec4e6c89ULL));
}

petl_rng petl_rng_stream(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
    petl_rng r;
    petl_rng_seed(&r, key_hash(seed, purpose, a, b));
    return r;
}

uint64_t petl_rng_next(petl_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

petl_rng petl_rng_split(petl_rng *r) {
    petl_rng child;
    petl_rng_seed(&child, petl_rng_next(r));
    return child;
}

void petl_rng_save(const petl_rng *r, uint8_t out[PETL_RNG_STATE_BYTES]) {
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 8; k++)
            out[8 * i + k] = (uint8_t)(r->s[i] >> (8 * k));
}

int petl_rng_load(petl_rng *r, const uint8_t in[PETL_RNG_STATE_BYTES]) {
    uint64_t s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = 0;
        for (int k = 0; k < 8; k++)
            s[i] |= (uint64_t)in[8 * i + k] << (8 * k);
    }
    if ((s[0] | s[1] | s[2] | s[3]) == 0) return -1;
    for (int i = 0; i < 4; i++)
        r->s[i] = s[i];
    return 0;
}

float petl_rng_uniform(petl_rng *r) {
    /* The top 24 bits are exactly representable in a float: no rounding up to 1.0. */
    return (float)(petl_rng_next(r) >> 40) * INV_2_24;
}

double petl_rng_uniform_double(petl_rng *r) {
    return (double)(petl_rng_next(r) >> 11) * INV_2_53;
}

uint64_t petl_rng_below(petl_rng *r, uint64_t n) {
    if (n == 0) return 0;
    /* Reject the lowest (2^64 mod n) values so that every residue is equally likely. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = petl_rng_next(r);
        if (x >= threshold) return x % n;
    }
}

/* One Box-Muller pair from two draws. u1 is in (0, 1] so that log(u1) is finite. */
static void normal_pair(petl_rng *r, double *z0, double *z1) {
    double u1 = (double)((petl_rng_next(r) >> 11) + 1) * INV_2_53;
    double u2 = (double)(petl_rng_next(r) >> 11) * INV_2_53;
    double rad = sqrt(-2.0 * log(u1));
    double th = TWO_PI * u2;
    *z0 = rad * cos(th);
    *z1 = rad * sin(th);
}

double petl_rng_normal(petl_rng *r) {
    double z0, z1;
    normal_pair(r, &z0, &z1);
    return z0;
}

void petl_rng_fill_normal(petl_rng *r, float *out, size_t n, float mean, float sd) {
    size_t i = 0;
    for (; i + 1 < n; i += 2) {
        double z0, z1;
        normal_pair(r, &z0, &z1);
        out[i] = (float)((double)mean + (double)sd * z0);
        out[i + 1] = (float)((double)mean + (double)sd * z1);
    }
    if (i < n) out[i] = (float)((double)mean + (double)sd * petl_rng_normal(r));
}

void petl_rng_fill_trunc_normal(petl_rng *r, float *out, size_t n, float mean, float sd) {
    /* Both outputs of each pair are used in turn; one outside [-2, 2] is simply skipped. */
    double pair[2];
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        double z;
        do {
            if (have == 0) {
                normal_pair(r, &pair[1], &pair[0]);
                have = 2;
            }
            z = pair[--have];
        } while (z < -2.0 || z > 2.0);
        out[i] = (float)((double)mean + (double)sd * z);
    }
}

/* ------------------------------------------------------------------- counter-based dropout */

uint64_t petl_dropout_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t row) {
    /* The keyed streams' hash with the purpose moved out of their range: a dropout key is never
     * the seed word of a stream with the same (seed, purpose, a, row). */
    return key_hash(seed, purpose + 0x8000000000000000ULL, a, row);
}

/* The hash's two 32-bit multiply-xorshift finalisers (see rng.h): lowbias32 (C. Wellons'
 * hash-prospector) and MurmurHash3's fmix32, each a bijection in which every input bit reaches
 * every output bit. */
static inline uint32_t lowbias32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return x ^ (x >> 16);
}

static inline uint32_t fmix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x85ebca6bU;
    x ^= x >> 13;
    x *= 0xc2b2ae35U;
    return x ^ (x >> 16);
}

/* The key's halves for the pair indices whose high word is hi (0 below 2^32). */
static void hash_key(uint64_t key, uint32_t hi, uint32_t *k0, uint32_t *k1) {
    *k0 = (uint32_t)key;
    *k1 = (uint32_t)(key >> 32) ^ (hi * 0x9e3779b9U);
}

uint32_t petl_dropout_hash(uint64_t key, uint64_t c) {
    uint32_t k0, k1;
    hash_key(key, (uint32_t)(c >> 32), &k0, &k1);
    return fmix32(lowbias32((uint32_t)c ^ k0) ^ k1);
}

/* The same hash with less work, for the hot paths: lowbias32 ends and fmix32 begins with
 * f(x) = x ^ (x >> 16), which on 32 bits is linear over xor and its own inverse, so
 * f(f(y) ^ k1) = y ^ f(k1): both steps go, and k1 enters as kf = f(k1). */
static inline uint32_t hash_fast(uint32_t c, uint32_t k0, uint32_t kf) {
    uint32_t x = c ^ k0;
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= kf;
    x *= 0x85ebca6bU;
    x ^= x >> 13;
    x *= 0xc2b2ae35U;
    return x ^ (x >> 16);
}

/* The scale of a kept element, 1 / (1 - p) in float as torch, and the 16-bit drop threshold
 * p 2^16 rounded to nearest (p 2^16 + 1/2 is exact in double). 65536 (p within 2^-17 of 1)
 * drops everything. */
static uint32_t drop_threshold(float p, float *scale) {
    *scale = 1.0f / (float)(1.0 - (double)p);
    return (uint32_t)floor((double)p * 65536.0 + 0.5);
}

/* out[n] = in[n] * mask for the elements e0 + i whose pair indices (e0 + i) >> 1 share one high
 * word (k0, kf: the key's words for it, kf folded as hash_fast wants); thr < 65536. */
static void apply_run(float *out, const float *in, size_t n, uint32_t thr, float scale, uint32_t k0,
                      uint32_t kf, uint64_t e0) {
    size_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__)
    /* An odd first element is the high half of its pair: alone, by the scalar loop below. */
    if (n > 0 && (e0 & 1)) {
        const uint32_t u = hash_fast((uint32_t)(e0 >> 1), k0, kf);
        out[0] = in[0] * ((u >> 16) >= thr ? scale : 0.0f);
        i = 1;
    }
    /* Then 32 elements (16 pairs) per step: hash_fast on 16 lanes (32-bit multiplies wrap as
     * uint32_t does), one unsigned 16-bit compare of the 32 halves, whose mask bit j is element
     * j (little-endian: the low half of lane c is element 2c), and the same single float
     * multiply by scale or by 0 as the scalar loop: bit-identical results. */
    const __m512i vk0 = _mm512_set1_epi32((int)k0), vkf = _mm512_set1_epi32((int)kf);
    const __m512i m1 = _mm512_set1_epi32((int)0x7feb352dU); /* lowbias32's multipliers */
    const __m512i m2 = _mm512_set1_epi32((int)0x846ca68bU);
    const __m512i m3 = _mm512_set1_epi32((int)0x85ebca6bU); /* fmix32's */
    const __m512i m4 = _mm512_set1_epi32((int)0xc2b2ae35U);
    const __m512i vthr = _mm512_set1_epi16((short)thr), step = _mm512_set1_epi32(16);
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512i c =
        _mm512_add_epi32(_mm512_set1_epi32((int)(uint32_t)((e0 + i) >> 1)),
                         _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    for (; i + 32 <= n; i += 32) {
        __m512i x = _mm512_xor_si512(c, vk0);
        x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
        x = _mm512_mullo_epi32(x, m1);
        x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
        x = _mm512_mullo_epi32(x, m2);
        x = _mm512_xor_si512(x, vkf);
        x = _mm512_mullo_epi32(x, m3);
        x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 13));
        x = _mm512_mullo_epi32(x, m4);
        x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
        const __mmask32 keep = _mm512_cmpge_epu16_mask(x, vthr);
        const __m512 lo = _mm512_maskz_mov_ps((__mmask16)keep, vscale);
        const __m512 hi = _mm512_maskz_mov_ps((__mmask16)(keep >> 16), vscale);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(in + i), lo));
        _mm512_storeu_ps(out + i + 16, _mm512_mul_ps(_mm512_loadu_ps(in + i + 16), hi));
        c = _mm512_add_epi32(c, step);
    }
#endif
    /* The scalar path: everything without AVX-512, the last n % 32 elements with it. */
    for (; i < n; i++) {
        const uint64_t e = e0 + i;
        const uint32_t u = hash_fast((uint32_t)(e >> 1), k0, kf);
        const uint32_t half = e & 1 ? u >> 16 : u & 0xffffU;
        out[i] = in[i] * (half >= thr ? scale : 0.0f);
    }
}

void petl_dropout_apply(float *out, const float *in, size_t n, float p, uint64_t key,
                        uint64_t start) {
    if (!(p > 0.0f)) { /* also catches NaN: no dropout */
        if (out != in) memmove(out, in, n * sizeof *out);
        return;
    }
    float scale;
    const uint32_t thr = p < 1.0f ? drop_threshold(p, &scale) : 65536;
    if (thr >= 65536) {
        for (size_t i = 0; i < n; i++)
            out[i] = in[i] * 0.0f;
        return;
    }
    /* Runs of elements whose pair indices share a high word: in practice a single run, rows
     * are far below 2^33 elements. */
    while (n > 0) {
        const uint64_t room = ((uint64_t)1 << 33) - (start & (((uint64_t)1 << 33) - 1));
        const size_t len = room < (uint64_t)n ? (size_t)room : n;
        uint32_t k0, k1;
        hash_key(key, (uint32_t)(start >> 33), &k0, &k1);
        apply_run(out, in, len, thr, scale, k0, k1 ^ (k1 >> 16), start);
        out += len, in += len, n -= len, start += len;
    }
}

void petl_dropout_apply_naive(float *out, const float *in, size_t n, float p, uint64_t key,
                              uint64_t start) {
    for (size_t i = 0; i < n; i++) {
        float m = 1.0f; /* p <= 0 or NaN: no dropout */
        if (p > 0.0f) {
            /* element e is kept iff its half of the hash of pair e / 2 is >= p 2^16 rounded */
            const uint64_t e = start + i;
            const uint32_t u = petl_dropout_hash(key, e / 2);
            const uint32_t half = e % 2 == 0 ? u % 65536 : u / 65536;
            const double thr = p < 1.0f ? (double)llround((double)p * 65536.0) : 65536.0;
            m = half >= thr ? 1.0f / (float)(1.0 - (double)p) : 0.0f;
        }
        out[i] = in[i] * m;
    }
}

void petl_rng_shuffle(petl_rng *r, int64_t *idx, size_t n) {
    /* Fisher-Yates from the end: position i takes a uniform pick among idx[0..i]. */
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)petl_rng_below(r, (uint64_t)i);
        int64_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
