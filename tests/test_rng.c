/* The random number generator: determinism, exact save / restore, the moments of each sampler
 * on 1e6 draws, dropout keep rates, shuffles that are permutations, independent keyed streams,
 * and the same numbers from a parallel loop over keyed streams as from a serial one. */
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

static void dropout(void) {
    float *x = malloc(N * sizeof *x), *mask = malloc(N * sizeof *mask);
    CHECK(x && mask);
    const float p = 0.1f, scale = 1.0f / 0.9f;
    petl_rng r, r2;
    petl_rng_seed(&r, 5);
    r2 = r;
    petl_rng_dropout_mask(&r, mask, N, p);
    size_t kept = 0;
    for (size_t i = 0; i < N; i++) {
        CHECK(mask[i] == 0.0f || mask[i] == scale);
        kept += mask[i] != 0.0f;
    }
    /* Binomial sd of the kept share: sqrt(0.09 / 1e6) = 3e-4. */
    CHECKF(fabs((double)kept / N - 0.9) < 1.5e-3, "kept %zu", kept);

    /* In place with the same stream: x * mask exactly, and the same mask. */
    float *m2 = malloc(N * sizeof *m2);
    CHECK(m2 != NULL);
    for (size_t i = 0; i < N; i++)
        x[i] = 1.0f + (float)(i % 13);
    petl_rng_dropout(&r2, x, m2, N, p);
    CHECK(memcmp(mask, m2, N * sizeof *m2) == 0);
    for (size_t i = 0; i < N; i++)
        CHECK(x[i] == (1.0f + (float)(i % 13)) * mask[i]);
    CHECK(memcmp(&r, &r2, sizeof r) == 0);

    /* Other rates; p = 0 and p = 1 draw nothing. */
    petl_rng_dropout_mask(&r, mask, N, 0.5f);
    kept = 0;
    for (size_t i = 0; i < N; i++)
        kept += mask[i] == 2.0f;
    CHECK(fabs((double)kept / N - 0.5) < 2e-3);
    petl_rng before = r;
    petl_rng_dropout_mask(&r, mask, 100, 0.0f);
    CHECK(mask[0] == 1.0f && mask[99] == 1.0f);
    petl_rng_dropout(&r, x, NULL, 100, 1.0f);
    CHECK(x[0] == 0.0f && x[99] == 0.0f);
    CHECK(memcmp(&before, &r, sizeof r) == 0);
    free(x);
    free(mask);
    free(m2);
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

/* Dropout over rows [rows, cols] with one keyed stream per row: the result of a parallel loop
 * must not depend on the thread count. */
static void fill_rows(float *x, int rows, int cols, int threads) {
    omp_set_num_threads(threads);
#pragma omp parallel for schedule(dynamic, 1)
    for (int r = 0; r < rows; r++) {
        petl_rng g = petl_rng_stream(1234, PETL_RNG_DROPOUT_HIDDEN, 17, (uint64_t)r);
        float *row = x + (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            row[c] = 1.0f;
        petl_rng_dropout(&g, row, NULL, (size_t)cols, 0.1f);
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
