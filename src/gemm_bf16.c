/* Linear layers with bf16 inputs and fp32 accumulation (--precision bf16): the frozen base's
 * weights packed once as bf16, activations rounded to bf16 on the fly, products summed in fp32
 * by AVX512-BF16's dot-product instruction (vdpbf16ps: two bf16 multiply-adds per 32-bit lane).
 *
 * Why our own kernel: the BLAS in use (OpenBLAS 0.3.21) has no bf16 GEMM with fp32 output in
 * its CBLAS interface, and oneDNN 2.6 (Debian) offers bf16 only through matmul primitives
 * created per shape (a JIT per distinct row count, and a weight reorder tied to it), while
 * training calls every GEMM with a different row count. The kernel below is one register-blocked
 * loop; its naive twin (petl_matmul_bf16_naive) rounds the same way and sums in double.
 *
 * Layout. C[M, N] = A[M, K] . B[N, K]^T (+ bias), B a Linear weight [out, in] (forward) or the
 * transpose of one (input gradients). B is packed into panels of 32 columns: for each k pair
 * kk, 32 lanes of (B[n][2kk], B[n][2kk+1]) as one 32-bit bf16 pair (even k in the low half),
 * i.e. data[(panel * Kp/2 + kk) * 32 + j]. A is converted per tile into the same pairs, one
 * 32-bit word per (row, kk), which the kernel broadcasts to all 16 lanes.
 *
 * Blocking (Zen 4: 32 KB L1d, 1 MB L2 per core): micro-tile 12 rows x 32 columns (24 zmm
 * accumulators); K in blocks of 256 (a 16 KB slice of a panel stays in L1 while every row group
 * of the tile passes over it); tiles of 96 rows x 128 columns, spread over the OpenMP threads.
 *
 * petl_gemm_bf16 is the same kernel for products whose operands both change every call (attention
 * scores and context, the adapters' projections and their gradients), autocast-style: any fp32
 * A[M, K] and B[K, N] given by strides, both rounded to bf16 while they are packed into stack
 * buffers (the B slice of a K block into the panel layout above, the A tile into pairs), fp32
 * sums, C = beta C + alpha A.B (+ bias). Unit-stride operands are read with vector loads either
 * way round: a row-major B or column-major A pairs two k rows with a 16-bit interleave; a
 * row-major A needs nothing more; a column-major B (B^T stored, as Q K^T or x W^T) is converted
 * 16 columns x 32 k at a time and transposed in registers. */
#include "internal.h"
#include "kernels.h"

#include <immintrin.h>
#include <omp.h>
#include <pthread.h>
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

void petl_matmul_bf16_naive(float *c, const float *a, const petl_bf16_mat *b, const float *bias,
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

/* ---------------------------------------------------------------- petl_gemm_bf16: both operands */

/* 16-bit lane order that interleaves the two halves of cvtne2ps_pbh(hi, lo): word i = (lo[i],
 * hi[i]), i.e. a pair of two k rows (even k in the low half) for 16 columns. */
static inline __m512i pair_index(void) {
    return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                            6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
}

static inline __mmask16 mask_upto(int n) { /* the first min(max(n, 0), 16) lanes */
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* Pairs of the k rows lo and hi (hi NULL: zero, past an odd K) at 16 columns, m valid. */
static inline __m512i pair_rows(const float *lo, const float *hi, __mmask16 m, __m512i idx) {
    const __m512 l = _mm512_maskz_loadu_ps(m, lo);
    const __m512 h = hi ? _mm512_maskz_loadu_ps(m, hi) : _mm512_setzero_ps();
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(h, l));
}

/* Transposes a 16 x 16 matrix of 32-bit words held as 16 rows. */
static inline void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    /* now 128-bit lane L of r[4g + c] holds rows 4g..4g+3 at column 4L + c */
    for (int c = 0; c < 4; c++) {
        t[c] = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x88);     /* lanes 0, 2 */
        t[4 + c] = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xDD); /* lanes 1, 3 */
        t[8 + c] = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x88);
        t[12 + c] = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xDD);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0x88);           /* column c */
        r[8 + c] = _mm512_shuffle_i32x4(t[c], t[8 + c], 0xDD);       /* column 8 + c */
        r[4 + c] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0x88);  /* column 4 + c */
        r[12 + c] = _mm512_shuffle_i32x4(t[4 + c], t[12 + c], 0xDD); /* column 12 + c */
    }
}

/* A tile for petl_gemm_bf16, rows [0, mb) x k [0, kc), element (i, k) at a[i * rs + k * cs], into
 * pairs: layout ROWS apk[i * KC/2 + kk] (a row-major A, convert_a; or any strides), COLS
 * apk[kk * MB + i] (a column-major A, cs the distance between k rows). Returns the layout. */
enum { A_ROWS = 0, A_COLS = 1 };
static int convert_a_any(uint32_t *apk, const float *a, int64_t rs, int64_t cs, int mb, int kc) {
    const int kp = (kc + 1) / 2;
    if (cs == 1) {
        convert_a(apk, a, rs, mb, kc);
        return A_ROWS;
    }
    if (rs == 1) {
        const __m512i idx = pair_index();
        for (int kk = 0; kk < kp; kk++) {
            const float *lo = a + (int64_t)(2 * kk) * cs;
            const float *hi = 2 * kk + 1 < kc ? lo + cs : NULL;
            for (int i = 0; i < mb; i += 16)
                _mm512_store_si512((void *)(apk + (size_t)kk * MB + i),
                                   pair_rows(lo + i, hi ? hi + i : NULL, mask_upto(mb - i), idx));
        }
        return A_COLS;
    }
    for (int i = 0; i < mb; i++)
        for (int kk = 0; kk < kp; kk++) {
            const float *s = a + (int64_t)i * rs + (int64_t)(2 * kk) * cs;
            const uint16_t hi = 2 * kk + 1 < kc ? petl_bf16_round(s[cs]) : 0;
            apk[(size_t)i * (KC / 2) + kk] = (uint32_t)petl_bf16_round(s[0]) | (uint32_t)hi << 16;
        }
    return A_ROWS;
}

/* The B slice k [0, kc) x columns [0, nb) of petl_gemm_bf16, element (k, j) at b[k * rs + j * cs],
 * into panels bpk[(j / 32) * KC/2 * 32 + kk * 32 + j % 32] (columns past nb zero). */
static void convert_b_any(uint32_t *bpk, const float *b, int64_t rs, int64_t cs, int nb, int kc) {
    const int kp = (kc + 1) / 2;
    const __m512i idx = pair_index();
    for (int p = 0; p < nb; p += NR) {
        uint32_t *dst = bpk + (size_t)(p / NR) * (KC / 2) * NR;
        if (cs == 1) { /* row-major: two k rows, 32 columns, interleaved */
            for (int kk = 0; kk < kp; kk++) {
                const float *lo = b + (int64_t)(2 * kk) * rs + p;
                const float *hi = 2 * kk + 1 < kc ? lo + rs : NULL;
                _mm512_store_si512((void *)(dst + (size_t)kk * NR),
                                   pair_rows(lo, hi, mask_upto(nb - p), idx));
                _mm512_store_si512(
                    (void *)(dst + (size_t)kk * NR + 16),
                    pair_rows(lo + 16, hi ? hi + 16 : NULL, mask_upto(nb - p - 16), idx));
            }
        } else if (rs == 1) { /* column-major: 32 k of a column are 16 pairs; 16 columns at once,
                                 transposed */
            for (int k = 0; k < kc; k += 32) {
                const __mmask16 m0 = mask_upto(kc - k), m1 = mask_upto(kc - k - 16);
                for (int h = 0; h < NR; h += 16) {
                    __m512i r[16];
                    for (int jj = 0; jj < 16; jj++) {
                        const int j = p + h + jj;
                        if (j < nb) {
                            const float *s = b + (int64_t)j * cs + k;
                            r[jj] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, s + 16),
                                                                 _mm512_maskz_loadu_ps(m0, s));
                        } else {
                            r[jj] = _mm512_setzero_si512();
                        }
                    }
                    transpose16(r);
                    for (int t = 0; t < 16; t++)
                        _mm512_store_si512((void *)(dst + (size_t)(k / 2 + t) * NR + h), r[t]);
                }
            }
        } else {
            for (int kk = 0; kk < kp; kk++)
                for (int j = 0; j < NR; j++) {
                    uint32_t w = 0;
                    if (p + j < nb) {
                        const float *s = b + (int64_t)(2 * kk) * rs + (int64_t)(p + j) * cs;
                        const uint16_t hi = 2 * kk + 1 < kc ? petl_bf16_round(s[rs]) : 0;
                        w = (uint32_t)petl_bf16_round(s[0]) | (uint32_t)hi << 16;
                    }
                    dst[(size_t)kk * NR + j] = w;
                }
        }
    }
}

/* What petl_gemm_bf16's micro-tile does with its sums: c = alpha sums + (first K block: beta c, not
 * read when beta is 0, + bias; later blocks: c). */
typedef struct {
    float alpha, beta;
    const float *bias; /* at the tile's first column; NULL: none */
    bool first;
} gemm_epi;

/* The micro-tile of petl_gemm_bf16: rows [0, mr) of the A pairs (layout acol, from ap) x one panel
 * slice (kp pairs), summed from zero, then the epilogue e into c (row stride ldc), ncols <= 32
 * valid columns. */
static inline __attribute__((always_inline)) void micro_g(const int mr, const int acol,
                                                          const uint32_t *ap, const uint32_t *bp,
                                                          int kp, float *c, int64_t ldc, int ncols,
                                                          const gemm_epi *e) {
    const size_t ars = acol ? 1 : KC / 2, aks = acol ? MB : 1;
    const __mmask16 k0 = mask_upto(ncols), k1 = mask_upto(ncols - 16);
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int kk = 0; kk < kp; kk++) {
        const __m512bh v0 = (__m512bh)_mm512_load_si512((const void *)(bp + (size_t)kk * NR));
        const __m512bh v1 = (__m512bh)_mm512_load_si512((const void *)(bp + (size_t)kk * NR + 16));
#pragma GCC unroll 12
        for (int i = 0; i < mr; i++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)ap[i * ars + kk * aks]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], av, v0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], av, v1);
        }
    }
    const __m512 al = _mm512_set1_ps(e->alpha), be = _mm512_set1_ps(e->beta);
    __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    if (e->first && e->bias) {
        b0 = _mm512_maskz_loadu_ps(k0, e->bias);
        b1 = _mm512_maskz_loadu_ps(k1, e->bias + 16);
    }
    const bool keep = !e->first, scale = e->first && e->beta != 0.0f;
#pragma GCC unroll 12
    for (int i = 0; i < mr; i++) {
        __m512 c0 = b0, c1 = b1;
        if (keep) {
            c0 = _mm512_maskz_loadu_ps(k0, c + i * ldc);
            c1 = _mm512_maskz_loadu_ps(k1, c + i * ldc + 16);
        } else if (scale) {
            c0 = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(k0, c + i * ldc), b0);
            c1 = _mm512_fmadd_ps(be, _mm512_maskz_loadu_ps(k1, c + i * ldc + 16), b1);
        }
        _mm512_mask_storeu_ps(c + i * ldc, k0, _mm512_fmadd_ps(al, acc[i][0], c0));
        _mm512_mask_storeu_ps(c + i * ldc + 16, k1, _mm512_fmadd_ps(al, acc[i][1], c1));
    }
}

static void micro_g_any(int mr, int acol, const uint32_t *ap, const uint32_t *bp, int kp, float *c,
                        int64_t ldc, int ncols, const gemm_epi *e) {
    switch (mr + MR * acol) {
#define CASE(R)                                                                                    \
    case R: micro_g(R, A_ROWS, ap, bp, kp, c, ldc, ncols, e); break;                               \
    case R + MR: micro_g(R, A_COLS, ap, bp, kp, c, ldc, ncols, e); break;
        CASE(1)
        CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
    }
}

typedef struct {
    int M, N, K;
    float alpha, beta;
    const float *A, *B, *bias;
    int64_t a_rs, a_cs, b_rs, b_cs, ldc;
    float *C;
} gemm_args;

/* Rows [m0, m1) x columns [n0, n1) of C, one thread: for each 128-column tile and K block the
 * B slice is converted once, then each 96-row tile of A and its micro-tiles. */
static void gemm_block(const gemm_args *g, int m0, int m1, int n0, int n1) {
    _Alignas(64) uint32_t apk[MB * (KC / 2)];
    _Alignas(64) uint32_t bpk[(NB / NR) * (KC / 2) * NR];
    for (int n = n0; n < n1; n += NB) {
        const int nb = n1 - n < NB ? n1 - n : NB;
        for (int k0 = 0; k0 < g->K; k0 += KC) {
            const int kc = g->K - k0 < KC ? g->K - k0 : KC, kp = (kc + 1) / 2;
            convert_b_any(bpk, g->B + (int64_t)k0 * g->b_rs + (int64_t)n * g->b_cs, g->b_rs,
                          g->b_cs, nb, kc);
            for (int m = m0; m < m1; m += MB) {
                const int mb = m1 - m < MB ? m1 - m : MB;
                const int acol =
                    convert_a_any(apk, g->A + (int64_t)m * g->a_rs + (int64_t)k0 * g->a_cs, g->a_rs,
                                  g->a_cs, mb, kc);
                for (int p = 0; p < nb; p += NR) {
                    const gemm_epi e = {g->alpha, g->beta, g->bias ? g->bias + n + p : NULL,
                                        k0 == 0};
                    const uint32_t *bp = bpk + (size_t)(p / NR) * (KC / 2) * NR;
                    const int ncols = nb - p < NR ? nb - p : NR;
                    for (int i = 0; i < mb; i += MR)
                        micro_g_any(mb - i < MR ? mb - i : MR, acol,
                                    apk + (acol ? (size_t)i : (size_t)i * (KC / 2)), bp, kp,
                                    g->C + (int64_t)(m + i) * g->ldc + n + p, g->ldc, ncols, &e);
                }
            }
        }
    }
}
#endif

#if defined(__AVX512BF16__)
/* The calling thread's buffer for one row tile of A in bf16 over the whole K (grown on demand,
 * kept for the thread's life and freed when the thread exits; NULL when out of memory).
 * petl_matmul_bf16 converts each row tile once instead of once per column tile: with K = 3072 the
 * tile's fp32 rows (1.2 MB) no longer fit in L2, and reading them back for each of the 6 to 24
 * column tiles cost ~6% of a bf16 training step. Per thread rather than per call: a malloc per
 * call could fault its pages in again every time. The pthread key's destructor frees it when a
 * thread ends (a server's executor and its OpenMP team come and go with the server). */
static _Thread_local uint32_t *tl_abuf;
static _Thread_local size_t tl_abuf_words;
static pthread_key_t abuf_key;
static pthread_once_t abuf_once = PTHREAD_ONCE_INIT;
static bool abuf_key_ok;

static void abuf_key_init(void) {
    abuf_key_ok = pthread_key_create(&abuf_key, free) == 0;
}

static uint32_t *thread_abuf(size_t words) {
    if (words > tl_abuf_words) {
        pthread_once(&abuf_once, abuf_key_init);
        if (!abuf_key_ok) return NULL; /* nowhere to free it from: convert per tile instead */
        free(tl_abuf);
        tl_abuf = aligned_alloc(64, (words * 4 + 63) / 64 * 64);
        tl_abuf_words = tl_abuf ? words : 0;
        pthread_setspecific(abuf_key, tl_abuf);
    }
    return tl_abuf;
}
#endif

void petl_matmul_bf16(float *c, const float *a, const petl_bf16_mat *b, const float *bias,
                      int64_t M, bool accumulate) {
#if defined(__AVX512BF16__)
    const int N = b->N, K = b->K, kpp = (K + 1) / 2;
    const int64_t mtiles = (M + MB - 1) / MB, ntiles = (N + NB - 1) / NB;
    const int kblocks = (K + KC - 1) / KC;
    const size_t tile_words = (size_t)MB * (KC / 2); /* one K block of a row tile */
#pragma omp parallel if (M * N * (int64_t)K > (1 << 18))
    {
        /* abuf: the row tile `have` in bf16, K block kb at abuf + kb * tile_words; without it
         * (no memory) each tile converts its K blocks into apk as it goes. */
        uint32_t *abuf = thread_abuf((size_t)kblocks * tile_words);
        int64_t have = -1;
        _Alignas(64) uint32_t apk[MB * (KC / 2)];
#pragma omp for schedule(static) collapse(2)
        for (int64_t mt = 0; mt < mtiles; mt++)
            for (int64_t nt = 0; nt < ntiles; nt++) {
                const int64_t m0 = mt * MB;
                const int mb = (int)(M - m0 < MB ? M - m0 : MB);
                const int n0 = (int)nt * NB, nb = N - n0 < NB ? N - n0 : NB;
                if (abuf && have != mt) {
                    for (int kb = 0; kb < kblocks; kb++) {
                        const int k0 = kb * KC, kc = K - k0 < KC ? K - k0 : KC;
                        convert_a(abuf + (size_t)kb * tile_words, a + m0 * K + k0, K, mb, kc);
                    }
                    have = mt;
                }
                for (int k0 = 0; k0 < K; k0 += KC) {
                    const int kc = K - k0 < KC ? K - k0 : KC, kp = (kc + 1) / 2;
                    const uint32_t *ap = apk;
                    if (abuf)
                        ap = abuf + (size_t)(k0 / KC) * tile_words;
                    else
                        convert_a(apk, a + m0 * K + k0, K, mb, kc);
                    const int start = k0 > 0 ? 0 : accumulate ? 2 : 1;
                    for (int p = 0; p < nb; p += NR) {
                        const uint32_t *bp =
                            b->data + ((size_t)((n0 + p) / NR) * kpp + (size_t)k0 / 2) * NR;
                        const int ncols = nb - p < NR ? nb - p : NR;
                        const float *bb = bias && start ? bias + n0 + p : NULL;
                        for (int i = 0; i < mb; i += MR)
                            micro_any(mb - i < MR ? mb - i : MR, ap + (size_t)i * (KC / 2), bp, kp,
                                      c + (m0 + i) * N + n0 + p, N, ncols, start, bb);
                    }
                }
            }
    }
#else
    petl_matmul_bf16_naive(c, a, b, bias, M, accumulate);
#endif
}

void petl_gemm_bf16_naive(int M, int N, int K, float alpha, const float *A, int64_t a_rs,
                          int64_t a_cs, const float *B, int64_t b_rs, int64_t b_cs, float beta,
                          float *C, int64_t ldc, const float *bias) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int k = 0; k < K; k++)
                s += (double)petl_bf16_to_f32(petl_bf16_round(A[i * a_rs + k * a_cs])) *
                     petl_bf16_to_f32(petl_bf16_round(B[k * b_rs + j * b_cs]));
            double v = (double)alpha * s + (bias ? bias[j] : 0.0);
            if (beta != 0.0f) v += (double)beta * C[i * ldc + j];
            C[i * ldc + j] = (float)v;
        }
}

void petl_gemm_bf16(int M, int N, int K, float alpha, const float *A, int64_t a_rs, int64_t a_cs,
                    const float *B, int64_t b_rs, int64_t b_cs, float beta, float *C, int64_t ldc,
                    const float *bias) {
#if defined(__AVX512BF16__)
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* no products: the epilogue alone */
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                float *c = C + (int64_t)i * ldc + j;
                *c = (beta != 0.0f ? beta * *c : 0.0f) + (bias ? bias[j] : 0.0f);
            }
        return;
    }
    const gemm_args g = {M, N, K, alpha, beta, A, B, bias, a_rs, a_cs, b_rs, b_cs, ldc, C};
    /* Inside any parallel region (attention's loop over heads, even a one-thread team) the
     * caller owns the threads: run on this one. */
    const int nthreads = omp_get_level() > 0 ? 1 : omp_get_max_threads();
    if (nthreads == 1 || (int64_t)M * N * K <= (1 << 18)) {
        gemm_block(&g, 0, M, 0, N);
        return;
    }
    /* Work items of about 2 per thread: strips of nw columns (128, narrower when there are too
     * few rows) x chunks of whole 96-row tiles, as long as possible (each item converts its B
     * slices once). Every element's sum is the same whatever the split. */
    const int want = 2 * nthreads, mtiles = (M + MB - 1) / MB;
    int nw = NB, ntiles = (N + NB - 1) / NB;
    int chunks = (want + ntiles - 1) / ntiles;
    if (chunks > mtiles) chunks = mtiles;
    if (chunks * ntiles < want && N > NR) {
        const int strips = (want + chunks - 1) / chunks;
        nw = ((N + strips - 1) / strips + NR - 1) / NR * NR;
        ntiles = (N + nw - 1) / nw;
    }
    const int per = (mtiles + chunks - 1) / chunks, items = ((mtiles + per - 1) / per) * ntiles;
#pragma omp parallel for schedule(dynamic, 1) if (items > 1)
    for (int it = 0; it < items; it++) {
        const int mc = it / ntiles, nt = it % ntiles;
        const int m0 = mc * per * MB, m1 = m0 + per * MB < M ? m0 + per * MB : M;
        const int n0 = nt * nw, n1 = n0 + nw < N ? n0 + nw : N;
        gemm_block(&g, m0, m1, n0, n1);
    }
#else
    petl_gemm_bf16_naive(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, ldc, bias);
#endif
}

/* ------------------------------------------------------------ linear layers of trained weights */

void petl_matmul_forward_bf16(float *out, const float *inp, const float *w, const float *b,
                              int64_t N, int IC, int OC) {
    /* out[N, OC] = inp[N, IC] . w^T (+ b): B[k][j] = w[j][k], a column-major operand */
    if (N > 0) petl_gemm_bf16((int)N, OC, IC, 1.0f, inp, IC, 1, w, 1, IC, 0.0f, out, OC, b);
}

void petl_matmul_backward_bf16(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *w, int64_t N, int IC, int OC) {
    if (N <= 0) return;
    /* d inp[N, IC] += dout[N, OC] . w[OC, IC] */
    if (dinp) petl_gemm_bf16((int)N, IC, OC, 1.0f, dout, OC, 1, w, IC, 1, 1.0f, dinp, IC, NULL);
    /* d w[OC, IC] += dout^T . inp: A[o][i] = dout[i][o], a column-major operand */
    if (dweight)
        petl_gemm_bf16(OC, IC, (int)N, 1.0f, dout, 1, OC, inp, IC, 1, 1.0f, dweight, IC, NULL);
    /* the bias gradient is a sum, not a product: fp32 as ever */
    if (dbias) petl_matmul_backward(NULL, NULL, dbias, dout, inp, w, N, IC, OC);
}
