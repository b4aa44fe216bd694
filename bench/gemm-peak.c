/* The GEMM ceiling of this machine for bench/train-bench: single-precision GEMM GFLOP/s of the
 * BLAS petl links (OpenBLAS), at the shapes of one BERT layer with `rows` token rows (default
 * 4096): QKV [rows, H] x [H, 3H]^T, attention output H x H, FFN in H x I and FFN out I x H,
 * with the weight transposed as petl calls it (row-major, B^T). Each shape runs `reps` times
 * after one warm-up; the best time per shape counts. Prints one JSON object:
 *   {"blas": "...", "threads": N, "shapes": [{"m","n","k","gflop_per_s"}...], "gflop_per_s": X}
 * where X is the FLOP-weighted mean over the shapes (total FLOPs / total best time).
 *
 *   gemm-peak [--hidden 768] [--intermediate 3072] [--rows 4096] [--reps 5] [--threads N] */
#include "petl.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int H = 768, inter = 3072, rows = 4096, reps = 5, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--hidden"))
            H = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--intermediate"))
            inter = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rows"))
            rows = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "gemm-peak: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (threads > 0) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
    }
    int shapes[4][2] = {{3 * H, H}, {H, H}, {inter, H}, {H, inter}}; /* {out N, in K} */
    size_t maxk = (size_t)(inter > H ? inter : H), maxn = (size_t)(inter > 3 * H ? inter : 3 * H);
    float *a = malloc((size_t)rows * maxk * sizeof(float));
    float *w = malloc(maxn * maxk * sizeof(float));
    float *c = malloc((size_t)rows * maxn * sizeof(float));
    for (size_t i = 0; i < (size_t)rows * maxk; i++)
        a[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < maxn * maxk; i++)
        w[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    double total_flop = 0, total_t = 0;
    printf("{\"blas\": \"%s\", \"threads\": %d, \"rows\": %d, \"shapes\": [", openblas_get_config(),
           openblas_get_num_threads(), rows);
    for (int s = 0; s < 4; s++) {
        int n = shapes[s][0], k = shapes[s][1];
        double best = 1e30;
        for (int r = 0; r <= reps; r++) {
            double t0 = petl_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, k, 1.0f, a, k, w, k, 0.0f,
                        c, n);
            double dt = petl_now() - t0;
            if (r > 0 && dt < best) best = dt;
        }
        double flop = 2.0 * rows * n * k;
        total_flop += flop;
        total_t += best;
        printf("%s{\"m\": %d, \"n\": %d, \"k\": %d, \"gflop_per_s\": %.1f}", s ? ", " : "", rows, n,
               k, flop / best * 1e-9);
    }
    printf("], \"gflop_per_s\": %.1f}\n", total_flop / total_t * 1e-9);
    free(a);
    free(w);
    free(c);
    return 0;
}
