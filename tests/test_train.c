/* The task model's training forward / backward against PyTorch autograd (golden files of
 * scripts/reference/gen-grad-golden.py: transformers' BertModel with a reference Houlsby adapter
 * module, dropout off), on the tiny random BERT (every trained gradient, every --tune mode) and
 * on the real default checkpoint (loss, per-tensor gradient norms and sampled entries); 20
 * AdamW steps of loss; plus: nothing computed below the lowest trained parameter, predict ==
 * training forward without dropout, dropout deterministic whatever the thread count.
 * The same for the span head (scripts/reference/gen-squad-grad-golden.py: transformers'
 * BertForQuestionAnswering with the same adapters; padded positions masked out of the loss),
 * plus its start / end logits at every real token against torch's.
 *
 * Tolerances, per golden file (the tol values in main): a small multiple (3.5-8x, said next to
 * each) of the largest error measured on that file in Release and in the sanitizer build (-O1),
 * on 1 and 2 threads. Loss: relative. Gradients: max |ours - torch| / max(1e-2, max |g_torch|)
 * per tensor. Norms: relative (of max(norm, 1e-2)). Span logits: max |ours - torch| / max(1,
 * max |logit|). AdamW losses: relative, the worst over the steps. The two float32 computations
 * differ only by summation order (GEMM blocking, LayerNorm in double here) and our exp / erf
 * polynomials, so the errors are a few ulps of float; a wrong term of the chain rule is off by
 * O(max |g|), and even a constant 1e-5 relative error in GELU (forward) fails here: it moves
 * MiniLM's AdamW losses by 1.7e-5, its gradients by 3.7e-5 of max |g| and the span head's logits
 * by 1.3e-4. */
#include "check.h"
#include "optimiser.h"
#include "petl.h"
#include "taskmodel.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ----------------------------------------------------------------------- tiny model dir */

/* model.st is committed under that name (nothing in the repository looks like weights): link
 * it as model.safetensors into a temporary model folder. */
static char tiny_dir[64];

static const char *tiny_model_dir(const char *sub) {
    snprintf(tiny_dir, sizeof tiny_dir, "/tmp/petl-train-XXXXXX");
    CHECK(mkdtemp(tiny_dir) != NULL);
    const char *names[][2] = {{"config.json", "config.json"}, {"model.st", "model.safetensors"}};
    for (int i = 0; i < 2; i++) {
        char src[4096], dst[4096];
        snprintf(src, sizeof src, "%s/golden/%s/%s", TEST_SRC_DIR, sub, names[i][0]);
        snprintf(dst, sizeof dst, "%s/%s", tiny_dir, names[i][1]);
        CHECK(symlink(src, dst) == 0);
    }
    return tiny_dir;
}

static void tiny_model_dir_remove(void) {
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", tiny_dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", tiny_dir);
    unlink(p);
    rmdir(tiny_dir);
}

/* ------------------------------------------------------------------------ golden reader */

typedef struct {
    FILE *f;
    char *line;
    size_t cap;
    const char *path;
} reader;

/* Next line, without the newline; NULL at the end. Comments (#) are skipped. */
static char *next_line(reader *r) {
    for (;;) {
        ssize_t n = getline(&r->line, &r->cap, r->f);
        if (n < 0) return NULL;
        if (n > 0 && r->line[n - 1] == '\n') r->line[n - 1] = 0;
        if (r->line[0] != '#' && r->line[0]) return r->line;
    }
}

/* Splits off the first space-separated word of *s. */
static char *word(char **s) {
    char *w = *s;
    while (*w == ' ')
        w++;
    char *e = w;
    while (*e && *e != ' ')
        e++;
    if (*e) *e++ = 0;
    *s = e;
    return w;
}

static long long ll(char **s) {
    return strtoll(word(s), NULL, 10);
}
static double dbl(char **s) {
    return strtod(word(s), NULL);
}

typedef struct {
    char name[64], tune[16], act[16], place[16];
    int top_k, m, nl;
    int B, seq;
    int32_t *ids, *types, *labels;
    int *lengths;
    float *targets;
    bool span;              /* a span-head case: starts / ends instead of labels / targets */
    int32_t *starts, *ends; /* [B] */
} golden_case;

static void case_free(golden_case *c) {
    free(c->ids), free(c->types), free(c->labels), free(c->lengths), free(c->targets);
    free(c->starts), free(c->ends);
    memset(c, 0, sizeof *c);
}

static petl_tune parse_tune(const char *s) {
    if (!strcmp(s, "adapter")) return PETL_TUNE_ADAPTER;
    if (!strcmp(s, "full")) return PETL_TUNE_FULL;
    if (!strcmp(s, "top")) return PETL_TUNE_TOP;
    if (!strcmp(s, "layernorm")) return PETL_TUNE_LAYERNORM;
    CHECKF(!strcmp(s, "head"), "unknown tune %s", s);
    return PETL_TUNE_HEAD;
}

/* The golden's hash_values(): bit-exact initial values without storing them. */
static void hash_values(float *out, int64_t n, long long salt, double scale) {
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = ((uint64_t)i * 2654435761ULL + (uint64_t)salt * 40503ULL) % 4294967296ULL;
        out[i] = (float)(((double)h / 4294967296.0 - 0.5) * scale);
    }
}

/* ------------------------------------------------------------------------------ one case */

/* Bounds against torch for one golden file (see the comment at the top) and the largest errors
 * measured on it, printed after the file so the bounds can be kept near them. */
typedef struct {
    double loss;   /* |loss - torch| / |torch| */
    double grad;   /* max |g - g_torch| / max(1e-2, max |g_torch|), per tensor (or sampled) */
    double norm;   /* |norm - torch| / max(norm_torch, 1e-2), per tensor */
    double logits; /* max |logit - torch| / max(1, max |logit_torch|) */
    double steps;  /* max over AdamW steps of |loss - torch| / |torch| */
} tol;

static tol seen; /* the largest of each over the current file */

typedef struct {
    double worst_ratio; /* max over tensors of max|diff| / max(1e-2, max|g|) */
    char worst_name[160];
    int tensors;
} grad_stats;

static void compare_grad(grad_stats *st, const petl_param *p, const float *ref, int64_t n,
                         const tol *t) {
    double gmax = 0.0, d = 0.0;
    for (int64_t i = 0; i < n; i++) {
        gmax = fmax(gmax, fabs(ref[i]));
        double e = fabs((double)p->grad[i] - ref[i]);
        if (!(e <= d)) d = e;
    }
    double ratio = d / fmax(1e-2, gmax);
    seen.grad = fmax(seen.grad, ratio);
    CHECKF(ratio <= t->grad, "%s: gradient off by %.3g of max |g| %.3g (bound %.3g)", p->name,
           ratio, gmax, t->grad);
    if (ratio >= st->worst_ratio) {
        st->worst_ratio = ratio;
        snprintf(st->worst_name, sizeof st->worst_name, "%s", p->name);
    }
    st->tensors++;
}

/* One training step of the case's head. */
static petl_status train_step(petl_ctx *ctx, const petl_batch *b, const golden_case *c,
                              uint64_t seed, float *loss, petl_error *err) {
    if (c->span)
        return petl_train_step(ctx, b, &(petl_targets){.start = c->starts, .end = c->ends}, seed,
                               loss, err);
    return petl_train_step(ctx, b, &(petl_targets){.labels = c->labels, .targets = c->targets},
                           seed, loss, err);
}

/* Span head: predict's padded start / end logits equal the training forward's packed ones (on
 * the training context and on an inference-only one), -inf at the padding; the classification
 * entry points refuse a span model and the span ones a training call on a predict context. */
static void check_predict_span(petl_ctx *ctx, const petl_task_model *tm, const golden_case *c,
                               const petl_batch *b) {
    petl_error err = {0};
    int64_t n = 0;
    for (int r = 0; r < c->B; r++)
        n += c->lengths[r];
    float *packed = malloc((size_t)n * 2 * sizeof(float));
    float *st = malloc((size_t)c->B * c->seq * sizeof(float));
    float *en = malloc((size_t)c->B * c->seq * sizeof(float));
    CHECK(packed && st && en);
    memcpy(packed, petl_task_ctx_logits(ctx), (size_t)n * 2 * sizeof(float));
    petl_ctx *pc = NULL;
    CHECK_OK(petl_predict_ctx_new(tm, c->B, c->seq, &pc, &err), &err);
    for (int which = 0; which < 2; which++) {
        CHECK_OK(petl_task_predict(which ? pc : ctx, b, &(petl_predictions){.start = st, .end = en},
                                   &err),
                 &err);
        int64_t k = 0;
        for (int r = 0; r < c->B; r++)
            for (int p = 0; p < c->seq; p++) {
                const int64_t at = (int64_t)r * c->seq + p;
                if (p >= c->lengths[r]) {
                    CHECKF(isinf(st[at]) && st[at] < 0 && isinf(en[at]) && en[at] < 0,
                           "%s: padding logit is not -inf", c->name);
                    continue;
                }
                CHECKF(fabsf(st[at] - packed[2 * k]) <= 1e-6f &&
                           fabsf(en[at] - packed[2 * k + 1]) <= 1e-6f,
                       "%s: predict differs from the training forward (%s context)", c->name,
                       which ? "predict" : "training");
                k++;
            }
    }
    float loss, lg[8];
    CHECK(petl_train_step(pc, b, &(petl_targets){.start = c->starts, .end = c->ends}, 0, &loss,
                          &err) == PETL_ERR_ARG);
    CHECK(petl_train_step(ctx, b, &(petl_targets){.labels = c->starts, .targets = NULL}, 0, &loss,
                          &err) == PETL_ERR_ARG);
    CHECK(petl_task_predict(ctx, b, &(petl_predictions){.logits = lg}, &err) == PETL_ERR_ARG);
    /* a target outside its row is refused, naming the row */
    int32_t bad[64];
    CHECK(c->B <= 64);
    memcpy(bad, c->ends, (size_t)c->B * sizeof *bad);
    bad[c->B - 1] = c->lengths[c->B - 1];
    CHECK(petl_train_step(ctx, b, &(petl_targets){.start = c->starts, .end = bad}, 0, &loss,
                          &err) == PETL_ERR_ARG);
    CHECKF(strstr(err.msg, "batch row") != NULL, "%s", err.msg);
    petl_ctx_free(pc);
    free(packed), free(st), free(en);
}

/* After a step without dropout: the backward went exactly down to the lowest trained
 * parameter, and predict gives the training forward's logits. */
static void check_lowest_and_predict(petl_ctx *ctx, const petl_task_model *tm,
                                     const petl_tune_config *tc, const petl_config *cfg,
                                     const golden_case *c, const petl_batch *b) {
    petl_error err = {0};
    /* Nothing below the lowest trained parameter. */
    const int L = cfg->num_layers;
    int lowest = petl_ctx_lowest_computed(ctx);
    int want = tc->tune == PETL_TUNE_HEAD ? L : tc->tune == PETL_TUNE_TOP ? L - tc->top_k : -1;
    CHECKF(lowest == want, "%s: backward went down to %d, expected %d", c->name, lowest, want);
    if (c->span) {
        check_predict_span(ctx, tm, c, b);
        return;
    }
    /* predict == the training forward without dropout */
    const int nl = c->nl;
    float *train_logits = malloc((size_t)c->B * nl * sizeof(float));
    float *pred = malloc((size_t)c->B * nl * sizeof(float));
    CHECK(train_logits && pred);
    memcpy(train_logits, petl_task_ctx_logits(ctx), (size_t)c->B * nl * sizeof(float));
    CHECK_OK(petl_task_predict(ctx, b, &(petl_predictions){.logits = pred}, &err), &err);
    for (int i = 0; i < c->B * nl; i++)
        CHECKF(fabsf(pred[i] - train_logits[i]) <= 1e-6f, "%s: predict differs", c->name);
    /* and so does an inference-only context, which refuses to train */
    petl_ctx *pc = NULL;
    CHECK_OK(petl_predict_ctx_new(tm, c->B, c->seq, &pc, &err), &err);
    CHECK_OK(petl_task_predict(pc, b, &(petl_predictions){.logits = pred}, &err), &err);
    for (int i = 0; i < c->B * nl; i++)
        CHECKF(fabsf(pred[i] - train_logits[i]) <= 1e-6f, "%s: predict ctx differs", c->name);
    float loss;
    CHECK(petl_train_step(pc, b, &(petl_targets){.labels = c->labels, .targets = c->targets}, 0,
                          &loss, &err) == PETL_ERR_ARG);
    petl_ctx_free(pc);
    free(train_logits);
    free(pred);
}

static void run_case(const petl_model *m, reader *r, golden_case *c, const tol *t) {
    petl_error err = {0};
    const petl_config *cfg = petl_model_config(m);
    petl_tune_config tc;
    petl_tune_config_default(&tc, cfg);
    tc.tune = parse_tune(c->tune);
    tc.top_k = c->top_k;
    tc.adapter_size = c->m;
    tc.adapter_act = !strcmp(c->act, "gelu")   ? PETL_ADAPTER_GELU
                     : !strcmp(c->act, "relu") ? PETL_ADAPTER_RELU
                                               : PETL_ADAPTER_SWISH;
    tc.placement = !strcmp(c->place, "ffn") ? PETL_PLACE_FFN : PETL_PLACE_BOTH;
    tc.num_labels = c->nl;
    tc.head = c->span ? PETL_HEAD_SPAN : PETL_HEAD_CLASSIFY;
    petl_task_model *tm = NULL;
    CHECK_OK(petl_task_model_new(m, &tc, 1, &tm, &err), &err);
    petl_ctx *ctx = NULL;
    CHECK_OK(petl_train_ctx_new(tm, c->B, c->seq, &ctx, &err), &err);
    petl_batch b = {c->B, c->seq, c->ids, c->types, c->lengths};

    grad_stats st = {0, "", 0};
    double loss_ref = NAN;
    float loss = 0.0f, first_loss = NAN;
    char *s;
    while ((s = next_line(r)) && strcmp(s, "end")) {
        char *kind = word(&s);
        if (!strcmp(kind, "init") || !strcmp(kind, "inithash")) {
            char *name = word(&s);
            long long n = ll(&s);
            const petl_param *p = petl_task_model_find(tm, name);
            CHECKF(p != NULL, "%s: no parameter %s", c->name, name);
            CHECKF(p->numel == n, "%s: %s has %lld floats, golden %lld", c->name, name,
                   (long long)p->numel, n);
            if (!strcmp(kind, "init"))
                for (long long i = 0; i < n; i++)
                    p->data[i] = (float)dbl(&s);
            else {
                long long salt = ll(&s);
                hash_values(p->data, n, salt, dbl(&s));
            }
        } else if (!strcmp(kind, "loss")) {
            loss_ref = dbl(&s);
            petl_task_model_zero_grad(tm);
            CHECK_OK(train_step(ctx, &b, c, 0, &loss, &err), &err);
            const double rel = fabs(loss - loss_ref) / fabs(loss_ref);
            seen.loss = fmax(seen.loss, rel);
            CHECKF(rel <= t->loss, "%s: loss %.9g, torch %.9g: %.3g relative (bound %.3g)",
                   c->name, loss, loss_ref, rel, t->loss);
            first_loss = loss;
            check_lowest_and_predict(ctx, tm, &tc, cfg, c, &b);
        } else if (!strcmp(kind, "logits")) {
            /* torch's start / end logits of every real token vs the step's (packed [n, 2]) */
            long long n = ll(&s);
            const float *lg = petl_task_ctx_logits(ctx);
            double worst = 0.0, lmax = 0.0;
            for (long long i = 0; i < n; i++) {
                double v = dbl(&s);
                lmax = fmax(lmax, fabs(v));
                worst = fmax(worst, fabs(lg[i] - v));
            }
            seen.logits = fmax(seen.logits, worst / fmax(1.0, lmax));
            CHECKF(worst <= t->logits * fmax(1.0, lmax),
                   "%s: span logits off by %.3g (max %.3g, bound %.3g of it)", c->name, worst,
                   lmax, t->logits);
            printf("  span logits: %lld values, worst |ours - torch| %.3g\n", n, worst);
        } else if (!strcmp(kind, "grad")) {
            char *name = word(&s);
            long long n = ll(&s);
            const petl_param *p = petl_task_model_find(tm, name);
            CHECKF(p != NULL, "%s: torch trains %s, petl does not", c->name, name);
            CHECK(p->numel == n);
            float *ref = malloc((size_t)n * sizeof *ref);
            CHECK(ref);
            for (long long i = 0; i < n; i++)
                ref[i] = (float)dbl(&s);
            compare_grad(&st, p, ref, n, t);
            free(ref);
        } else if (!strcmp(kind, "gnorm")) {
            char *name = word(&s);
            long long n = ll(&s);
            double norm_ref = dbl(&s);
            const petl_param *p = petl_task_model_find(tm, name);
            CHECKF(p != NULL, "%s: torch trains %s, petl does not", c->name, name);
            CHECK(p->numel == n);
            double norm = 0.0, gmax = 0.0;
            for (long long i = 0; i < n; i++) {
                norm += (double)p->grad[i] * p->grad[i];
                gmax = fmax(gmax, fabs(p->grad[i]));
            }
            norm = sqrt(norm);
            /* relative, with the floor of compare_grad: a gradient that is analytically 0
             * (with the span head, the top LayerNorm's bias: its tokens' d logits sum to 0 per
             * row) has norms of pure rounding noise, ~1e-8 on both sides */
            double d = fabs(norm - norm_ref) / fmax(norm_ref, 1e-2);
            seen.norm = fmax(seen.norm, d);
            CHECKF(d <= t->norm, "%s: %s gradient norm %.9g, torch %.9g: %.3g (bound %.3g)",
                   c->name, name, norm, norm_ref, d, t->norm);
            double worst = 0.0;
            while (*s) {
                long long i = ll(&s);
                double v = dbl(&s);
                CHECK(i >= 0 && i < n);
                worst = fmax(worst, fabs(p->grad[i] - v));
            }
            double ratio = worst / fmax(1e-2, gmax);
            seen.grad = fmax(seen.grad, ratio);
            CHECKF(ratio <= t->grad, "%s: %s sampled gradient off by %.3g of max |g| (bound %.3g)",
                   c->name, name, ratio, t->grad);
            ratio = fmax(ratio, d);
            if (ratio >= st.worst_ratio) {
                st.worst_ratio = ratio;
                snprintf(st.worst_name, sizeof st.worst_name, "%s", name);
            }
            st.tensors++;
        } else if (!strcmp(kind, "steps")) {
            int n = (int)ll(&s);
            double lr = dbl(&s);
            int bias_corr = (int)ll(&s);
            double wd = dbl(&s), clip = dbl(&s);
            size_t np = petl_task_model_num_params(tm);
            petl_opt_group *g = calloc(np, sizeof *g);
            CHECK(g);
            for (size_t i = 0; i < np; i++) {
                const petl_param *p = petl_task_model_param(tm, i);
                g[i] = (petl_opt_group){p->data, p->grad, (size_t)p->numel, p->decay, NULL, NULL};
            }
            petl_adamw_opts o;
            petl_adamw_opts_default(&o);
            o.lr = lr;
            o.bias_correction = bias_corr != 0;
            o.weight_decay = wd;
            o.max_grad_norm = clip;
            o.total_steps = n;
            o.warmup_steps = -1;
            petl_adamw *opt = NULL;
            CHECK_OK(petl_adamw_new(g, np, &o, &opt, &err), &err);
            double worst = 0.0;
            float first = 0.0f, last = 0.0f;
            for (int k = 0; k < n; k++) {
                double ref = dbl(&s);
                petl_task_model_zero_grad(tm);
                CHECK_OK(train_step(ctx, &b, c, 0, &loss, &err), &err);
                worst = fmax(worst, fabs(loss - ref) / fabs(ref));
                if (k == 0) first = loss;
                last = loss;
                petl_adamw_clip(opt);
                petl_adamw_step(opt);
            }
            printf("  %d AdamW steps: loss %.6f -> %.6f, worst relative diff vs torch %.3g\n", n,
                   first, last, worst);
            seen.steps = fmax(seen.steps, worst);
            CHECKF(worst <= t->steps, "%s: AdamW losses drift from torch by %.3g (bound %.3g)",
                   c->name, worst, t->steps);
            petl_adamw_free(opt);
            free(g);
        } else {
            CHECKF(0, "%s: unknown record %s", c->name, kind);
        }
    }
    CHECKF(st.tensors == (int)petl_task_model_num_params(tm),
           "%s: petl trains %zu tensors, torch %d", c->name, petl_task_model_num_params(tm),
           st.tensors);
    printf("%-30s loss %.7f (torch %.7f)  %d gradients, worst %.3g of max|g| (%s)\n", c->name,
           first_loss, loss_ref, st.tensors, st.worst_ratio, st.worst_name);

    petl_ctx_free(ctx);
    petl_task_model_free(tm);
}

static void run_file(const char *model_dir, const char *golden, const tol *t) {
    petl_error err = {0};
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(model_dir, &m, &err), &err);
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/grad/%s", TEST_SRC_DIR, golden);
    reader r = {fopen(path, "r"), NULL, 0, path};
    CHECKF(r.f != NULL, "cannot open %s", path);
    char *s;
    int cases = 0;
    memset(&seen, 0, sizeof seen);
    while ((s = next_line(&r))) {
        golden_case c;
        memset(&c, 0, sizeof c);
        CHECK(!strcmp(word(&s), "case"));
        snprintf(c.name, sizeof c.name, "%s", word(&s));
        snprintf(c.tune, sizeof c.tune, "%s", word(&s));
        c.top_k = (int)ll(&s);
        c.m = (int)ll(&s);
        snprintf(c.act, sizeof c.act, "%s", word(&s));
        snprintf(c.place, sizeof c.place, "%s", word(&s));
        c.nl = (int)ll(&s);
        c.span = !strcmp(word(&s), "span"); /* optional 9th field: the head kind */
        s = next_line(&r);
        CHECK(s && !strcmp(word(&s), "batch"));
        c.B = (int)ll(&s);
        c.seq = (int)ll(&s);
        CHECK(c.B > 0 && c.B < 1024 && c.seq > 0 && c.seq <= 512);
        size_t n = (size_t)c.B * c.seq;
        c.ids = calloc(n, 4), c.types = calloc(n, 4), c.lengths = calloc((size_t)c.B, sizeof(int));
        CHECK(c.ids && c.types && c.lengths);
        s = next_line(&r);
        CHECK(!strcmp(word(&s), "ids"));
        for (size_t i = 0; i < n; i++)
            c.ids[i] = (int32_t)ll(&s);
        s = next_line(&r);
        CHECK(!strcmp(word(&s), "types"));
        for (size_t i = 0; i < n; i++)
            c.types[i] = (int32_t)ll(&s);
        s = next_line(&r);
        CHECK(!strcmp(word(&s), "lengths"));
        for (int i = 0; i < c.B; i++)
            c.lengths[i] = (int)ll(&s);
        s = next_line(&r);
        char *k = word(&s);
        if (!strcmp(k, "spans")) {
            CHECK(c.span);
            c.starts = calloc((size_t)c.B, 4), c.ends = calloc((size_t)c.B, 4);
            CHECK(c.starts && c.ends);
            for (int i = 0; i < c.B; i++) {
                c.starts[i] = (int32_t)ll(&s);
                c.ends[i] = (int32_t)ll(&s);
            }
        } else if (!strcmp(k, "labels")) {
            c.labels = calloc((size_t)c.B, 4);
            CHECK(c.labels);
            for (int i = 0; i < c.B; i++)
                c.labels[i] = (int32_t)ll(&s);
        } else {
            CHECK(!strcmp(k, "targets"));
            c.targets = calloc((size_t)c.B, sizeof(float));
            CHECK(c.targets);
            for (int i = 0; i < c.B; i++)
                c.targets[i] = (float)dbl(&s);
        }
        run_case(m, &r, &c, t);
        case_free(&c);
        cases++;
    }
    CHECK(cases > 0);
    printf("%s vs torch, largest (bound): loss %.2g (%.2g), gradients %.2g (%.2g), norms %.2g "
           "(%.2g), span logits %.2g (%.2g), AdamW losses %.2g (%.2g)\n",
           golden, seen.loss, t->loss, seen.grad, t->grad, seen.norm, t->norm, seen.logits,
           t->logits, seen.steps, t->steps);
    free(r.line);
    fclose(r.f);
    petl_model_free(m);
}

/* ------------------------------------------------------------------ dropout determinism */

/* What the dropout tests share: size-4 adapters with a wide init and p = 0.3 at every dropout
 * site, and one 3 x 9 batch of rows of 9, 4 and 6 tokens (b points into the struct). */
#define DB 3
#define DT 9
typedef struct {
    int32_t ids[DB * DT], types[DB * DT], labels[DB];
    int lens[DB];
    petl_batch b;
} dropout_case;

static void dropout_setup(const petl_model *m, petl_tune_config *tc, dropout_case *c) {
    petl_tune_config_default(tc, petl_model_config(m));
    tc->adapter_size = 4;
    tc->adapter_init_sd = 0.05f;
    tc->hidden_dropout = tc->attention_dropout = tc->head_dropout = 0.3f;
    static const int32_t labels[DB] = {1, 0, 1};
    static const int lens[DB] = {9, 4, 6};
    memset(c, 0, sizeof *c);
    memcpy(c->labels, labels, sizeof labels);
    memcpy(c->lens, lens, sizeof lens);
    for (int i = 0; i < DB * DT; i++)
        c->ids[i] = 2 + (i * 37) % 90;
    c->b = (petl_batch){DB, DT, c->ids, c->types, c->lens};
}

/* Same dropout seed: the same loss and gradients, whatever the OpenMP thread count; another
 * seed or none: a different loss. */
static void test_dropout(const char *model_dir) {
    petl_error err = {0};
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(model_dir, &m, &err), &err);
    petl_tune_config tc;
    dropout_case dc;
    dropout_setup(m, &tc, &dc);
    petl_task_model *tm = NULL;
    CHECK_OK(petl_task_model_new(m, &tc, 3, &tm, &err), &err);
    const int B = DB, T = DT;
    const int32_t *labels = dc.labels;
    const petl_batch b = dc.b;
    size_t ng = (size_t)petl_task_model_trainable_count(tm);
    const float *g0 = petl_task_model_param(tm, 0)->grad; /* the gradient block is contiguous */
    float *ref = malloc(ng * sizeof *ref);
    CHECK(ref);
    float l1 = 0, l2 = 0, l3 = 0, l0 = 0;
    int saved = omp_get_max_threads();
    for (int threads = 2; threads >= 1; threads--) {
        omp_set_num_threads(threads);
        petl_ctx *ctx = NULL;
        CHECK_OK(petl_train_ctx_new(tm, B, T, &ctx, &err), &err);
        petl_task_model_zero_grad(tm);
        CHECK_OK(petl_train_step(ctx, &b, &(petl_targets){.labels = labels, .targets = NULL}, 42,
                                 threads == 2 ? &l1 : &l2, &err),
                 &err);
        if (threads == 2) {
            memcpy(ref, g0, ng * sizeof *ref);
        } else {
            float d = 0.0f;
            for (size_t i = 0; i < ng; i++)
                d = fmaxf(d, fabsf(g0[i] - ref[i]));
            printf("dropout seed 42: loss %.7f (2 threads) %.7f (1 thread), max grad diff %.3g\n",
                   l1, l2, d);
            CHECK(l1 == l2 && d <= 1e-6f);
            CHECK_OK(petl_train_step(ctx, &b, &(petl_targets){.labels = labels, .targets = NULL},
                                     43, &l3, &err),
                     &err);
            CHECK_OK(petl_train_step(ctx, &b, &(petl_targets){.labels = labels, .targets = NULL}, 0,
                                     &l0, &err),
                     &err);
            CHECK(l3 != l1 && l0 != l1);
        }
        petl_ctx_free(ctx);
    }
    omp_set_num_threads(saved);
    free(ref);
    petl_task_model_free(tm);
    petl_model_free(m);
}

/* With dropout on (every site, p = 0.3), the backward must apply the very masks the forward drew:
 * central differences of the loss for the largest-gradient entry of tensors from the bottom
 * (embedding LayerNorm), the middle (adapters, LayerNorms of each layer) and the top (head) of
 * the tiny model, with the same dropout seed for both evaluations; --tune adapter and full
 * (every base tensor, embeddings included). Float loss, step 1e-2: rounding ~1e-7 / 1e-2 = 1e-5
 * and curvature terms ~1e-4 |g| (measured: at most 7e-6 absolute); a mask applied in one
 * direction and not the other is off by O(|g|). Tolerance 5e-5 + 2e-3 |g|. */
static void test_dropout_fd(const char *model_dir, petl_tune tune) {
    petl_error err = {0};
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(model_dir, &m, &err), &err);
    petl_tune_config tc;
    petl_tune_config_default(&tc, petl_model_config(m));
    tc.adapter_size = 4;
    tc.adapter_init_sd = 0.2f;
    tc.num_labels = 3;
    tc.tune = tune;
    tc.hidden_dropout = tc.attention_dropout = tc.head_dropout = 0.3f;
    petl_task_model *tm = NULL;
    CHECK_OK(petl_task_model_new(m, &tc, 5, &tm, &err), &err);
    const petl_param *cw = petl_task_model_find(tm, "classifier.weight");
    for (int64_t i = 0; i < cw->numel; i++)
        cw->data[i] *= 20.0f; /* a larger head: larger gradients all the way down */
    const int B = 3, T = 9;
    int32_t ids[3 * 9], types[3 * 9] = {0}, labels[3] = {2, 0, 1};
    int lens[3] = {9, 4, 6};
    for (int i = 0; i < B * T; i++)
        ids[i] = 2 + (i * 53) % 90;
    petl_batch b = {B, T, ids, types, lens};
    petl_ctx *ctx = NULL;
    CHECK_OK(petl_train_ctx_new(tm, B, T, &ctx, &err), &err);
    const uint64_t seed = 1234;
    float loss;
    petl_task_model_zero_grad(tm);
    CHECK_OK(petl_train_step(ctx, &b, &(petl_targets){.labels = labels, .targets = NULL}, seed,
                             &loss, &err),
             &err);
    /* the steps below accumulate into the gradients: keep this step's */
    const size_t ng = (size_t)petl_task_model_trainable_count(tm);
    const float *g0 = petl_task_model_param(tm, 0)->grad; /* the block is contiguous */
    float *grads = malloc(ng * sizeof *grads);
    CHECK(grads);
    memcpy(grads, g0, ng * sizeof *grads);
    double worst = 0.0;
    int checked = 0;
    for (size_t k = 0; k < petl_task_model_num_params(tm); k++) {
        const petl_param *p = petl_task_model_param(tm, k);
        const float *pg = grads + (p->grad - g0);
        int64_t at = 0;
        for (int64_t i = 0; i < p->numel; i++)
            if (fabsf(pg[i]) > fabsf(pg[at])) at = i;
        const float g = pg[at], keep = p->data[at], h = 1e-2f;
        float lp, lm;
        p->data[at] = keep + h;
        CHECK_OK(petl_train_step(ctx, &b, &(petl_targets){.labels = labels, .targets = NULL}, seed,
                                 &lp, &err),
                 &err);
        p->data[at] = keep - h;
        CHECK_OK(petl_train_step(ctx, &b, &(petl_targets){.labels = labels, .targets = NULL}, seed,
                                 &lm, &err),
                 &err);
        p->data[at] = keep;
        const double fd = ((double)lp - lm) / (2.0 * h), e = fabs(fd - g);
        CHECKF(e <= 5e-5 + 2e-3 * fabs(g), "dropout on: %s[%lld]: backward %.6g, differences %.6g",
               p->name, (long long)at, g, fd);
        worst = fmax(worst, e / (5e-5 + 2e-3 * fabs(g)));
        checked++;
    }
    printf("dropout on, --tune %s: %d tensors' largest gradients vs central differences, worst "
           "%.2g of the tolerance\n",
           tune == PETL_TUNE_FULL ? "full" : "adapter", checked, worst);
    free(grads);
    petl_ctx_free(ctx);
    petl_task_model_free(tm);
    petl_model_free(m);
}

/* --freeze-layernorms (what an AdapterHub export holds): the same forward and the same
 * gradient for every adapter and head tensor as --tune adapter, which also trains the
 * LayerNorms (they are base copies there: the same values), with dropout on so that the masks
 * must agree too; and no LayerNorm among its trained tensors. Bit-identical: one forward, and a
 * backward that only stops earlier (at the lowest layer with adapters, not the embeddings). */
static void test_freeze_layernorms(const char *model_dir) {
    petl_error err = {0};
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(model_dir, &m, &err), &err);
    petl_tune_config tc;
    dropout_case dc;
    dropout_setup(m, &tc, &dc);
    petl_task_model *tm[2] = {NULL, NULL};
    float loss[2] = {0, 0};
    const int B = DB, T = DT;
    const int32_t *labels = dc.labels;
    const petl_batch b = dc.b;
    for (int k = 0; k < 2; k++) {
        tc.freeze_layernorms = k == 1;
        CHECK_OK(petl_task_model_new(m, &tc, 3, &tm[k], &err), &err);
        petl_ctx *ctx = NULL;
        CHECK_OK(petl_train_ctx_new(tm[k], B, T, &ctx, &err), &err);
        petl_task_model_zero_grad(tm[k]);
        CHECK_OK(petl_train_step(ctx, &b, &(petl_targets){.labels = labels, .targets = NULL}, 42,
                                 &loss[k], &err),
                 &err);
        petl_ctx_free(ctx);
    }
    CHECKF(loss[0] == loss[1], "loss %.9g (adapter) vs %.9g (frozen LayerNorms)", loss[0], loss[1]);
    size_t n_ln = 0, n_same = 0;
    for (size_t i = 0; i < petl_task_model_num_params(tm[0]); i++) {
        const petl_param *p = petl_task_model_param(tm[0], i);
        const petl_param *q = petl_task_model_find(tm[1], p->name);
        if (strstr(p->name, "LayerNorm") || strstr(p->name, "layer_norm")) {
            CHECKF(q == NULL, "%s is trained with frozen LayerNorms", p->name);
            n_ln++;
            continue;
        }
        CHECKF(q && q->numel == p->numel, "%s: missing with frozen LayerNorms", p->name);
        if (q && q->numel == p->numel)
            n_same += memcmp(p->grad, q->grad, (size_t)p->numel * sizeof *p->grad) == 0;
        CHECKF(!q || memcmp(p->grad, q->grad, (size_t)p->numel * sizeof *p->grad) == 0,
               "%s: gradients differ", p->name);
    }
    CHECK(n_ln > 0 &&
          petl_task_model_num_params(tm[1]) + n_ln == petl_task_model_num_params(tm[0]));
    printf("freeze_layernorms: loss %.7f both ways, %zu tensors with identical gradients, %zu "
           "LayerNorm tensors not trained\n",
           loss[0], n_same, n_ln);
    for (int k = 0; k < 2; k++)
        petl_task_model_free(tm[k]);
    petl_model_free(m);
}

/* The tiny random models of the other families, under tests/golden. */
static const char *const tiny_families[] = {"tiny-roberta", "tiny-xlm-roberta", "tiny-distilbert",
                                            "tiny-electra", "tiny-mpnet"};

int main(void) {
    const char *dir = tiny_model_dir("tiny-bert/plain");
    /* {loss, gradients, norms, span logits, AdamW losses}; the measured worst in comments. Norms
     * and logits are absent (0) from files with no such records. */
    const tol tiny = {5e-7 /* 1e-7: 5x */, 1e-5 /* 1.9e-6: 5.3x */, 0, 0,
                      1e-6 /* 1.2e-7: 8x */};
    const tol span_tiny = {1e-6 /* 1.4e-7: 7x */, 1.5e-5 /* 3e-6: 5x */, 0,
                           1.5e-6 /* 2.7e-7: 5.6x */, 5e-7 /* 9.9e-8: 5x */};
    /* The loss is one float: its bound is a few ulps (6e-8 relative each) even where the
     * measured error is smaller. */
    const tol minilm = {5e-7 /* 4.3e-10, 8 ulps */, 2e-5 /* 4.7e-6 (-O1): 4.3x */,
                        1e-5 /* 1.5e-6: 6.7x */, 0, 2e-6 /* 4.2e-7 (-O1): 4.8x */};
    const tol span_minilm = {5e-7 /* 1e-7: 5x */, 5e-5 /* 1.4e-5: 3.6x */,
                             1.5e-5 /* 3.1e-6: 4.8x */, 3e-6 /* 7.7e-7 (-O1): 3.9x */,
                             1.5e-6 /* 3.3e-7 (-O1): 4.5x */};
    run_file(dir, "tiny.golden", &tiny);
    run_file(dir, "span_tiny.golden", &span_tiny);
    test_dropout(dir);
    test_freeze_layernorms(dir);
    test_dropout_fd(dir, PETL_TUNE_ADAPTER);
    test_dropout_fd(dir, PETL_TUNE_FULL);
    tiny_model_dir_remove();
    /* The other families: tiny random models of each (scripts/reference/gen-arch-golden.py), every
     * tune mode against autograd, and finite differences through dropout in full tuning (MPNet's
     * relative position bias, ELECTRA's embedding projection). */
    for (size_t i = 0; i < sizeof tiny_families / sizeof *tiny_families; i++) {
        char golden[64];
        dir = tiny_model_dir(tiny_families[i]);
        snprintf(golden, sizeof golden, "%s.golden", tiny_families[i]);
        run_file(dir, golden, &tiny);
        test_dropout_fd(dir, PETL_TUNE_FULL);
        tiny_model_dir_remove();
    }
    run_file(test_model_dir(), "minilm.golden", &minilm);
    run_file(test_model_dir(), "span_minilm.golden", &span_minilm);
    CHECK_DONE("test_train");
}
