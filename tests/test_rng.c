/* The random number generator: determinism, exact save / restore, the moments of each sampler
 * on 1e6 draws, shuffles that are permutations, independent keyed streams; the counter-based
 * dropout (keep rates, independence across keys, the vector path against its naive twin); and
 * the same numbers from a parallel loop over keyed streams as from a serial one. */
#include "check.h"
#include "rng.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>

#define N 1000000

/* Mean and sd of x[n] in double. */
static void moments(const float *x, size_t n, double *mean, double *sd) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *mean = s / (double)n;
    double q = 0.0;
    for (size_t i = 0; i < n; i++)
        q += (x[i] - *mean) * (x[i] - *mean);
    *sd = sqrt(q / (double)n);
}

static void determinism_and_state(void) {
    petl_rng a, b;
    petl_rng_seed(&a, 42);
    petl_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        CHECK(petl_rng_next(&a) == petl_rng_next(&b));
    petl_rng_seed(&b, 43);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += petl_rng_next(&a) == petl_rng_next(&b);
    CHECK(same == 0);

    /* Seed 0 is a fine seed. */
    petl_rng z;
    petl_rng_seed(&z, 0);
    CHECK((z.s[0] | z.s[1] | z.s[2] | z.s[3]) != 0);

    /* Known answer: xoshiro256** from a hand-set state (reference implementation's first
     * outputs for s = {1, 2, 3, 4}), so that a change of algorithm cannot go unnoticed. */
    petl_rng k = {{1, 2, 3, 4}};
    CHECK(petl_rng_next(&k) == 11520ULL);
    CHECK(petl_rng_next(&k) == 0ULL);
    CHECK(petl_rng_next(&k) == 1509978240ULL);
    CHECK(petl_rng_next(&k) == 1215971899390074240ULL);

    /* Save mid-stream, run on, restore: the same continuation, from bytes alone. */
    petl_rng r;
    petl_rng_seed(&r, 7);
    for (int i = 0; i < 123; i++)
        petl_rng_next(&r);
    uint8_t bytes[PETL_RNG_STATE_BYTES];
    petl_rng_save(&r, bytes);
    float first[64], again[64];
    petl_rng_fill_trunc_normal(&r, first, 64, 0.0f, 1.0f);
    petl_rng back;
    CHECK(petl_rng_load(&back, bytes) == 0);
    petl_rng_fill_trunc_normal(&back, again, 64, 0.0f, 1.0f);
    CHECK(memcmp(first, again, sizeof first) == 0);
    CHECK(memcmp(&r, &back, sizeof r) == 0);
    /* Little-endian layout: byte 0 is the low byte of s[0]. */
    petl_rng t = {{0x0102030405060708ULL, 0, 0, 0}};
    petl_rng_save(&t, bytes);
    CHECK(bytes[0] == 0x08 && bytes[7] == 0x01 && bytes[8] == 0);
    uint8_t zero[PETL_RNG_STATE_BYTES] = {0};
    CHECK(petl_rng_load(&back, zero) == -1);
}

static void samplers(void) {
    float *x = malloc(N * sizeof *x);
    CHECK(x != NULL);
    petl_rng r;
    petl_rng_seed(&r, 2024);
    double mean, sd;

    /* Uniform [0, 1): mean 1/2, sd 1/sqrt(12); never 1. */
    float lo = 1.0f, hi = 0.0f;
    for (size_t i = 0; i < N; i++) {
        x[i] = petl_rng_uniform(&r);
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    moments(x, N, &mean, &sd);
    CHECKF(fabs(mean - 0.5) < 2e-3 && fabs(sd - 0.288675) < 2e-3, "uniform %g %g", mean, sd);
    CHECK(lo >= 0.0f && hi < 1.0f && lo < 1e-4f && hi > 1.0f - 1e-4f);
    double ud = 0.0;
    for (int i = 0; i < 1000; i++) {
        double u = petl_rng_uniform_double(&r);
        CHECK(u >= 0.0 && u < 1.0);
        ud += u;
    }
    CHECK(fabs(ud / 1000 - 0.5) < 0.05);

    /* Normal: mean, sd, and the share beyond 2 sd (4.55%). */
    petl_rng_fill_normal(&r, x, N, 1.5f, 2.0f);
    moments(x, N, &mean, &sd);
    CHECKF(fabs(mean - 1.5) < 1e-2 && fabs(sd - 2.0) < 1e-2, "normal %g %g", mean, sd);
    size_t tails = 0;
    for (size_t i = 0; i < N; i++)
        tails += fabs(x[i] - 1.5) > 4.0;
    CHECKF(fabs((double)tails / N - 0.0455) < 2e-3, "normal tails %zu", tails);
    double zs = 0.0, zq = 0.0;
    for (int i = 0; i < 100000; i++) {
        double z = petl_rng_normal(&r);
        zs += z;
        zq += z * z;
    }
    CHECK(fabs(zs / 1e5) < 0.02 && fabs(zq / 1e5 - 1.0) < 0.02);
    /* Odd lengths fill the last element too. */
    float odd[3] = {NAN, NAN, NAN};
    petl_rng_fill_normal(&r, odd, 3, 0.0f, 1.0f);
    CHECK(isfinite(odd[0]) && isfinite(odd[1]) && isfinite(odd[2]));

    /* Truncated normal at 2 sd: inside the bounds, mean 0, sd = 0.8796 sd. */
    const float tsd = 1e-3f;
    petl_rng_fill_trunc_normal(&r, x, N, 0.0f, tsd);
    float amax = 0.0f;
    for (size_t i = 0; i < N; i++)
        amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    CHECK(amax <= 2.0f * tsd * (1.0f + 1e-6f) && amax > 1.99f * tsd);
    moments(x, N, &mean, &sd);
    CHECKF(fabs(mean) < 5e-6 && fabs(sd / tsd - 0.879626) < 3e-3, "trunc normal %g %g", mean,
           sd / tsd);

    /* petl_rng_below: in range, every value about equally often. */
    size_t counts[7] = {0};
    for (int i = 0; i < 700000; i++) {
        uint64_t v = petl_rng_below(&r, 7);
        CHECK(v < 7);
        counts[v]++;
    }
    for (int v = 0; v < 7; v++)
        CHECK(counts[v] > 99000 && counts[v] < 101000);
    CHECK(petl_rng_below(&r, 1) == 0 && petl_rng_below(&r, 0) == 0);
    free(x);
}

/* Keep indicators of n elements of key from start (1: kept), through petl_dropout_apply. */
static void keeps(unsigned char *k, float *buf, size_t n, float p, uint64_t key, uint64_t start) {
    for (size_t i = 0; i < n; i++)
        buf[i] = 1.0f;
    petl_dropout_apply(buf, buf, n, p, key, start);
    for (size_t i = 0; i < n; i++)
        k[i] = buf[i] != 0.0f;
}

/* Share of positions where a[n] and b[n] agree, checked against the chance rate of two
 * independent masks, p^2 + (1 - p)^2, within 5 binomial sd. */
static void check_agreement(const char *what, const unsigned char *a, const unsigned char *b,
                            size_t n, double p) {
    size_t same = 0;
    for (size_t i = 0; i < n; i++)
        same += a[i] == b[i];
    const double chance = p * p + (1 - p) * (1 - p);
    const double sd = sqrt(chance * (1 - chance) / (double)n);
    CHECKF(fabs((double)same / (double)n - chance) < 5 * sd, "%s: agreement %.5f, chance %.5f",
           what, (double)same / (double)n, chance);
}

static void dropout(void) {
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *z = malloc(N * sizeof *z);
    unsigned char *ka = malloc(N), *kb = malloc(N);
    CHECK(x && y && z && ka && kb);
    for (size_t i = 0; i < N; i++) /* never 0: a dropped element is one that reads 0 */
        x[i] = (i % 2 ? -1.0f : 1.0f) * (1.0f + (float)(i % 13) * 0.37f + (float)(i % 7));

    /* Known answers from an independent Python implementation of the key derivation, the hash
     * and the masks (scripts/reference/gen-dropout-known-answers.py), so that a change of any of
     * them cannot go unnoticed. */
    const uint64_t k = petl_dropout_key(1, PETL_RNG_DROPOUT_HIDDEN, 2, 3);
    CHECK(k == 0xab128d5f31a66b83ULL);
    CHECK(petl_dropout_hash(k, 0) == 0x4a2c38a3U);
    CHECK(petl_dropout_hash(k, 1) == 0x269500e7U);
    CHECK(petl_dropout_hash(k, 1000) == 0x9ac31036U);
    CHECK(petl_dropout_hash(0x0123456789abcdefULL, 7) == 0x1113b950U);
    CHECK(petl_dropout_hash(0x0123456789abcdefULL, ((uint64_t)1 << 32) + 7) == 0xfab21c70U);
    /* ... and the masks they give (bit i: element start + i kept), through the vector path */
    const struct {
        float p;
        uint64_t start;
        uint32_t bits;
    } known[3] = {{0.1f, 0, 0xefeffefbU},
                  {0.5f, 0, 0x22cbda90U},
                  {0.5f, ((uint64_t)1 << 33) + 1, 0x8e88fcc9U}};
    for (int t = 0; t < 3; t++) {
        keeps(ka, y, 32, known[t].p, k, known[t].start);
        uint32_t bits = 0;
        for (int i = 0; i < 32; i++)
            bits |= (uint32_t)ka[i] << i;
        CHECKF(bits == known[t].bits, "known mask %d: %08x", t, bits);
    }

    /* Keep rates on 1e6 elements, in one call and in rows of 768 (keys of neighbouring rows):
     * within 4.5 binomial sd (p = 0.1: sd 3e-4; p = 0.5: 5e-4); every value exactly x * scale
     * or 0. */
    const float ps[2] = {0.1f, 0.5f};
    for (int t = 0; t < 2; t++) {
        const float p = ps[t], scale = 1.0f / (float)(1.0 - (double)p);
        const double sd = sqrt((double)p * (1 - p) / N);
        petl_dropout_apply(y, x, N, p, k, 0);
        size_t kept = 0;
        for (size_t i = 0; i < N; i++) {
            CHECK(y[i] == x[i] * scale || y[i] == 0.0f);
            kept += y[i] != 0.0f;
        }
        CHECKF(fabs((double)kept / N - (1 - p)) < 4.5 * sd, "p %g: kept %zu", p, kept);
        kept = 0;
        for (size_t r = 0; r * 768 < N; r++) {
            size_t n = N - r * 768 < 768 ? N - r * 768 : 768;
            petl_dropout_apply(y + r * 768, x + r * 768, n, p,
                               petl_dropout_key(9, PETL_RNG_DROPOUT_HIDDEN, 4, r), 0);
        }
        for (size_t i = 0; i < N; i++)
            kept += y[i] != 0.0f;
        CHECKF(fabs((double)kept / N - (1 - p)) < 4.5 * sd, "p %g, rows: kept %zu", p, kept);
        /* The same element index across 1e6 keys (rows): the key dimension is as random. */
        kept = 0;
        for (size_t r = 0; r < N; r++) {
            float one = 1.0f;
            petl_dropout_apply(&one, &one, 1, p, petl_dropout_key(9, PETL_RNG_DROPOUT_ATTN, 0, r),
                               77);
            kept += one != 0.0f;
        }
        CHECKF(fabs((double)kept / N - (1 - p)) < 4.5 * sd, "p %g, across keys: kept %zu", p, kept);
    }

    /* Independence: masks of keys differing in one word (seed, purpose, site, row), of the same
     * key shifted by one element (the two halves of each hash against each other) and by two
     * (neighbouring counters), and 2^33 elements apart (the counter's high word) agree at the
     * chance rate. */
    for (int t = 0; t < 2; t++) {
        const float p = ps[t];
        keeps(ka, y, N, p, k, 0);
        const uint64_t others[5] = {
            petl_dropout_key(2, PETL_RNG_DROPOUT_HIDDEN, 2, 3),
            petl_dropout_key(1, PETL_RNG_DROPOUT_ATTN, 2, 3),
            petl_dropout_key(1, PETL_RNG_DROPOUT_HIDDEN, 3, 3),
            petl_dropout_key(1, PETL_RNG_DROPOUT_HIDDEN, 2, 4),
            petl_dropout_key(1, PETL_RNG_DROPOUT_HIDDEN, 3, 2), /* swapped words */
        };
        for (int o = 0; o < 5; o++) {
            CHECK(others[o] != k);
            keeps(kb, y, N, p, others[o], 0);
            char what[48];
            snprintf(what, sizeof what, "p %g, key %d", p, o);
            check_agreement(what, ka, kb, N, p);
        }
        keeps(kb, y, N, p, k, 1);
        check_agreement("shifted by one", ka, kb, N, p);
        keeps(kb, y, N, p, k, 2);
        check_agreement("shifted by two", ka, kb, N, p);
        keeps(kb, y, N, p, k, (uint64_t)1 << 33); /* counters 2^32 apart */
        check_agreement("2^33 apart", ka, kb, N, p);
        /* key 0 is a key like any other (keys are hashes: never chosen by hand) */
        keeps(kb, y, N, p, 0, 0);
        check_agreement("key 0", ka, kb, N, p);
    }
    /* And a key is not the seed of the keyed stream with the same words. */
    petl_rng st = petl_rng_stream(1, PETL_RNG_DROPOUT_HIDDEN, 2, 3), sk;
    petl_rng_seed(&sk, k);
    CHECK(memcmp(&st, &sk, sizeof st) != 0);

    /* The vector path, the scalar head and tail and the naive twin agree bit for bit: lengths
     * around the 32-element step, odd and even starts, runs across 2^33 elements (the counter's
     * high word changes mid-call), rates from tiny to 1 - 1e-5, and in place. */
    const size_t lens[] = {0,  1,  2,  15,  16,   17,   31,   32,   33,
                           63, 64, 65, 100, 1000, 1001, 4097, 12345};
    const uint64_t T33 = (uint64_t)1 << 33;
    const uint64_t starts[] = {0, 1, 7, 16, 99, 123457, T33 - 5, T33 - 4096, T33, 128 * T33 + 3};
    const float rates[] = {1e-6f, 0.001f, 0.1f, 0.3f, 0.5f, 0.9f, 0.99999f};
    for (size_t a = 0; a < sizeof lens / sizeof *lens; a++)
        for (size_t b = 0; b < sizeof starts / sizeof *starts; b++)
            for (size_t c = 0; c < sizeof rates / sizeof *rates; c++) {
                const size_t n = lens[a];
                const uint64_t key = petl_dropout_key(5, PETL_RNG_DROPOUT_EMBED, a, b);
                petl_dropout_apply(y, x + 3, n, rates[c], key, starts[b]);
                petl_dropout_apply_naive(z, x + 3, n, rates[c], key, starts[b]);
                CHECKF(memcmp(y, z, n * sizeof *y) == 0, "n %zu start %llu p %g: not the twin", n,
                       (unsigned long long)starts[b], rates[c]);
                memcpy(z, x + 3, n * sizeof *z);
                petl_dropout_apply(z, z, n, rates[c], key, starts[b]);
                CHECKF(memcmp(y, z, n * sizeof *y) == 0, "n %zu start %llu p %g: in place", n,
                       (unsigned long long)starts[b], rates[c]);
            }
    /* Pieces: any split of a row into calls with matching starts gives the one-call result. */
    petl_dropout_apply(y, x, 5000, 0.2f, k, 40);
    for (size_t at = 0, n = 1; at < 5000; at += n, n = n * 3 + 1) {
        if (at + n > 5000) n = 5000 - at;
        petl_dropout_apply(z + at, x + at, n, 0.2f, k, 40 + at);
    }
    CHECK(memcmp(y, z, 5000 * sizeof *y) == 0);

    /* p <= 0 or NaN: the identity (a copy, or nothing in place); p >= 1: zeros; a NaN input
     * stays NaN where dropped (x * 0, as torch). */
    const float none[3] = {0.0f, -0.5f, NAN};
    for (int t = 0; t < 3; t++) {
        petl_dropout_apply(y, x, 1000, none[t], k, 0);
        CHECK(memcmp(y, x, 1000 * sizeof *y) == 0);
        petl_dropout_apply(y, y, 1000, none[t], k, 0);
        CHECK(memcmp(y, x, 1000 * sizeof *y) == 0);
        petl_dropout_apply_naive(z, x, 1000, none[t], k, 0);
        CHECK(memcmp(z, x, 1000 * sizeof *z) == 0);
    }
    for (int t = 0; t < 2; t++) {
        const float p = t ? 1.5f : 1.0f;
        petl_dropout_apply(y, x, 1000, p, k, 0);
        petl_dropout_apply_naive(z, x, 1000, p, k, 0);
        for (size_t i = 0; i < 1000; i++)
            CHECK(y[i] == 0.0f && z[i] == 0.0f);
        petl_dropout_apply(y, y, 1000, p, k, 0);
        CHECK(y[0] == 0.0f && y[999] == 0.0f);
    }
    /* Rounding of p to 2^-16: below 2^-17 nothing is dropped (and kept values are still
     * scaled), within 2^-17 of 1 everything is. */
    petl_dropout_apply(y, x, 1000, 7e-6f, k, 0);
    for (size_t i = 0; i < 1000; i++)
        CHECK(y[i] == x[i] * (1.0f / (float)(1.0 - 7e-6f)));
    petl_dropout_apply(y, x, 1000, 0.999995f, k, 0);
    petl_dropout_apply_naive(z, x, 1000, 0.999995f, k, 0);
    for (size_t i = 0; i < 1000; i++)
        CHECK(y[i] == 0.0f && z[i] == 0.0f);
    for (size_t i = 0; i < 64; i++)
        y[i] = NAN;
    petl_dropout_apply(y, y, 64, 0.5f, k, 0);
    for (size_t i = 0; i < 64; i++)
        CHECK(isnan(y[i]));
    free(x), free(y), free(z), free(ka), free(kb);
}

static void shuffle(void) {
    enum { n = 10000 };
    int64_t *idx = malloc(n * sizeof *idx);
    unsigned char *seen = calloc(n, 1);
    CHECK(idx && seen);
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    petl_rng r;
    petl_rng_seed(&r, 99);
    petl_rng_shuffle(&r, idx, n);
    size_t fixed = 0;
    for (int64_t i = 0; i < n; i++) {
        CHECK(idx[i] >= 0 && idx[i] < n && !seen[idx[i]]);
        seen[idx[i]] = 1;
        fixed += idx[i] == i;
    }
    CHECK(fixed < 10); /* a random permutation has ~1 fixed point */

    /* Uniformity on 3 elements: each of the 6 orders about 1/6 of the time. */
    size_t orders[6] = {0};
    for (int t = 0; t < 60000; t++) {
        int64_t a[3] = {0, 1, 2};
        petl_rng_shuffle(&r, a, 3);
        orders[a[0] * 2 + (a[1] > a[2])]++;
    }
    for (int o = 0; o < 6; o++)
        CHECKF(orders[o] > 9500 && orders[o] < 10500, "%zu", orders[o]);
    petl_rng_shuffle(&r, idx, 0);
    petl_rng_shuffle(&r, idx, 1);
    free(idx);
    free(seen);
}

static void streams(void) {
    /* Different keys (any one word changed) give different streams; the same key the same. */
    petl_rng base = petl_rng_stream(1, PETL_RNG_DROPOUT_HIDDEN, 10, 3);
    petl_rng same = petl_rng_stream(1, PETL_RNG_DROPOUT_HIDDEN, 10, 3);
    CHECK(memcmp(&base, &same, sizeof base) == 0);
    petl_rng other[5] = {
        petl_rng_stream(2, PETL_RNG_DROPOUT_HIDDEN, 10, 3),
        petl_rng_stream(1, PETL_RNG_DROPOUT_ATTN, 10, 3),
        petl_rng_stream(1, PETL_RNG_DROPOUT_HIDDEN, 11, 3),
        petl_rng_stream(1, PETL_RNG_DROPOUT_HIDDEN, 10, 4),
        petl_rng_stream(1, PETL_RNG_DROPOUT_HIDDEN, 3, 10), /* swapped words */
    };
    uint64_t ref[64];
    for (int i = 0; i < 64; i++)
        ref[i] = petl_rng_next(&base);
    for (int s = 0; s < 5; s++) {
        int eq = 0;
        for (int i = 0; i < 64; i++)
            eq += petl_rng_next(&other[s]) == ref[i];
        CHECKF(eq == 0, "stream %d shares %d of 64 outputs", s, eq);
    }

    /* Neighbouring keys are uncorrelated: correlation of the uniforms of streams (.., b) and
     * (.., b + 1) over many b is near 0. And a split child differs from its parent. */
    double sxy = 0, sx = 0, sy = 0, sxx = 0, syy = 0;
    const int m = 200000;
    for (int b = 0; b < m; b++) {
        petl_rng s1 = petl_rng_stream(9, PETL_RNG_INIT, 0, (uint64_t)b);
        petl_rng s2 = petl_rng_stream(9, PETL_RNG_INIT, 0, (uint64_t)b + 1);
        double x = petl_rng_uniform_double(&s1), y = petl_rng_uniform_double(&s2);
        sx += x, sy += y, sxy += x * y, sxx += x * x, syy += y * y;
    }
    double cov = sxy / m - (sx / m) * (sy / m);
    double corr = cov / sqrt((sxx / m - (sx / m) * (sx / m)) * (syy / m - (sy / m) * (sy / m)));
    CHECKF(fabs(corr) < 0.01, "correlation %g", corr);

    petl_rng parent;
    petl_rng_seed(&parent, 3);
    petl_rng child = petl_rng_split(&parent);
    int eq = 0;
    for (int i = 0; i < 64; i++)
        eq += petl_rng_next(&parent) == petl_rng_next(&child);
    CHECK(eq == 0);
}

/* Dropout and a sampler over rows [rows, cols], with one dropout key and one keyed stream per
 * row: the result of a parallel loop must not depend on the thread count. */
static void fill_rows(float *x, int rows, int cols, int threads) {
    omp_set_num_threads(threads);
#pragma omp parallel for schedule(dynamic, 1)
    for (int r = 0; r < rows; r++) {
        float *row = x + (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            row[c] = 1.0f;
        petl_dropout_apply(row, row, (size_t)cols, 0.1f,
                           petl_dropout_key(1234, PETL_RNG_DROPOUT_HIDDEN, 17, (uint64_t)r), 0);
        petl_rng g = petl_rng_stream(1234, PETL_RNG_INIT, 17, (uint64_t)r);
        petl_rng_fill_trunc_normal(&g, row, (size_t)cols / 2, 0.0f, 1e-3f);
    }
}

static void threads(void) {
    const int rows = 257, cols = 768;
    size_t bytes = (size_t)rows * cols * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes);
    CHECK(a && b);
    fill_rows(a, rows, cols, 1);
    for (int t = 2; t <= 4; t++) {
        fill_rows(b, rows, cols, t);
        CHECKF(memcmp(a, b, bytes) == 0, "%d threads change the numbers", t);
    }
    free(a);
    free(b);
}

int main(void) {
    determinism_and_state();
    samplers();
    dropout();
    shuffle();
    streams();
    threads();
    CHECK_DONE("test_rng");
}
