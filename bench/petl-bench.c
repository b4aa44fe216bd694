/* petl's side of bench/train-bench: training steps, batch inference and batch-1 latency of a
 * task model on a given base, timed inside one process, printed as one JSON object.
 *
 *   petl-bench --model DIR --mode train|infer|latency [--tune adapter|full] [--batches FILE]
 *              [--batch 32 --seq 128] [--steps N] [--warmup N] [--threads N]
 *
 * Batches: FILE has one batch per line, the real token count of each row separated by spaces
 * (bench/train-bench writes it from GLUE training rows, and the reference side reads the same
 * file); without --batches every batch is --batch rows of --seq tokens. Token ids are random
 * (seeded) and vary per batch; [CLS] first and [SEP] last as the tokenizer would put them.
 * Batches are used in file order, cycling.
 *
 *   train:   zero grads, forward + backward (dropout on), clip, AdamW step: what one optimiser
 *            step of `petl train` does, minus data loading. tokens/s over the timed steps.
 *   infer:   petl_task_predict (adapters + head, no dropout). sentences/s and tokens/s.
 *   latency: petl_task_predict of one row at a time; p50 / p99 over the timed rows in ms.
 *
 * Peak memory: getrusage's ru_maxrss (the kernel's high-water mark of the resident set, model
 * load included). The counted FLOPs are the model's matrix products (linear layers and the two
 * attention products), forward and backward as the tune mode needs them; see flops_per_row(). */
#include "optimiser.h"
#include "petl.h"
#include "taskmodel.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

typedef struct {
    int n;    /* rows */
    int *len; /* [n] real tokens per row */
    int seq;  /* longest row: the padded width */
} bench_batch;

static void die(const char *msg, const char *detail) {
    fprintf(stderr, "petl-bench: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

/* Reads FILE (one batch per line) or makes `count` fixed batches. */
static bench_batch *read_batches(const char *path, int batch, int seq, int count, int *n_out) {
    bench_batch *bs = NULL;
    int n = 0, cap = 0;
    if (!path) {
        bs = calloc((size_t)count, sizeof *bs);
        for (int i = 0; i < count; i++) {
            bs[i].n = batch;
            bs[i].seq = seq;
            bs[i].len = malloc((size_t)batch * sizeof(int));
            for (int r = 0; r < batch; r++)
                bs[i].len[r] = seq;
        }
        *n_out = count;
        return bs;
    }
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open", path);
    char line[1 << 16];
    while (fgets(line, sizeof line, f)) {
        int lens[4096], k = 0;
        char *p = line, *end;
        for (long v = strtol(p, &end, 10); end != p && k < 4096; v = strtol(p, &end, 10)) {
            lens[k++] = (int)v;
            p = end;
        }
        if (k == 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            bs = realloc(bs, (size_t)cap * sizeof *bs);
        }
        bs[n].n = k;
        bs[n].len = malloc((size_t)k * sizeof(int));
        bs[n].seq = 0;
        for (int r = 0; r < k; r++) {
            if (lens[r] < 2) die("row shorter than 2 tokens in", path);
            bs[n].len[r] = lens[r];
            if (lens[r] > bs[n].seq) bs[n].seq = lens[r];
        }
        n++;
    }
    fclose(f);
    if (n == 0) die("no batches in", path);
    *n_out = n;
    return bs;
}

/* Multiply-adds x 2 of one row of `len` tokens: QKV, attention output, FFN in and out per
 * layer (2 H (4H + 2I) per token) and the two attention products (4 len H per token, the
 * scores and the context over the row's own keys). The pooler and head are per row (2 H H +
 * 2 H NL). Backward: input gradients cost what the forward did (x1) wherever anything below
 * is trained; weight gradients of the base's matrices (x1 again) only in full tuning. Adapter
 * GEMMs are counted too (4 H m per token per adapter, x3 in training: forward, input and
 * weight gradients). */
static double flops_per_row(const petl_config *c, int len, bool train, bool full, int m) {
    double H = c->hidden_size, I = c->intermediate_size, L = c->num_layers, T = len;
    double base = L * T * (2 * H * (4 * H + 2 * I) + 4 * T * H) + 2 * H * H + 2 * H * 2;
    double adapters = full ? 0 : L * T * 2 * 4 * H * m;
    if (!train) return base + adapters;
    return base * (full ? 3 : 2) + adapters * 3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *mode = "train", *tune = "adapter", *batches_path = NULL;
    const char *precision = "fp32";
    int batch = 32, seq = 128, steps = 20, warmup = 3, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: petl-bench --model DIR --mode train|infer|latency [--tune adapter|full]\n"
                 "       [--batches FILE | --batch N --seq N] [--steps N] [--warmup N] "
                 "[--threads N]\n"
                 "       [--precision fp32|bf16]");
            return 0;
        }
        if (!v) die("missing value after", a);
        if (!strcmp(a, "--model"))
            model_dir = v;
        else if (!strcmp(a, "--mode"))
            mode = v;
        else if (!strcmp(a, "--tune"))
            tune = v;
        else if (!strcmp(a, "--precision"))
            precision = v;
        else if (!strcmp(a, "--batches"))
            batches_path = v;
        else if (!strcmp(a, "--batch"))
            batch = atoi(v);
        else if (!strcmp(a, "--seq"))
            seq = atoi(v);
        else if (!strcmp(a, "--steps"))
            steps = atoi(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atoi(v);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else
            die("unknown option", a);
        i++;
    }
    if (!model_dir) die("--model is required", NULL);
    bool train = !strcmp(mode, "train"), latency = !strcmp(mode, "latency");
    if (!train && !latency && strcmp(mode, "infer")) die("unknown --mode", mode);
    bool full = !strcmp(tune, "full");
    if (!full && strcmp(tune, "adapter")) die("unknown --tune", tune);
    if (threads > 0) omp_set_num_threads(threads);

    petl_error err = {0};
    double t_load = petl_now();
    petl_model *model;
    if (petl_model_load(model_dir, &model, &err) != PETL_OK) die(err.msg, NULL);
    petl_precision prec;
    if (petl_precision_parse(precision, &prec, &err) != PETL_OK ||
        petl_model_set_precision(model, prec, train, &err) != PETL_OK)
        die(err.msg, NULL);
    const petl_config *cfg = petl_model_config(model);
    petl_tune_config tc;
    petl_tune_config_default(&tc, cfg);
    tc.tune = full ? PETL_TUNE_FULL : PETL_TUNE_ADAPTER;
    tc.num_labels = 2;
    petl_task_model *tm;
    if (petl_task_model_new(model, &tc, 42, &tm, &err) != PETL_OK) die(err.msg, NULL);
    t_load = petl_now() - t_load;

    int nb;
    bench_batch *bs = read_batches(batches_path, batch, seq, 1, &nb);
    int max_b = 0, max_s = 0;
    for (int i = 0; i < nb; i++) {
        if (bs[i].n > max_b) max_b = bs[i].n;
        if (bs[i].seq > max_s) max_s = bs[i].seq;
    }
    if (latency) max_b = 1;
    petl_ctx *ctx;
    petl_status s = train ? petl_train_ctx_new(tm, max_b, max_s, &ctx, &err)
                          : petl_predict_ctx_new(tm, max_b, max_s, &ctx, &err);
    if (s != PETL_OK) die(err.msg, NULL);

    petl_adamw *opt = NULL;
    if (train) {
        size_t np = petl_task_model_num_params(tm);
        petl_opt_group *g = calloc(np, sizeof *g);
        for (size_t i = 0; i < np; i++) {
            const petl_param *p = petl_task_model_param(tm, i);
            g[i] = (petl_opt_group){
                .param = p->data, .grad = p->grad, .n = (size_t)p->numel, .decay = p->decay};
        }
        petl_adamw_opts ao;
        petl_adamw_opts_default(&ao);
        ao.lr = full ? 3e-5 : 3e-4;
        ao.total_steps = warmup + steps + 1;
        if (petl_adamw_new(g, np, &ao, &opt, &err) != PETL_OK) die(err.msg, NULL);
        free(g);
    }

    int32_t *ids = malloc((size_t)max_b * (size_t)max_s * sizeof(int32_t));
    int32_t *types = calloc((size_t)max_b * (size_t)max_s, sizeof(int32_t));
    int32_t *labels = malloc((size_t)max_b * sizeof(int32_t));
    int *lens = malloc((size_t)max_b * sizeof(int));
    float *logits = malloc((size_t)max_b * 2 * sizeof(float));
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    int vocab = cfg->vocab_size;

    /* Runs work item k (a batch, or in latency mode row k of the batches in order); returns
     * real tokens, rows and counted FLOPs through the pointers. */
    int lat_batch = 0, lat_row = 0;
    double tokens = 0, rows = 0, flops = 0;
    int total = warmup + steps;
    double *lat_ms = malloc((size_t)total * sizeof(double));
    double t0 = 0;
    for (int k = 0; k < total; k++) {
        if (k == warmup) {
            tokens = rows = flops = 0;
            t0 = petl_now();
        }
        const bench_batch *bb;
        int B, S;
        const int *src_len;
        if (latency) {
            bb = &bs[lat_batch];
            B = 1;
            S = bb->len[lat_row];
            src_len = &bb->len[lat_row];
            if (++lat_row == bb->n) {
                lat_row = 0;
                lat_batch = (lat_batch + 1) % nb;
            }
        } else {
            bb = &bs[k % nb];
            B = bb->n;
            S = bb->seq;
            src_len = bb->len;
        }
        for (int r = 0; r < B; r++) {
            lens[r] = src_len[r];
            labels[r] = r & 1;
            for (int t = 0; t < S; t++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                int32_t id = (int32_t)(1000 + rng % (uint64_t)(vocab - 1000));
                if (t == 0)
                    id = 101;
                else if (t == lens[r] - 1)
                    id = 102;
                else if (t >= lens[r])
                    id = 0;
                ids[(size_t)r * (size_t)S + (size_t)t] = id;
            }
            tokens += lens[r];
            flops += flops_per_row(cfg, lens[r], train, full, tc.adapter_size);
        }
        rows += B;
        petl_batch b = {.batch = B, .seq = S, .ids = ids, .type_ids = types, .lengths = lens};
        double ts = petl_now();
        if (train) {
            float loss;
            petl_task_model_zero_grad(tm);
            if (petl_train_step(ctx, &b, &(petl_targets){.labels = labels, .targets = NULL},
                                (uint64_t)k + 1, &loss, &err) != PETL_OK)
                die(err.msg, NULL);
            petl_adamw_clip(opt);
            petl_adamw_step(opt);
        } else if (petl_task_predict(ctx, &b, &(petl_predictions){.logits = logits}, &err) !=
                   PETL_OK) {
            die(err.msg, NULL);
        }
        lat_ms[k] = 1e3 * (petl_now() - ts);
    }
    double dt = petl_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    qsort(lat_ms + warmup, (size_t)steps, sizeof(double), cmp_double);
    double p50 = lat_ms[warmup + (steps - 1) / 2];
    double p99 = lat_ms[warmup + (int)ceil(0.99 * steps) - 1];

    printf("{\"stack\": \"petl\", \"mode\": \"%s\", \"tune\": \"%s\", \"precision\": \"%s\", "
           "\"layers\": %d, "
           "\"hidden\": %d, \"threads\": %d, \"steps\": %d, \"rows\": %.0f, \"tokens\": %.0f, "
           "\"seconds\": %.4f, \"tokens_per_s\": %.2f, \"rows_per_s\": %.3f, "
           "\"gflop_per_s\": %.2f, \"latency_p50_ms\": %.3f, \"latency_p99_ms\": %.3f, "
           "\"load_s\": %.3f, \"trained_params\": %lld, \"peak_rss_mb\": %.1f}\n",
           mode, tune, precision, cfg->num_layers, cfg->hidden_size, omp_get_max_threads(), steps,
           rows, tokens, dt, tokens / dt, rows / dt, flops / dt * 1e-9, p50, p99, t_load,
           (long long)petl_task_model_trainable_count(tm), (double)ru.ru_maxrss / 1024.0);

    for (int i = 0; i < nb; i++)
        free(bs[i].len);
    free(bs);
    free(ids);
    free(types);
    free(labels);
    free(lens);
    free(logits);
    free(lat_ms);
    petl_adamw_free(opt);
    petl_ctx_free(ctx);
    petl_task_model_free(tm);
    petl_model_free(model);
    return 0;
}
