/* Linear layers with bf16 inputs and fp32 accumulation (--precision bf16): the frozen base's
 * weights packed once as bf16, activations rounded to bf16 on the fly, products summed in fp32
 * by AVX512-BF16's dot-product instruction (vdpbf16ps: two bf16 multiply-adds per 32-bit lane).
 *
 * Why our own kernel: the BLAS in use (OpenBLAS 0.3.21) has no bf16 GEMM with fp32 output in
 * its CBLAS interface, and oneDNN 2.6 (Debian) offers bf16 only through matmul primitives
 * created per shape (a JIT per distinct row count, and a weight reorder tied to it), while
 * training calls every GEMM with a different row count. The kernel below is one register-blocked
 * loop; its naive twin (matmul_bf16_naive) rounds the same way and sums in double.
 *
 * Layout. C[M, N] = A[M, K] . B[N, K]^T (+ bias), B a Linear weight [out, in] (forward) or the
 * transpose of one (input gradients). B is packed into panels of 32 columns: for each k pair
 * kk, 32 lanes of (B[n][2kk], B[n][2kk+1]) as one 32-bit bf16 pair (even k in the low half),
 * i.e. data[(panel * Kp/2 + kk) * 32 + j]. A is converted per tile into the same pairs, one
 * 32-bit word per (row, kk), which the kernel broadcasts to all 16 lanes.
 *
 * Blocking (Zen 4: 32 KB L1d, 1 MB L2 per core): micro-tile 12 rows x 32 columns (24 zmm
 * accumulators); K in blocks of 256 (a 16 KB slice of a panel stays in L1 while every row group
 * of the tile passes over it); tiles of 96 rows x 128 columns, spread over the OpenMP threads. */
#include "internal.h"
#include "kernels.h"

#include <immintrin.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

enum { MR = 12, NR = 32, KC = 256, MB = 96, NB = 128 };

/* fp32 -> bf16 with round-to-nearest-even (what vcvtne2ps2bf16 does for normal numbers; NaN
 * stays a NaN). */
uint16_t petl_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu)) return (uint16_t)(u >> 16 | 0x40);
    u += 0x7FFFu + (u >> 16 & 1u);
    return (uint16_t)(u >> 16);
}

float petl_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

petl_status petl_bf16_pack(petl_bf16_mat *out, const float *src, int N, int K, int64_t rs,
                           int64_t cs, petl_error *err) {
    memset(out, 0, sizeof *out);
    const int kp = (K + 1) / 2, np = (N + NR - 1) / NR;
    size_t words = (size_t)np * (size_t)kp * NR;
    uint32_t *d = aligned_alloc(64, (words * 4 + 63) / 64 * 64);
    if (!d)
        return petl_fail(err, PETL_ERR_NOMEM, "bf16 weights: out of memory (%zu bytes)", words * 4);
#pragma omp parallel for schedule(static)
    for (int p = 0; p < np; p++)
        for (int kk = 0; kk < kp; kk++)
            for (int j = 0; j < NR; j++) {
                const int n = p * NR + j, k = 2 * kk;
                float lo = 0.0f, hi = 0.0f;
                if (n < N) {
                    lo = src[(int64_t)n * rs + (int64_t)k * cs];
                    if (k + 1 < K) hi = src[(int64_t)n * rs + (int64_t)(k + 1) * cs];
                }
                d[((size_t)p * kp + kk) * NR + j] =
                    (uint32_t)petl_bf16_round(lo) | (uint32_t)petl_bf16_round(hi) << 16;
            }
    out->N = N;
    out->K = K;
    out->data = d;
    return PETL_OK;
}

void petl_bf16_free(petl_bf16_mat *m) {
    free(m->data);
    m->data = NULL;
}

/* B[n][k] as the pack holds it (rounded), for the naive twin. */
static float packed_at(const petl_bf16_mat *b, int n, int k) {
    const int kp = (b->K + 1) / 2;
    uint32_t w = b->data[((size_t)(n / NR) * kp + k / 2) * NR + n % NR];
    return petl_bf16_to_f32((uint16_t)(k & 1 ? w >> 16 : w & 0xFFFF));
}

void matmul_bf16_naive(float *c, const float *a, const petl_bf16_mat *b, const float *bias,
                       int64_t M, bool accumulate) {
    for (int64_t i = 0; i < M; i++)
        for (int n = 0; n < b->N; n++) {
            double s = 0.0;
            for (int k = 0; k < b->K; k++)
                s +=
                    (double)petl_bf16_to_f32(petl_bf16_round(a[i * b->K + k])) * packed_at(b, n, k);
            float v = (float)s + (bias ? bias[n] : 0.0f);
            c[i * b->N + n] = accumulate ? c[i * b->N + n] + v : v;
        }
}

#if defined(__AVX512BF16__)
/* Rows [0, mb) x columns [0, kc) of a (row stride lda) into pairs apk[mb][KC/2] (zero past
 * kc). */
static void convert_a(uint32_t *apk, const float *a, int64_t lda, int mb, int kc) {
    for (int i = 0; i < mb; i++) {
        const float *src = a + (int64_t)i * lda;
        uint32_t *dst = apk + (size_t)i * (KC / 2);
        for (int k = 0; k < kc; k += 32) {
            const int rem = kc - k;
            const __mmask16 m0 = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1u);
            const __mmask16 m1 = rem >= 32  ? 0xFFFF
                                 : rem > 16 ? (__mmask16)((1u << (rem - 16)) - 1u)
                                            : 0;
            __m512 lo = _mm512_maskz_loadu_ps(m0, src + k),
                   hi = _mm512_maskz_loadu_ps(m1, src + k + 16);
            _mm512_storeu_si512((void *)(dst + k / 2), (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

/* The micro-tile: rows [0, mr) of apk x one panel slice (kp pairs), into c (row stride ldc),
 * ncols <= 32 valid columns. start: 0 continue from c, 1 from the bias (or 0), 2 from c + bias
 * (the first K block of an accumulating call adds the bias once). */
static inline __attribute__((always_inline)) void micro(const int mr, const uint32_t *apk,
                                                        const uint32_t *bp, int kp, float *c,
                                                        int64_t ldc, int ncols, int start,
                                                        const float *bias) {
    const __mmask16 k0 = ncols >= 16 ? 0xFFFF : (__mmask16)((1u << ncols) - 1u);
    const __mmask16 k1 = ncols >= 32  ? 0xFFFF
                         : ncols > 16 ? (__mmask16)((1u << (ncols - 16)) - 1u)
                                      : 0;
    __m512 acc[MR][2];
    const __m512 b0 = bias ? _mm512_maskz_loadu_ps(k0, bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_maskz_loadu_ps(k1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        if (start == 1) {
            acc[i][0] = b0;
            acc[i][1] = b1;
        } else {
            acc[i][0] = _mm512_maskz_loadu_ps(k0, c + i * ldc);
            acc[i][1] = _mm512_maskz_loadu_ps(k1, c + i * ldc + 16);
            if (start == 2) {
                acc[i][0] = _mm512_add_ps(acc[i][0], b0);
                acc[i][1] = _mm512_add_ps(acc[i][1], b1);
            }
        }
    }
    for (int kk = 0; kk < kp; kk++) {
        const __m512bh v0 = (__m512bh)_mm512_load_si512((const void *)(bp + (size_t)kk * NR));
        const __m512bh v1 = (__m512bh)_mm512_load_si512((const void *)(bp + (size_t)kk * NR + 16));
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)apk[(size_t)i * (KC / 2) + kk]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, v0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, v1);
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        _mm512_mask_storeu_ps(c + i * ldc, k0, acc[i][0]);
        _mm512_mask_storeu_ps(c + i * ldc + 16, k1, acc[i][1]);
    }
}

static void micro_any(int mr, const uint32_t *apk, const uint32_t *bp, int kp, float *c,
                      int64_t ldc, int ncols, int start, const float *bias) {
    switch (mr) {
#define CASE(R)                                                                                    \
    case R: micro(R, apk, bp, kp, c, ldc, ncols, start, bias); break;
        CASE(1)
        CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
    }
}
#endif

void matmul_bf16(float *c, const float *a, const petl_bf16_mat *b, const float *bias, int64_t M,
                 bool accumulate) {
#if defined(__AVX512BF16__)
    const int N = b->N, K = b->K, kpp = (K + 1) / 2;
    const int64_t mtiles = (M + MB - 1) / MB, ntiles = (N + NB - 1) / NB;
#pragma omp parallel for schedule(static) collapse(2) if (M * N * (int64_t)K > (1 << 18))
    for (int64_t mt = 0; mt < mtiles; mt++)
        for (int64_t nt = 0; nt < ntiles; nt++) {
            _Alignas(64) uint32_t apk[MB * (KC / 2)];
            const int64_t m0 = mt * MB;
            const int mb = (int)(M - m0 < MB ? M - m0 : MB);
            const int n0 = (int)nt * NB, nb = N - n0 < NB ? N - n0 : NB;
            for (int k0 = 0; k0 < K; k0 += KC) {
                const int kc = K - k0 < KC ? K - k0 : KC, kp = (kc + 1) / 2;
                convert_a(apk, a + m0 * K + k0, K, mb, kc);
                const int start = k0 > 0 ? 0 : accumulate ? 2 : 1;
                for (int p = 0; p < nb; p += NR) {
                    const uint32_t *bp =
                        b->data + ((size_t)((n0 + p) / NR) * kpp + (size_t)k0 / 2) * NR;
                    const int ncols = nb - p < NR ? nb - p : NR;
                    const float *bb = bias && start ? bias + n0 + p : NULL;
                    for (int i = 0; i < mb; i += MR)
                        micro_any(mb - i < MR ? mb - i : MR, apk + (size_t)i * (KC / 2), bp, kp,
                                  c + (m0 + i) * N + n0 + p, N, ncols, start, bb);
                }
            }
        }
#else
    matmul_bf16_naive(c, a, b, bias, M, accumulate);
#endif
}
