/* Pseudo-random numbers for training: xoshiro256** seeded by splitmix64, keyed streams, and
 * the samplers the trainer needs (see rng.h for the determinism rules). */
#include "rng.h"

#include <math.h>

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

petl_rng petl_rng_stream(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
    /* Each word goes through a bijective mix before the next is folded in, so two keys that
     * share a prefix and differ in the last word always give different states. The added odd
     * constants keep (0, 0, 0, 0)-like keys away from the trivial input. */
    uint64_t h = mix64(seed ^ 0x243f6a8885a308d3ULL);
    h = mix64(h ^ (purpose + 0x13198a2e03707344ULL));
    h = mix64(h ^ (a + 0xa4093822299f31d0ULL));
    h = mix64(h ^ (b + 0x082efa98ec4e6c89ULL));
    petl_rng r;
    petl_rng_seed(&r, h);
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

/* The integer threshold on the top 53 bits below which an element is dropped, and the scale of
 * a kept one. Integer compare: exact, and the same on every machine. */
static uint64_t drop_threshold(float p, float *scale) {
    double t = ceil((double)p * 9007199254740992.0);
    /* As torch: the mask (1) is divided by (1 - p), computed in float. */
    *scale = 1.0f / (float)(1.0 - (double)p);
    return (uint64_t)t;
}

void petl_rng_dropout_mask(petl_rng *r, float *mask, size_t n, float p) {
    if (!(p > 0.0f)) { /* also catches NaN: no dropout */
        for (size_t i = 0; i < n; i++)
            mask[i] = 1.0f;
        return;
    }
    if (p >= 1.0f) {
        for (size_t i = 0; i < n; i++)
            mask[i] = 0.0f;
        return;
    }
    float scale;
    uint64_t thr = drop_threshold(p, &scale);
    for (size_t i = 0; i < n; i++)
        mask[i] = (petl_rng_next(r) >> 11) >= thr ? scale : 0.0f;
}

void petl_rng_dropout(petl_rng *r, float *x, float *mask, size_t n, float p) {
    if (!(p > 0.0f)) {
        if (mask)
            for (size_t i = 0; i < n; i++)
                mask[i] = 1.0f;
        return;
    }
    if (p >= 1.0f) {
        for (size_t i = 0; i < n; i++)
            x[i] = 0.0f;
        if (mask)
            for (size_t i = 0; i < n; i++)
                mask[i] = 0.0f;
        return;
    }
    float scale;
    uint64_t thr = drop_threshold(p, &scale);
    for (size_t i = 0; i < n; i++) {
        float k = (petl_rng_next(r) >> 11) >= thr ? scale : 0.0f;
        x[i] *= k;
        if (mask) mask[i] = k;
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
