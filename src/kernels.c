/* The encoder's low-level operations and their naive twins (see kernels.h).
 *
 * The optimised kernels hand the projections to OpenBLAS (cblas_sgemm, which threads itself)
 * and spread row-wise work over OpenMP threads. exp / erf are written out as polynomials so that
 * `#pragma omp simd` loops vectorise them: the libm calls do not vectorise without -ffast-math,
 * and GELU and softmax call them once per activation. The naive twins are plain loops with
 * double accumulators and libm, slow and obviously right. */
#include "kernels.h"

#include "rng.h"

#include <cblas.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <math.h>
#include <omp.h>
#include <string.h>

/* --------------------------------------------------------------------------- exp and erf */

/* exp(x) to about 2 ulp for x in [-87.3, 88.3] (clamped outside: exp(-87.3) ~ 1.2e-38 stands in
 * for zero, which no softmax or GELU result can tell apart). Cephes' expf: x = n ln2 + r with
 * |r| <= ln2 / 2, a degree-7 polynomial for exp(r), and 2^n built in the exponent bits. */
static inline float exp_poly(float x) {
    /* Written so that NaN fails the first test and becomes -87.3: the float-to-int conversion
     * below must never see NaN (undefined behaviour). */
    x = x > -87.3f ? x : -87.3f;
    x = x < 88.3f ? x : 88.3f;
    /* Round to nearest by the 1.5 * 2^23 trick: branch-free and vectorisable. */
    const float shifter = 12582912.0f;
    float n = (x * 1.44269504088896341f + shifter) - shifter;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* erf(x) to about 1e-7 absolute (float rounding; the fits below are good to 3e-9), in two
 * pieces fitted by least squares on Chebyshev nodes (see the test for the check against libm):
 *   |x| < 1:      erf(x) = x P(x^2)                      (no cancellation near 0)
 *   1 <= |x| < 4: erf(x) = 1 - exp(-x^2) Q(1 / (1 + |x| / 2))
 *   |x| >= 4:     erf(x) = +-1 (erfc(4) = 1.5e-8 is below float resolution at 1). */
static inline float erf_poly(float x) {
    float ax = x < 0.0f ? -x : x;
    float z = ax * ax;
    float p = 7.8824971187e-05f;
    p = p * z - 8.0188549951e-04f;
    p = p * z + 5.1893119429e-03f;
    p = p * z - 2.6854328796e-02f;
    p = p * z + 1.1283597463e-01f;
    p = p * z - 3.7612626904e-01f;
    p = p * z + 1.1283791659e+00f;
    float small = ax * p;
    float t = 1.0f / (1.0f + 0.5f * ax);
    float q = -5.5257199231e-02f;
    q = q * t - 5.2188985977e-02f;
    q = q * t + 3.9747270026e-01f;
    q = q * t + 1.0541665399e-01f;
    q = q * t + 3.2933792519e-01f;
    q = q * t + 2.7390499571e-01f;
    q = q * t + 5.8387228500e-04f;
    float large = 1.0f - q * exp_poly(-z);
    float y = ax < 1.0f ? small : (ax < 4.0f ? large : 1.0f);
    return x < 0.0f ? -y : y;
}

/* Inlined into the `omp simd` loops below (simd clones of functions that call functions are not
 * vectorised by GCC 12: they loop over the lanes). */
float petl_expf(float x) {
    return exp_poly(x);
}
float petl_erff(float x) {
    return erf_poly(x);
}

/* ------------------------------------------------------------------------------- matmul */

#if defined(__AVX512F__)
/* Few rows (batch 1, short sentences): OpenBLAS packs the whole weight matrix on every call and
 * reaches a third of the memory bandwidth there. This kernel reads the weights once, straight
 * from their [OC, IC] rows: 4 weight rows x 4 input rows of dot products at a time, the 4
 * weight rows (4 IC floats) staying in L1 while every input row block passes over them. */
enum { SMALL_M_MAX = 16 }; /* measured cross-over with OpenBLAS (Zen 4): 16 to 32 rows */

static void matmul_small(float *out, const float *inp, const float *w, const float *b, int M,
                         int IC, int OC) {
    const int nob = (OC + 3) / 4;
    const __mmask16 tail = (__mmask16)((1u << (IC % 16 ? IC % 16 : 16)) - 1u);
    const int kfull = IC % 16 ? IC - IC % 16 : IC; /* the last chunk is masked if partial */
#pragma omp parallel for schedule(static) if ((int64_t)M * IC * OC > (1 << 18))
    for (int ob = 0; ob < nob; ob++) {
        const int o0 = ob * 4, no = OC - o0 < 4 ? OC - o0 : 4;
        const float *wr[4];
        for (int j = 0; j < 4; j++)
            wr[j] = w + (int64_t)(o0 + (j < no ? j : 0)) * IC;
        for (int m0 = 0; m0 < M; m0 += 4) {
            const int nm = M - m0 < 4 ? M - m0 : 4;
            const float *xr[4];
            for (int i = 0; i < 4; i++)
                xr[i] = inp + (int64_t)(m0 + (i < nm ? i : 0)) * IC;
            __m512 acc[4][4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    acc[i][j] = _mm512_setzero_ps();
            for (int k = 0; k < IC; k += 16) {
                const __mmask16 mk = k < kfull ? (__mmask16)0xFFFF : tail;
                __m512 wv[4];
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    wv[j] = _mm512_maskz_loadu_ps(mk, wr[j] + k);
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    __m512 xv = _mm512_maskz_loadu_ps(mk, xr[i] + k);
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++)
                        acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
                }
            }
            /* Reduce with constant indices only, so that acc stays in registers. */
            float sum[4][4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    sum[i][j] = _mm512_reduce_add_ps(acc[i][j]);
            for (int i = 0; i < nm; i++)
                for (int j = 0; j < no; j++)
                    out[(int64_t)(m0 + i) * OC + o0 + j] = sum[i][j] + (b ? b[o0 + j] : 0.0f);
        }
    }
}
#endif

void petl_matmul_forward(float *out, const float *inp, const float *w, const float *b, int64_t N,
                         int IC, int OC) {
#if defined(__AVX512F__)
    if (N <= SMALL_M_MAX) {
        matmul_small(out, inp, w, b, (int)N, IC, OC);
        return;
    }
#endif
    /* Seed out with the bias and let the GEMM accumulate onto it (beta = 1): one pass over out
     * instead of a GEMM and then a separate bias pass. */
    float beta = 0.0f;
    if (b) {
        beta = 1.0f;
#pragma omp parallel for if (N * OC > 65536)
        for (int64_t i = 0; i < N; i++)
            memcpy(out + i * OC, b, (size_t)OC * sizeof *out);
    }
    /* Weights are [OC, IC] (PyTorch Linear): out = inp . w^T, the transposed operand flag. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, OC, IC, 1.0f, inp, IC, w, IC,
                beta, out, OC);
}

void petl_matmul_naive(float *out, const float *inp, const float *w, const float *b, int64_t N,
                       int IC, int OC) {
    for (int64_t i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < IC; k++)
                s += (double)inp[i * IC + k] * w[(int64_t)o * IC + k];
            out[i * OC + o] = (float)s;
        }
}

void petl_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *w, int64_t N, int IC, int OC) {
    if (N <= 0) return;
    /* out = inp . w^T + b, so d inp = dout . w (beta = 1 accumulates onto dinp) */
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, IC, OC, 1.0f, dout, OC,
                    w, IC, 1.0f, dinp, IC);
    /* d w[o, k] = sum_i dout[i, o] inp[i, k]: dout^T . inp */
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, (blasint)N, 1.0f, dout, OC,
                    inp, IC, 1.0f, dweight, IC);
    /* d b[o] = sum_i dout[i, o]: rows in order for every column, whatever the thread count */
    if (dbias) {
#pragma omp parallel for if (N * OC > 65536)
        for (int o0 = 0; o0 < OC; o0 += 64) {
            const int o1 = o0 + 64 < OC ? o0 + 64 : OC;
            for (int64_t i = 0; i < N; i++) {
                const float *d = dout + i * OC;
                for (int o = o0; o < o1; o++)
                    dbias[o] += d[o];
            }
        }
    }
}

void petl_matmul_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *w, int64_t N, int IC, int OC) {
    if (dinp)
        for (int64_t i = 0; i < N; i++)
            for (int k = 0; k < IC; k++) {
                double s = 0.0;
                for (int o = 0; o < OC; o++)
                    s += (double)dout[i * OC + o] * w[(int64_t)o * IC + k];
                dinp[i * IC + k] += (float)s;
            }
    if (dweight)
        for (int o = 0; o < OC; o++)
            for (int k = 0; k < IC; k++) {
                double s = 0.0;
                for (int64_t i = 0; i < N; i++)
                    s += (double)dout[i * OC + o] * inp[i * IC + k];
                dweight[(int64_t)o * IC + k] += (float)s;
            }
    if (dbias)
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int64_t i = 0; i < N; i++)
                s += dout[i * OC + o];
            dbias[o] += (float)s;
        }
}

/* ---------------------------------------------------------------------------- layernorm */

void petl_layernorm_forward(float *out, const float *inp, const float *res, const float *w,
                            const float *b, int64_t N, int C, float eps) {
#pragma omp parallel for if (N * C > 16384)
    for (int64_t i = 0; i < N; i++) {
        float *o = out + i * C;
        const float *x = inp + i * C;
        const float *r = res ? res + i * C : NULL;
        /* Sum the residual into out first (out may alias inp or res), then two passes:
         * mean, then the variance around it (no cancellation as with E[x^2] - E[x]^2).
         * Double accumulators: hidden states carry a few large outlier features, and float
         * sums of them would differ with the summation order (vector width, -O level). */
        double sum = 0.0;
        if (r) {
#pragma omp simd reduction(+ : sum)
            for (int c = 0; c < C; c++) {
                o[c] = x[c] + r[c];
                sum += o[c];
            }
        } else {
#pragma omp simd reduction(+ : sum)
            for (int c = 0; c < C; c++) {
                o[c] = x[c];
                sum += o[c];
            }
        }
        const float mean = (float)(sum / C);
        double var = 0.0;
#pragma omp simd reduction(+ : var)
        for (int c = 0; c < C; c++)
            var += (double)((o[c] - mean) * (o[c] - mean));
        const float rstd = (float)(1.0 / sqrt(var / C + eps));
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = (o[c] - mean) * rstd * w[c] + b[c];
    }
}

void petl_layernorm_naive(float *out, const float *inp, const float *res, const float *w,
                          const float *b, int64_t N, int C, float eps) {
    for (int64_t i = 0; i < N; i++) {
        double mean = 0.0, var = 0.0;
        for (int c = 0; c < C; c++)
            mean += (double)inp[i * C + c] + (res ? res[i * C + c] : 0.0f);
        mean /= C;
        for (int c = 0; c < C; c++) {
            double d = (double)inp[i * C + c] + (res ? res[i * C + c] : 0.0f) - mean;
            var += d * d;
        }
        var /= C;
        double rstd = 1.0 / sqrt(var + eps);
        for (int c = 0; c < C; c++) {
            double v = (double)inp[i * C + c] + (res ? res[i * C + c] : 0.0f);
            out[i * C + c] = (float)((v - mean) * rstd * w[c] + b[c]);
        }
    }
}

void petl_layernorm_forward_train(float *out, float *mean, float *rstd, const float *inp,
                                  const float *w, const float *b, int64_t N, int C, float eps) {
#pragma omp parallel for if (N * C > 16384)
    for (int64_t i = 0; i < N; i++) {
        float *o = out + i * C;
        const float *x = inp + i * C;
        /* The arithmetic of petl_layernorm_forward, so training and inference agree bit for bit. */
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int c = 0; c < C; c++)
            sum += x[c];
        const float mu = (float)(sum / C);
        double var = 0.0;
#pragma omp simd reduction(+ : var)
        for (int c = 0; c < C; c++)
            var += (double)((x[c] - mu) * (x[c] - mu));
        const float rs = (float)(1.0 / sqrt(var / C + eps));
#pragma omp simd
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - mu) * rs * w[c] + b[c];
        mean[i] = mu;
        rstd[i] = rs;
    }
}

void petl_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *w, const float *mean, const float *rstd,
                             int64_t N, int C) {
    /* Per row, with xhat = (x - mean) rstd and g = dout * w:
     *   d x = rstd (g - mean(g) - xhat mean(g xhat))   (mean and rstd depend on every x) */
    if (dinp) {
#pragma omp parallel for if (N * C > 16384)
        for (int64_t i = 0; i < N; i++) {
            const float *x = inp + i * C, *d = dout + i * C;
            float *dx = dinp + i * C;
            const float mu = mean[i], rs = rstd[i];
            float gmean = 0.0f, gxmean = 0.0f;
#pragma omp simd reduction(+ : gmean, gxmean)
            for (int c = 0; c < C; c++) {
                float g = d[c] * w[c];
                gmean += g;
                gxmean += g * (x[c] - mu) * rs;
            }
            gmean /= (float)C;
            gxmean /= (float)C;
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - mu) * rs;
                dx[c] += rs * (d[c] * w[c] - gmean - xhat * gxmean);
            }
        }
    }
    /* d w[c] = sum_i dout[i, c] xhat[i, c];  d b[c] = sum_i dout[i, c]: columns in parallel,
     * rows in order (deterministic for any thread count) */
    if (dweight || dbias) {
#pragma omp parallel for if (N * C > 65536)
        for (int c0 = 0; c0 < C; c0 += 64) {
            const int c1 = c0 + 64 < C ? c0 + 64 : C;
            for (int64_t i = 0; i < N; i++) {
                const float *x = inp + i * C, *d = dout + i * C;
                for (int c = c0; c < c1; c++) {
                    if (dweight) dweight[c] += d[c] * (x[c] - mean[i]) * rstd[i];
                    if (dbias) dbias[c] += d[c];
                }
            }
        }
    }
}

void petl_layernorm_backward_naive(float *dinp, float *dweight, float *dbias, const float *dout,
                                   const float *inp, const float *w, const float *mean,
                                   const float *rstd, int64_t N, int C) {
    for (int64_t i = 0; i < N; i++) {
        const float *x = inp + i * C, *d = dout + i * C;
        double gm = 0.0, gxm = 0.0;
        for (int c = 0; c < C; c++) {
            double xhat = ((double)x[c] - mean[i]) * rstd[i];
            gm += (double)d[c] * w[c];
            gxm += (double)d[c] * w[c] * xhat;
        }
        gm /= C;
        gxm /= C;
        for (int c = 0; c < C; c++) {
            double xhat = ((double)x[c] - mean[i]) * rstd[i];
            if (dinp) dinp[i * C + c] += (float)(rstd[i] * ((double)d[c] * w[c] - gm - xhat * gxm));
            if (dweight) dweight[c] += (float)(d[c] * xhat);
            if (dbias) dbias[c] += d[c];
        }
    }
}

/* --------------------------------------------------------------------------- activation */

void petl_activation_forward(float *out, const float *inp, int64_t n, petl_act act) {
    /* Chunks of 4096 keep each thread's slice in cache and give OpenMP enough pieces. */
    const int64_t chunk = 4096;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for if (n > 65536)
    for (int64_t k = 0; k < nchunks; k++) {
        int64_t lo = k * chunk, hi = lo + chunk < n ? lo + chunk : n;
        switch (act) {
        case PETL_ACT_GELU:
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) {
                float x = inp[i];
                out[i] = 0.5f * x * (1.0f + erf_poly(x * 0.70710678118654752f));
            }
            break;
        case PETL_ACT_GELU_NEW:
            /* tanh(u) = 1 - 2 / (exp(2u) + 1), vectorisable through exp_poly. */
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) {
                float x = inp[i];
                float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
                float th = 1.0f - 2.0f / (exp_poly(2.0f * u) + 1.0f);
                out[i] = 0.5f * x * (1.0f + th);
            }
            break;
        case PETL_ACT_RELU:
#pragma omp simd
            for (int64_t i = lo; i < hi; i++)
                out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
            break;
        }
    }
}

void petl_activation_naive(float *out, const float *inp, int64_t n, petl_act act) {
    for (int64_t i = 0; i < n; i++) {
        double x = inp[i];
        switch (act) {
        case PETL_ACT_GELU: out[i] = (float)(0.5 * x * (1.0 + erf(x / sqrt(2.0)))); break;
        case PETL_ACT_GELU_NEW:
            out[i] = (float)(0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))));
            break;
        case PETL_ACT_RELU: out[i] = (float)(x > 0.0 ? x : 0.0); break;
        }
    }
}

void petl_activation_backward(float *dinp, const float *dout, const float *inp, int64_t n,
                              petl_act act) {
    const int64_t chunk = 4096;
    int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for if (n > 65536)
    for (int64_t k = 0; k < nchunks; k++) {
        int64_t lo = k * chunk, hi = lo + chunk < n ? lo + chunk : n;
        switch (act) {
        case PETL_ACT_GELU:
            /* d/dx [x Phi(x)] = Phi(x) + x phi(x), Phi the normal CDF, phi its density */
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) {
                float x = inp[i];
                float cdf = 0.5f * (1.0f + erf_poly(x * 0.70710678118654752f));
                float pdf = 0.3989422804014327f * exp_poly(-0.5f * x * x);
                dinp[i] += (cdf + x * pdf) * dout[i];
            }
            break;
        case PETL_ACT_GELU_NEW:
            /* y = x/2 (1 + tanh u), u = s (x + c x^3): y' = (1 + th)/2 + x/2 (1 - th^2) u' */
#pragma omp simd
            for (int64_t i = lo; i < hi; i++) {
                float x = inp[i];
                float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
                float th = 1.0f - 2.0f / (exp_poly(2.0f * u) + 1.0f);
                float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
                dinp[i] += (0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du) * dout[i];
            }
            break;
        case PETL_ACT_RELU:
            /* derivative 1 for x > 0, else 0 (torch's choice at 0) */
#pragma omp simd
            for (int64_t i = lo; i < hi; i++)
                dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
            break;
        }
    }
}

void petl_activation_backward_naive(float *dinp, const float *dout, const float *inp, int64_t n,
                                    petl_act act) {
    for (int64_t i = 0; i < n; i++) {
        double x = inp[i], d = 0.0;
        switch (act) {
        case PETL_ACT_GELU:
            d = 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
            break;
        case PETL_ACT_GELU_NEW: {
            double s = sqrt(2.0 / M_PI), th = tanh(s * (x + 0.044715 * x * x * x));
            d = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * s * (1.0 + 3.0 * 0.044715 * x * x);
            break;
        }
        case PETL_ACT_RELU: d = x > 0.0 ? 1.0 : 0.0; break;
        }
        dinp[i] += (float)(d * dout[i]);
    }
}

/* sigmoid through exp_poly: 1 / (1 + exp(-x)) saturates cleanly at both ends. */
void petl_swish_forward(float *out, const float *inp, int64_t n) {
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = x / (1.0f + exp_poly(-x));
    }
}

void petl_swish_backward(float *dinp, const float *dout, const float *inp, int64_t n) {
    /* d/dx [x s(x)] = s (1 + x (1 - s)), s = sigmoid(x) */
#pragma omp parallel for simd if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float x = inp[i];
        float s = 1.0f / (1.0f + exp_poly(-x));
        dinp[i] += s * (1.0f + x * (1.0f - s)) * dout[i];
    }
}

/* -------------------------------------------------------------------------------- tanh */

void petl_tanh_forward(float *out, const float *inp, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = tanhf(inp[i]);
}

void petl_tanh_backward(float *dinp, const float *dout, const float *out, int64_t n) {
    /* tanh' = 1 - tanh^2, from the saved output */
    for (int64_t i = 0; i < n; i++)
        dinp[i] += (1.0f - out[i] * out[i]) * dout[i];
}

/* ---------------------------------------------------------------------------- attention */

/* Softmax of each row of s[rows, n] in place. */
static void softmax_rows(float *s, int rows, int n) {
    for (int i = 0; i < rows; i++) {
        float *r = s + (int64_t)i * n;
        float mx = r[0];
        for (int j = 1; j < n; j++)
            mx = r[j] > mx ? r[j] : mx;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; j++) {
            r[j] = exp_poly(r[j] - mx);
            sum += r[j];
        }
        float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < n; j++)
            r[j] *= inv;
    }
}

/* s[nq, nk] += head h's score bias (petl_att_bias): row i reads the bias from distance -i on. */
static void add_score_bias(float *s, int nq, int nk, const petl_att_bias *rb, int h) {
    const float *bh = rb->bias + (int64_t)h * rb->stride + rb->center;
    for (int i = 0; i < nq; i++) {
        float *r = s + (int64_t)i * nk;
        const float *bi = bh - i;
#pragma omp simd
        for (int j = 0; j < nk; j++)
            r[j] += bi[j];
    }
}

/* The bias gradient: acc[center + j - i] += ds[i, j] (acc: head h's row of a thread's
 * accumulator). */
static void acc_score_bias(float *acc, const float *ds, int nq, int nk, int center) {
    for (int i = 0; i < nq; i++) {
        const float *r = ds + (int64_t)i * nk;
        float *ai = acc + center - i;
#pragma omp simd
        for (int j = 0; j < nk; j++)
            ai[j] += r[j];
    }
}

/* One attention product C = alpha op(A) op(B) + beta C (row-major, as cblas_sgemm), on the
 * calling thread: fp32 sgemm, or with bf16 petl_gemm_bf16 (operands rounded, fp32 sums). */
static void att_gemm(bool bf16, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                     float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                     float *C, int ldc) {
    if (!bf16) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* A is [M, K] (stored [K, M] when transposed), B is [K, N] (stored [N, K] when transposed) */
    const bool at = ta == CblasTrans, bt = tb == CblasTrans;
    petl_gemm_bf16(M, N, K, alpha, A, at ? 1 : lda, at ? lda : 1, B, bt ? 1 : ldb, bt ? ldb : 1,
                   beta, C, ldc, NULL);
}

void petl_attention_forward(float *out, float *scratch, int64_t scratch_stride, int nthreads,
                            const float *qkv, const int64_t *off, const int *qlen, const int *klen,
                            int B, int H, int num_heads, bool bf16, const petl_att_bias *rb) {
    const int hd = H / num_heads, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)hd);
    /* One task per (batch row, head); the GEMMs inside run single-threaded (OpenBLAS does not
     * spawn threads inside an OpenMP parallel region), the parallelism is across tasks. */
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
    for (int task = 0; task < B * num_heads; task++) {
        int b = task / num_heads, h = task % num_heads;
        float *s = scratch + (int64_t)omp_get_thread_num() * scratch_stride; /* [qlen, klen] */
        const float *q = qkv + off[b] * ld + h * hd;                         /* [qlen, hd] ld */
        const float *k = q + H;                                              /* [klen, hd] ld */
        const float *v = q + 2 * H;                                          /* [klen, hd] ld */
        float *o = out + off[b] * H + h * hd;                                /* [qlen, hd] H */
        int nq = qlen[b], nk = klen[b];
        /* Scores of real keys only: padded keys are left out, i.e. get weight exactly 0. */
        att_gemm(bf16, CblasNoTrans, CblasTrans, nq, nk, hd, scale, q, ld, k, ld, 0.0f, s, nk);
        if (rb) add_score_bias(s, nq, nk, rb, h);
        softmax_rows(s, nq, nk);
        att_gemm(bf16, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, s, nk, v, ld, 0.0f, o, H);
    }
}

void petl_attention_naive(float *out, const float *qkv, const int64_t *off, const int *qlen,
                          const int *klen, int B, int H, int num_heads, const petl_att_bias *rb) {
    const int hd = H / num_heads, ld = 3 * H;
    const double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < num_heads; h++)
            for (int i = 0; i < qlen[b]; i++) {
                const float *q = qkv + (off[b] + i) * ld + h * hd;
                /* Scores over all qlen[b] positions of the row, the padded ones masked with
                 * -inf; recomputed in each of the three passes (max, sum, weighted values)
                 * rather than stored, to need no buffer. Head sizes up to 1024. */
                double mx = -INFINITY, sum = 0.0;
                for (int pass = 0; pass < 3; pass++) {
                    double acc[1024] = {0};
                    for (int j = 0; j < qlen[b]; j++) {
                        const float *k = qkv + (off[b] + j) * ld + H + h * hd;
                        double d = 0.0;
                        for (int c = 0; c < hd; c++)
                            d += (double)q[c] * k[c];
                        if (rb)
                            d = d * scale + rb->bias[h * rb->stride + rb->center + j - i];
                        else
                            d *= scale;
                        double sc = j < klen[b] ? d : -INFINITY;
                        if (pass == 0 && sc > mx) mx = sc;
                        if (pass == 1) sum += exp(sc - mx);
                        if (pass == 2) {
                            const float *v = k + H;
                            for (int c = 0; c < hd && c < 1024; c++)
                                acc[c] += exp(sc - mx) / sum * v[c];
                        }
                    }
                    if (pass == 2)
                        for (int c = 0; c < hd && c < 1024; c++)
                            out[(off[b] + i) * H + h * hd + c] = (float)acc[c];
                }
            }
}

void petl_attention_forward_train(float *out, float *probs, float *scratch, int64_t scratch_stride,
                                  int nthreads, float p, const uint64_t *keys, const float *qkv,
                                  const int64_t *off, const int64_t *poff, const int *qlen,
                                  const int *klen, int B, int H, int num_heads, bool bf16,
                                  const petl_att_bias *rb) {
    const int hd = H / num_heads, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool drop = keys && p > 0.0f;
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
    for (int task = 0; task < B * num_heads; task++) {
        int b = task / num_heads, h = task % num_heads;
        int nq = qlen[b], nk = klen[b];
        const int64_t nn = (int64_t)nq * nk;
        float *s = probs + poff[b] + h * nn;         /* [nq, nk] */
        const float *q = qkv + off[b] * ld + h * hd; /* [nq, hd] ld */
        const float *k = q + H, *v = q + 2 * H;      /* [nk, hd] ld */
        float *o = out + off[b] * H + h * hd;        /* [nq, hd] H */
        att_gemm(bf16, CblasNoTrans, CblasTrans, nq, nk, hd, scale, q, ld, k, ld, 0.0f, s, nk);
        if (rb) add_score_bias(s, nq, nk, rb, h);
        softmax_rows(s, nq, nk);
        const float *pv = s;
        if (drop) {
            /* dropout on the probabilities; the undropped ones stay saved for the backward */
            float *pd = scratch + (int64_t)omp_get_thread_num() * scratch_stride;
            petl_dropout_apply(pd, s, (size_t)nn, p, keys[b], (uint64_t)(h * nn));
            pv = pd;
        }
        att_gemm(bf16, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, pv, nk, v, ld, 0.0f, o, H);
    }
}

void petl_attention_backward(float *dqkv, float *scratch, int64_t scratch_stride, int nthreads,
                             const float *dout, const float *qkv, const float *probs, float p,
                             const uint64_t *keys, const int64_t *off, const int64_t *poff,
                             const int *qlen, const int *klen, int B, int H, int num_heads,
                             bool bf16, const petl_att_bias *rb) {
    const int hd = H / num_heads, ld = 3 * H;
    const float scale = 1.0f / sqrtf((float)hd);
    const bool drop = keys && p > 0.0f;
    /* Each (batch row, head) task writes its own columns of dqkv: no races. */
#pragma omp parallel for schedule(dynamic) num_threads(nthreads)
    for (int task = 0; task < B * num_heads; task++) {
        int b = task / num_heads, h = task % num_heads;
        int nq = qlen[b], nk = klen[b];
        const int64_t nn = (int64_t)nq * nk;
        const float *P = probs + poff[b] + h * nn; /* [nq, nk] softmax before dropout */
        float *dP = scratch + (int64_t)omp_get_thread_num() * scratch_stride; /* [nq, nk] */
        float *Pd = dP + nn;                                                  /* [nq, nk] */
        const float *q = qkv + off[b] * ld + h * hd, *k = q + H, *v = q + 2 * H;
        float *dq = dqkv + off[b] * ld + h * hd, *dk = dq + H, *dv = dq + 2 * H;
        const float *dO = dout + off[b] * H + h * hd; /* [nq, hd] H */
        const float *pv = P;
        if (drop) { /* the forward's mask, regenerated */
            petl_dropout_apply(Pd, P, (size_t)nn, p, keys[b], (uint64_t)(h * nn));
            pv = Pd;
        }
        /* O = Pd V:  d V += Pd^T dO */
        att_gemm(bf16, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, pv, nk, dO, H, 1.0f, dv, ld);
        /* d Pd = dO V^T */
        att_gemm(bf16, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dO, H, v, ld, 0.0f, dP, nk);
        /* softmax:  d S = P (d P - sum_j d P_j P_j), row by row (S: the scaled scores) */
        for (int i = 0; i < nq; i++) {
            float *r = dP + (int64_t)i * nk;
            const float *pr = P + (int64_t)i * nk, *pd = pv + (int64_t)i * nk;
            float dot = 0.0f;
            if (drop) {
                /* Pd = P * mask:  d P = d Pd * mask, so P_j d P_j = Pd_j d Pd_j and
                 * d S_j = Pd_j d Pd_j - P_j sum_k d Pd_k Pd_k: no third pass of the mask */
                for (int j = 0; j < nk; j++)
                    dot += r[j] * pd[j];
                for (int j = 0; j < nk; j++)
                    r[j] = pd[j] * r[j] - pr[j] * dot;
                continue;
            }
            for (int j = 0; j < nk; j++)
                dot += r[j] * pr[j];
            for (int j = 0; j < nk; j++)
                r[j] = pr[j] * (r[j] - dot);
        }
        /* S = scale Q K^T + bias:  d bias += dS,  d Q += scale dS K,  d K += scale dS^T Q */
        if (rb && rb->dbias)
            acc_score_bias(rb->dbias + ((int64_t)omp_get_thread_num() * num_heads + h) * rb->stride,
                           dP, nq, nk, rb->center);
        att_gemm(bf16, CblasNoTrans, CblasNoTrans, nq, hd, nk, scale, dP, nk, k, ld, 1.0f, dq, ld);
        att_gemm(bf16, CblasTrans, CblasNoTrans, nk, hd, nq, scale, dP, nk, q, ld, 1.0f, dk, ld);
    }
}

void petl_attention_backward_naive(float *dqkv, const float *dout, const float *qkv, float p,
                                   const uint64_t *keys, const int64_t *off, const int *qlen,
                                   const int *klen, int B, int H, int num_heads,
                                   const petl_att_bias *rb) {
    const int hd = H / num_heads, ld = 3 * H;
    const double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < num_heads; h++) {
            const int nq = qlen[b], nk = klen[b];
            const int64_t at = (int64_t)h * nq * nk; /* the block's first dropout index */
            for (int i = 0; i < nq; i++) {
                const float *q = qkv + (off[b] + i) * ld + h * hd;
                const float *dO = dout + (off[b] + i) * H + h * hd;
                double P[512], dP[512]; /* tests: at most 512 keys */
                double mx = -INFINITY, sum = 0.0, dot = 0.0;
                for (int j = 0; j < nk && j < 512; j++) {
                    const float *k = qkv + (off[b] + j) * ld + H + h * hd;
                    double d = 0.0;
                    for (int c = 0; c < hd; c++)
                        d += (double)q[c] * k[c];
                    P[j] = d * scale;
                    if (rb) P[j] += rb->bias[h * rb->stride + rb->center + j - i];
                    mx = P[j] > mx ? P[j] : mx;
                }
                for (int j = 0; j < nk && j < 512; j++)
                    sum += (P[j] = exp(P[j] - mx));
                for (int j = 0; j < nk && j < 512; j++) {
                    P[j] /= sum;
                    float m = 1.0f; /* the dropout multiplier: 0 or 1 / (1 - p) */
                    if (keys)
                        petl_dropout_apply_naive(&m, &m, 1, p, keys[b],
                                                 (uint64_t)(at + (int64_t)i * nk + j));
                    const float *v = qkv + (off[b] + j) * ld + 2 * H + h * hd;
                    float *dv = dqkv + (off[b] + j) * ld + 2 * H + h * hd;
                    double g = 0.0;
                    for (int c = 0; c < hd; c++) {
                        dv[c] += (float)(P[j] * m * dO[c]);
                        g += (double)dO[c] * v[c];
                    }
                    dP[j] = g * m;
                    dot += dP[j] * P[j];
                }
                float *dq = dqkv + (off[b] + i) * ld + h * hd;
                for (int j = 0; j < nk && j < 512; j++) {
                    if (rb && rb->dbias)
                        rb->dbias[h * rb->stride + rb->center + j - i] +=
                            (float)(P[j] * (dP[j] - dot));
                    const double ds = P[j] * (dP[j] - dot) * scale;
                    const float *k = qkv + (off[b] + j) * ld + H + h * hd;
                    float *dk = dqkv + (off[b] + j) * ld + H + h * hd;
                    for (int c = 0; c < hd; c++) {
                        dq[c] += (float)(ds * k[c]);
                        dk[c] += (float)(ds * q[c]);
                    }
                }
            }
        }
}
