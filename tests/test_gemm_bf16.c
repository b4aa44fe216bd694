/* petl_gemm_bf16 (src/gemm_bf16.c: autocast-style C = beta C + alpha A.B + bias, both operands
 * rounded to bf16, fp32 sums) against its naive twin (the same rounding, double sums):
 *   - shapes from 1x1x1 and K = 0 through odd sizes, M off the 12-row micro-tile and 96-row
 *     tile, N off the 32-column panel and 128-column tile, K off and over the 256 block, to the
 *     attention products (128x128x64, 128x64x128, 64x128x128) and the adapters' (4096x64x768,
 *     4096x768x64 and the weight gradients 64x768x4096, 768x64x4096);
 *   - every operand layout through strides: A row- or column-major, B row- or column-major
 *     (padded leading dimensions whose padding holds NaN, so a stray read shows), and a
 *     non-unit-stride pair (the scalar path);
 *   - alpha 1 and not, beta 0 (C holds NaN before) and 1, with and without bias; the columns
 *     past N in C's padded rows stay untouched.
 * Tolerance: the fast path sums exact bf16 products in fp32 (per K block, then into C), the
 * twin in double, so |fast - twin| <= (K + K/256 + 8) 2^-24 S, S = |alpha| sum_k |a_k b_k| +
 * |beta C| + |bias| (recursive summation's bound, plus the epilogue's roundings); the largest
 * ratio to it is printed. Large products are compared with the twin on sampled blocks of rows
 * and columns (the twin is slow), everything else in full.
 * The fast path must also give the same bits whatever the layout and wherever it is called:
 * outside a parallel region (spread over two or three threads) and inside one (one thread per
 * call). */
#include "check.h"
#include "kernels.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;

/* Uniform in [-4, 4) with 24 random bits at a random scale of 2^-2..2^2, every 7th value a
 * bf16 rounding tie (1 + odd multiple of 2^-9, times a power of 2): ties must go to even. */
static float rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    const float sign = rng & 1 ? -1.0f : 1.0f, scale = ldexpf(1.0f, (int)(rng >> 8 & 3) - 2);
    if ((rng >> 12) % 7 == 0)
        return sign * scale * (1.0f + (float)(2 * (rng >> 20 & 63) + 1) / 512);
    return sign * scale * (float)(rng >> 40) / 16777216.0f;
}

static float *alloc_floats(int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    CHECK(p);
    return p;
}

/* Ranges of indices the twin checks in a dimension of d: all of it when small, else the start,
 * the middle and the end. */
static int ranges(int d, int lo[3], int len[3]) {
    if (d <= 200) {
        lo[0] = 0, len[0] = d;
        return 1;
    }
    lo[0] = 0, lo[1] = d / 2 - 20, lo[2] = d - 32; /* the middle one straddles d / 2 */
    len[0] = 32, len[1] = 40, len[2] = 32;
    return 3;
}

enum { LAYOUTS = 5 };
static const char *layout_name[LAYOUTS] = {"A.B", "A.B^T", "A^T.B", "A^T.B^T", "strided"};

typedef struct {
    const float *A, *B;
    int64_t a_rs, a_cs, b_rs, b_cs;
} operands;

/* Stores logical A[M, K] and B[K, N] (row-major, dense) in the given layout; padding NaN. */
static operands store(int layout, int M, int N, int K, const float *A, const float *B, float *abuf,
                      float *bbuf) {
    operands o;
    const int at = layout == 2 || layout == 3, bt = layout == 1 || layout == 3;
    if (layout == 4) {
        o.a_rs = 2 * (int64_t)K + 1, o.a_cs = 2; /* neither stride 1 */
        o.b_rs = 3, o.b_cs = 3 * (int64_t)K + 2;
    } else {
        o.a_rs = at ? 1 : K + 3, o.a_cs = at ? M + 5 : 1;
        o.b_rs = bt ? 1 : N + 2, o.b_cs = bt ? K + 1 : 1;
    }
    const int64_t asz = (int64_t)(M + 5) * (2 * K + 3), bsz = (int64_t)(N + 2) * (3 * K + 3);
    for (int64_t i = 0; i < asz; i++)
        abuf[i] = NAN;
    for (int64_t i = 0; i < bsz; i++)
        bbuf[i] = NAN;
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++)
            abuf[i * o.a_rs + k * o.a_cs] = A[(int64_t)i * K + k];
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++)
            bbuf[k * o.b_rs + j * o.b_cs] = B[(int64_t)k * N + j];
    o.A = abuf, o.B = bbuf;
    return o;
}

static const float SENTINEL = 12345.0f;
static double worst_ratio;

static void test_shape(int M, int N, int K) {
    const int64_t ldc = N + 4, csz = (int64_t)M * ldc;
    float *A = alloc_floats((int64_t)M * K), *B = alloc_floats((int64_t)K * N);
    /* the twin reads B^T (unit stride along k: the large K cases stay in cache) */
    float *Bt = alloc_floats((int64_t)K * N), *absA = alloc_floats((int64_t)M * K),
          *absBt = alloc_floats((int64_t)K * N);
    float *bias = alloc_floats(N), *C0 = alloc_floats(csz), *S = alloc_floats(csz);
    float *ref = alloc_floats(csz), *C = alloc_floats(csz), *first = alloc_floats(csz);
    float *abuf = alloc_floats((int64_t)(M + 5) * (2 * K + 3));
    float *bbuf = alloc_floats((int64_t)(N + 2) * (3 * K + 3));
    for (int64_t i = 0; i < (int64_t)M * K; i++)
        A[i] = rnd(), absA[i] = fabsf(A[i]);
    for (int64_t i = 0; i < (int64_t)K * N; i++)
        B[i] = rnd();
    for (int k = 0; k < K; k++)
        for (int j = 0; j < N; j++) {
            Bt[(int64_t)j * K + k] = B[(int64_t)k * N + j];
            absBt[(int64_t)j * K + k] = fabsf(B[(int64_t)k * N + j]);
        }
    for (int j = 0; j < N; j++)
        bias[j] = rnd();
    for (int64_t i = 0; i < csz; i++)
        C0[i] = (i % ldc) < N ? rnd() : SENTINEL;

    int rlo[3], rlen[3], clo[3], clen[3];
    const int nr = ranges(M, rlo, rlen), nc = ranges(N, clo, clen);
    /* S = sum_k |a_k b_k| on the checked blocks (bf16 rounding commutes with |.|) */
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++)
            petl_gemm_bf16_naive(rlen[r], clen[c], K, 1.0f, absA + (int64_t)rlo[r] * K, K, 1,
                                 absBt + (int64_t)clo[c] * K, 1, K, 0.0f, S + rlo[r] * ldc + clo[c],
                                 ldc, NULL);

    const struct {
        float alpha, beta;
        int bias;
    } cfg[] = {{1.0f, 0.0f, 0}, {1.0f, 1.0f, 1}, {0.125f, 0.0f, 1}, {-1.7f, 1.0f, 0}};
    const int threads = omp_get_max_threads();
    float *inside = alloc_floats(csz * threads);
    for (size_t t = 0; t < sizeof cfg / sizeof cfg[0]; t++) {
        const float alpha = cfg[t].alpha, beta = cfg[t].beta;
        const float *bs = cfg[t].bias ? bias : NULL;
        /* the twin on the checked blocks */
        memcpy(ref, C0, (size_t)csz * sizeof(float));
        for (int r = 0; r < nr; r++)
            for (int c = 0; c < nc; c++)
                petl_gemm_bf16_naive(rlen[r], clen[c], K, alpha, A + (int64_t)rlo[r] * K, K, 1,
                                     Bt + (int64_t)clo[c] * K, 1, K, beta,
                                     ref + rlo[r] * ldc + clo[c], ldc, bs ? bs + clo[c] : NULL);
        for (int layout = 0; layout < LAYOUTS; layout++) {
            const operands o = store(layout, M, N, K, A, B, abuf, bbuf);
            for (int64_t i = 0; i < csz; i++) /* beta 0: C must not be read */
                C[i] = beta == 0.0f && (i % ldc) < N ? NAN : C0[i];
            petl_gemm_bf16(M, N, K, alpha, o.A, o.a_rs, o.a_cs, o.B, o.b_rs, o.b_cs, beta, C, ldc,
                           bs);
            for (int i = 0; i < M; i++)
                for (int j = N; j < ldc; j++)
                    CHECKF(C[i * ldc + j] == SENTINEL, "%dx%dx%d %s: C[%d][%d] past N written", M,
                           N, K, layout_name[layout], i, j);
            for (int r = 0; r < nr; r++)
                for (int i = rlo[r]; i < rlo[r] + rlen[r]; i++)
                    for (int c = 0; c < nc; c++)
                        for (int j = clo[c]; j < clo[c] + clen[c]; j++) {
                            const int64_t at = i * ldc + j;
                            const double mag = fabs((double)alpha) * S[at] +
                                               fabs((double)beta * C0[at]) +
                                               (bs ? fabs((double)bs[j]) : 0.0);
                            const double tol = (K + K / 256 + 8) * ldexp(mag, -24);
                            const double d = fabs((double)C[at] - ref[at]);
                            CHECKF(d <= tol,
                                   "%dx%dx%d %s alpha %g beta %g bias %d: C[%d][%d] "
                                   "%.9g, twin %.9g (tolerance %.3g)",
                                   M, N, K, layout_name[layout], alpha, beta, cfg[t].bias, i, j,
                                   C[at], ref[at], tol);
                            if (tol > 0 && d / tol > worst_ratio) worst_ratio = d / tol;
                        }
            /* the same bits whatever the layout */
            if (layout == 0)
                memcpy(first, C, (size_t)csz * sizeof(float));
            else
                CHECKF(!memcmp(first, C, (size_t)csz * sizeof(float)),
                       "%dx%dx%d %s: not the bits of A.B", M, N, K, layout_name[layout]);
        }
        /* inside a parallel region: each thread its own C, in its own layout */
        for (int64_t i = 0; i < csz * threads; i++)
            inside[i] = beta == 0.0f && (i % csz % ldc) < N ? NAN : C0[i % csz];
#pragma omp parallel num_threads(threads)
        {
            const int me = omp_get_thread_num();
            float *ab = alloc_floats((int64_t)(M + 5) * (2 * K + 3));
            float *bb = alloc_floats((int64_t)(N + 2) * (3 * K + 3));
            const operands o = store(me % LAYOUTS, M, N, K, A, B, ab, bb);
            petl_gemm_bf16(M, N, K, alpha, o.A, o.a_rs, o.a_cs, o.B, o.b_rs, o.b_cs, beta,
                           inside + me * csz, ldc, bs);
            free(ab);
            free(bb);
        }
        for (int th = 0; th < threads; th++)
            CHECKF(!memcmp(first, inside + th * csz, (size_t)csz * sizeof(float)),
                   "%dx%dx%d alpha %g beta %g: thread %d inside a parallel region differs", M, N, K,
                   alpha, beta, th);
    }
    free(A), free(B), free(Bt), free(absA), free(absBt), free(bias), free(C0), free(S), free(ref),
        free(C);
    free(first), free(abuf), free(bbuf), free(inside);
}

int main(void) {
    /* the vector conversions round like petl_bf16_round (checked bit for bit above through the
     * strided layout, which uses it); a few fixed points of it */
    CHECK(petl_bf16_round(1.00390625f) == 0x3F80 && petl_bf16_round(1.01171875f) == 0x3F82);
    static const int shapes[][3] = {
        {1, 1, 1},       {3, 5, 0},       {1, 40, 7},      {7, 1, 300},     {2, 3, 2},
        {13, 33, 17},    {12, 32, 256},   {11, 31, 255},   {25, 47, 300},   {37, 65, 1},
        {96, 128, 256},  {97, 129, 513},  {100, 200, 520}, {16, 16, 16},    {128, 128, 32},
        {128, 128, 64},  {128, 64, 128},  {64, 128, 128},  {200, 77, 64},   {512, 384, 64},
        {30, 100, 2000}, {4096, 64, 768}, {4096, 768, 64}, {64, 768, 4096}, {768, 64, 4096},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        test_shape(shapes[s][0], shapes[s][1], shapes[s][2]);
    /* other splits of the work: three threads (column strips of 32, uneven row chunks) */
    omp_set_num_threads(3);
    test_shape(97, 129, 513);
    test_shape(30, 100, 2000);
    test_shape(1000, 200, 300);
    printf("petl_gemm_bf16: largest |fast - twin| / tolerance %.3g\n", worst_ratio);
    CHECK_DONE("test_gemm_bf16");
}
