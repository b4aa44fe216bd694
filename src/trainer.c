/* The training loop, evaluation and checkpoints. See include/petl.h (training
 * and evaluation). */
#include "petl.h"

#include "batcher.h"
#include "internal.h"
#include "optimiser.h"
#include "rng.h"
#include "taskmodel.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CKPT_KEY PETL_CKPT_KEY
#define CKPT_VERSION 1

void petl_train_opts_default(petl_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->lr = 3e-4;
    o->epochs = 3;
    o->batch = 32;
    o->seed = 42;
    o->warmup = 0.1;
    o->weight_decay = 0.01;
    o->max_grad_norm = 1.0;
    o->eval_batch = 0; /* the training batch: a larger one would enlarge the work buffers */
    o->log_every = 10;
    o->stop_at = NAN;
}

/* JSON has no NaN / infinity: those become null. */
static json_t *jreal(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *metrics_json(const petl_metric_set *m) {
    json_t *o = json_object();
    for (size_t i = 0; i < m->count; i++)
        json_object_set_new(o, petl_metric_name(m->metric[i]), jreal(m->value[i]));
    return o;
}

/* ------------------------------------------------------------------------------
 * inference */

/* out's rows for the batch plan's rows[nr] from the batch's own predictions tmp
 * (rows of the batch's seq for spans, padded on to out->seq with -INFINITY). */
static void scatter_predictions(const petl_predictions *out, const petl_predictions *tmp,
                                const int64_t *rows, size_t nr, int C, size_t bs) {
    for (size_t r = 0; r < nr; r++) {
        const size_t i = (size_t)rows[r];
        if (out->logits)
            memcpy(out->logits + i * (size_t)C, tmp->logits + r * (size_t)C,
                   (size_t)C * sizeof(float));
        if (!out->start && !out->end) continue;
        float *os = out->start ? out->start + i * (size_t)out->seq : NULL;
        float *oe = out->end ? out->end + i * (size_t)out->seq : NULL;
        for (size_t p = 0; p < (size_t)out->seq; p++) {
            if (os) os[p] = p < bs ? tmp->start[r * bs + p] : -INFINITY;
            if (oe) oe[p] = p < bs ? tmp->end[r * bs + p] : -INFINITY;
        }
    }
}

petl_status petl_predict_all(petl_task_model *tm, petl_ctx *ctx, const petl_batcher *b, int batch,
                             const petl_predictions *out, petl_error *err) {
    const size_t n = petl_batcher_count(b);
    const int max_len = petl_batcher_max_len(b);
    const bool span = petl_task_model_tune_config(tm)->head == PETL_HEAD_SPAN;
    const int C = span ? 0 : petl_task_model_tune_config(tm)->num_labels;
    if (n == 0) return PETL_OK;
    if (!out) return petl_fail(err, PETL_ERR_ARG, "predictions are NULL");
    if (span && out->seq < max_len)
        return petl_fail(err, PETL_ERR_ARG, "span logits rows of %d for examples of up to %d",
                         out->seq, max_len);
    petl_ctx *own = NULL;
    petl_batch_plan plan = {0};
    petl_batch_buf buf = {0};
    /* one batch's own predictions: [batch, C] logits, or [batch, max_len] start
     * and end */
    const size_t per = span ? 2 * (size_t)max_len : (size_t)C;
    float *tmpf = malloc((size_t)batch * per * sizeof *tmpf + 1);
    petl_status s = tmpf ? PETL_OK : petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    if (s == PETL_OK && !ctx) {
        s = petl_predict_ctx_new(tm, batch, max_len, &own, err);
        ctx = own;
    }
    if (s == PETL_OK) s = petl_batcher_plan_eval(b, batch, &plan, err);
    if (s == PETL_OK) s = petl_batch_buf_init(&buf, batch, max_len, err);
    for (size_t k = 0; s == PETL_OK && k < plan.n_batches; k++) {
        const int64_t *rows = plan.order + plan.start[k];
        size_t nr = plan.start[k + 1] - plan.start[k];
        s = petl_batcher_fill(b, rows, nr, false, &buf, err);
        const size_t bs = (size_t)buf.batch.seq;
        petl_predictions tmp = {span ? NULL : tmpf, span ? tmpf : NULL,
                                span ? tmpf + (size_t)batch * bs : NULL, (int)bs};
        if (s == PETL_OK) s = petl_task_predict(ctx, &buf.batch, &tmp, err);
        if (s == PETL_OK) scatter_predictions(out, &tmp, rows, nr, C, bs);
    }
    petl_batch_buf_free(&buf);
    petl_batch_plan_free(&plan);
    petl_ctx_free(own);
    free(tmpf);
    return s;
}

petl_status petl_squad_evaluate(petl_task_model *tm, petl_ctx *ctx, const petl_squad *ds,
                                const petl_squad_features *f, const petl_batcher *b,
                                const petl_squad_params *p, int batch, petl_squad_prediction *preds,
                                petl_metric_set *out, petl_error *err) {
    const size_t nq = petl_squad_count(ds), n = f->n, seq = (size_t)f->max_seq_len;
    if (nq == 0) return petl_fail(err, PETL_ERR_ARG, "evaluation set is empty");
    if (petl_batcher_count(b) != n || petl_batcher_max_len(b) > f->max_seq_len)
        return petl_fail(err, PETL_ERR_ARG,
                         "squad evaluation: %zu batched examples for %zu windows of %zu tokens",
                         petl_batcher_count(b), n, seq);
    float *logits = malloc(2 * n * seq * sizeof *logits);
    petl_squad_prediction *own = preds ? NULL : malloc(nq * sizeof *own);
    const char **texts = malloc(nq * sizeof *texts);
    size_t *lens = malloc(nq * sizeof *lens);
    petl_status s = logits && (preds || own) && texts && lens
                        ? PETL_OK
                        : petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu windows", n);
    if (!preds) preds = own;
    if (s == PETL_OK)
        s = petl_predict_all(tm, ctx, b, batch,
                             &(petl_predictions){NULL, logits, logits + n * seq, (int)seq}, err);
    if (s == PETL_OK) s = petl_squad_decode(ds, f, logits, logits + n * seq, p, preds, err);
    double em = 0, f1 = 0;
    if (s == PETL_OK) {
        for (size_t q = 0; q < nq; q++) {
            texts[q] = preds[q].text;
            lens[q] = preds[q].len;
        }
        s = petl_squad_score(ds, texts, lens, NULL, NULL, &em, &f1, err);
    }
    if (s == PETL_OK) {
        memset(out, 0, sizeof *out);
        out->count = 2;
        out->metric[0] = PETL_METRIC_EXACT_MATCH;
        out->value[0] = em / 100.0;
        out->metric[1] = PETL_METRIC_SQUAD_F1;
        out->value[1] = f1 / 100.0;
        out->score = f1 / 100.0;
    }
    free(logits);
    free(own);
    free(texts);
    free(lens);
    return s;
}

petl_status petl_evaluate(petl_task_model *tm, petl_ctx *ctx, const petl_task *task,
                          const petl_batcher *b, int batch, double *preds, petl_metric_set *out,
                          petl_error *err) {
    const size_t n = petl_batcher_count(b);
    const int C = petl_task_model_tune_config(tm)->num_labels;
    if (n == 0) return petl_fail(err, PETL_ERR_ARG, "evaluation set is empty");
    float *logits = malloc(n * (size_t)C * sizeof *logits);
    double *p = malloc(n * sizeof *p), *g = malloc(n * sizeof *g);
    petl_status s = logits && p && g ? PETL_OK : petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    if (s == PETL_OK)
        s = petl_predict_all(tm, ctx, b, batch, &(petl_predictions){.logits = logits}, err);
    if (s == PETL_OK) {
        for (size_t i = 0; i < n; i++) {
            const float *l = logits + i * (size_t)C;
            if (C == 1) {
                p[i] = l[0];
                g[i] = petl_batcher_target(b, i);
            } else {
                int best = 0;
                for (int c = 1; c < C; c++)
                    if (l[c] > l[best]) best = c;
                p[i] = best;
                g[i] = petl_batcher_label(b, i);
            }
        }
        s = petl_task_metrics(task, p, g, n, out, err);
        if (s == PETL_OK && preds) memcpy(preds, p, n * sizeof *p);
    }
    free(logits);
    free(p);
    free(g);
    return s;
}

/* -------------------------------------------------------------------------------
 * training */

typedef struct {
    petl_task_model *tm;
    petl_adamw *opt;
    size_t n_params;
    float *best; /* [trainable floats] parameters of the best epoch, in param
                    order */
    bool have_best;
    int best_epoch;
    petl_metric_set best_metrics;
    int epoch, batch; /* position: next batch to run */
    int64_t global;   /* batches run since the start of the run (dropout key) */
    int64_t skipped;
    double loss_sum; /* of the epoch in progress */
    int64_t loss_count;
} run_state;

/* The options and data shape that determine a run's numbers: a resume must
 * match them. */
static json_t *fingerprint(const run_state *rs, const petl_train_opts *o, const petl_batcher *tr,
                           const petl_batcher *dev) {
    char seed[24];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    json_t *fp = json_pack(
        "{s:f, s:i, s:i, s:s, s:f, s:f, s:f, s:b, s:b, s:I, s:I, s:I, s:I, s:I}", "lr", o->lr,
        "epochs", o->epochs, "batch", o->batch, "seed", seed, "warmup", o->warmup, "weight_decay",
        o->weight_decay, "max_grad_norm", o->max_grad_norm, "bias_correction", o->bias_correction,
        "pad_to_max", o->pad_to_max, "n_train", (json_int_t)petl_batcher_count(tr), "train_tokens",
        (json_int_t)petl_batcher_total_tokens(tr), "n_dev",
        (json_int_t)(dev ? petl_batcher_count(dev) : 0), "trainable",
        (json_int_t)petl_task_model_trainable_count(rs->tm), "tensors", (json_int_t)rs->n_params);
    if (fp && o->resume_key) json_object_set_new(fp, "key", json_string(o->resume_key));
    return fp;
}

static char *tensor_name(const char *prefix, const char *name) {
    size_t n = strlen(prefix) + strlen(name) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s", prefix, name);
    return s;
}

static petl_status save_checkpoint(const run_state *rs, const petl_train_opts *o,
                                   const petl_batcher *tr, const petl_batcher *dev,
                                   petl_error *err) {
    size_t ng = 0;
    petl_opt_group *groups = petl_adamw_groups(rs->opt, &ng);
    const size_t n = rs->n_params, per = rs->have_best ? 4 : 3;
    petl_st_entry *ents = calloc(n * per, sizeof *ents);
    char **names = calloc(n * per, sizeof *names);
    json_t *meta = NULL;
    char *text = NULL;
    petl_status s = PETL_OK;
    if (!ents || !names || ng != n) {
        s = petl_fail(err, PETL_ERR_NOMEM, "checkpoint: out of memory");
        goto done;
    }
    static const char *const prefix[] = {"param/", "adam_m/", "adam_v/", "best/"};
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const petl_param *p = petl_task_model_param(rs->tm, i);
        const float *src[4] = {p->data, groups[i].m, groups[i].v, rs->best + off};
        for (size_t k = 0; k < per; k++) {
            char *nm = names[i * per + k] = tensor_name(prefix[k], p->name);
            if (!nm) {
                s = petl_fail(err, PETL_ERR_NOMEM, "checkpoint: out of memory");
                goto done;
            }
            ents[i * per + k] = (petl_st_entry){nm, PETL_DT_F32, p->rank, p->shape, src[k]};
        }
        off += (size_t)p->numel;
    }
    json_t *bm = json_array();
    for (size_t i = 0; i < rs->best_metrics.count; i++)
        json_array_append_new(bm, json_pack("[i, o]", (int)rs->best_metrics.metric[i],
                                            jreal(rs->best_metrics.value[i])));
    meta = json_pack("{s:i, s:i, s:i, s:I, s:I, s:I, s:b, s:i, s:o, s:o, s:f, s:I, s:o}", "version",
                     CKPT_VERSION, "epoch", rs->epoch, "batch", rs->batch, "adam_step",
                     (json_int_t)petl_adamw_step_count(rs->opt), "global", (json_int_t)rs->global,
                     "skipped", (json_int_t)rs->skipped, "have_best", rs->have_best, "best_epoch",
                     rs->best_epoch, "best_metrics", bm, "best_score",
                     jreal(rs->best_metrics.score), "loss_sum", rs->loss_sum, "loss_count",
                     (json_int_t)rs->loss_count, "options", fingerprint(rs, o, tr, dev));
    text = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (!text) {
        s = petl_fail(err, PETL_ERR_NOMEM, "checkpoint: out of memory");
        goto done;
    }
    const char *kv[] = {CKPT_KEY, text};
    s = petl_st_write(o->checkpoint_path, ents, n * per, kv, 1, err);
done:
    if (names)
        for (size_t i = 0; i < n * per; i++)
            free(names[i]);
    free(names);
    free(ents);
    free(text);
    json_decref(meta);
    return s;
}

/* Reads one tensor PREFIX+NAME of p's shape into dst. */
static petl_status ckpt_tensor(const petl_safetensors *st, const char *path, const char *prefix,
                               const petl_param *p, float *dst, petl_error *err) {
    char *nm = tensor_name(prefix, p->name);
    if (!nm) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    const petl_st_tensor *t = petl_st_find(st, nm);
    petl_status s = PETL_OK;
    if (!t)
        s = petl_fail(err, PETL_ERR_SHAPE, "%s: missing tensor %s", path, nm);
    else if (t->numel != p->numel || t->dtype != PETL_DT_F32)
        s = petl_fail(err, PETL_ERR_SHAPE, "%s: tensor %s has %lld %s values, expected %lld F32",
                      path, nm, (long long)t->numel, petl_dtype_name(t->dtype),
                      (long long)p->numel);
    else
        s = petl_st_read_f32(t, dst, err);
    free(nm);
    return s;
}

static petl_status load_checkpoint(run_state *rs, const petl_train_opts *o, const petl_batcher *tr,
                                   const petl_batcher *dev, petl_error *err) {
    const char *path = o->checkpoint_path;
    petl_safetensors *st = NULL;
    petl_status s = petl_st_open(path, &st, err);
    if (s != PETL_OK) return s;
    json_t *meta = NULL, *fp = NULL;
    const char *text = petl_st_meta(st, CKPT_KEY);
    json_error_t je;
    if (!text || !(meta = json_loads(text, 0, &je))) {
        s = petl_fail(err, PETL_ERR_FORMAT, "%s: not a petl checkpoint (no valid %s metadata)",
                      path, CKPT_KEY);
        goto done;
    }
    int version = 0, have_best = 0;
    json_int_t adam_step = 0, global = 0, skipped = 0, loss_count = 0;
    json_t *bm = NULL, *opts = NULL;
    double loss_sum = 0;
    if (json_unpack_ex(meta, &je, 0, "{s:i, s:i, s:i, s:I, s:I, s:I, s:b, s:i, s:o, s:F, s:I, s:o}",
                       "version", &version, "epoch", &rs->epoch, "batch", &rs->batch, "adam_step",
                       &adam_step, "global", &global, "skipped", &skipped, "have_best", &have_best,
                       "best_epoch", &rs->best_epoch, "best_metrics", &bm, "loss_sum", &loss_sum,
                       "loss_count", &loss_count, "options", &opts) != 0 ||
        version != CKPT_VERSION || !json_is_array(bm) || json_array_size(bm) > PETL_MAX_METRICS ||
        rs->epoch < 0 || rs->epoch > o->epochs || rs->batch < 0 || adam_step < 0 || global < 0) {
        s = petl_fail(err, PETL_ERR_FORMAT, "%s: malformed checkpoint state: %s", path,
                      je.text[0] ? je.text : "values out of range");
        goto done;
    }
    fp = fingerprint(rs, o, tr, dev);
    if (!json_equal(fp, opts)) {
        char *a = json_dumps(opts, JSON_COMPACT | JSON_SORT_KEYS);
        char *b = json_dumps(fp, JSON_COMPACT | JSON_SORT_KEYS);
        s = petl_fail(err, PETL_ERR_ARG,
                      "%s: the checkpoint was made with other options or data; "
                      "resume with the "
                      "same ones or start afresh. Checkpoint: %.200s; now: %.200s",
                      path, a ? a : "?", b ? b : "?");
        free(a);
        free(b);
        goto done;
    }
    size_t ng = 0;
    petl_opt_group *groups = petl_adamw_groups(rs->opt, &ng);
    size_t off = 0;
    for (size_t i = 0; i < rs->n_params && s == PETL_OK; i++) {
        const petl_param *p = petl_task_model_param(rs->tm, i);
        s = ckpt_tensor(st, path, "param/", p, p->data, err);
        if (s == PETL_OK) s = ckpt_tensor(st, path, "adam_m/", p, groups[i].m, err);
        if (s == PETL_OK) s = ckpt_tensor(st, path, "adam_v/", p, groups[i].v, err);
        if (s == PETL_OK && have_best) s = ckpt_tensor(st, path, "best/", p, rs->best + off, err);
        off += (size_t)p->numel;
    }
    if (s != PETL_OK) goto done;
    petl_adamw_set_step_count(rs->opt, adam_step);
    rs->global = global;
    rs->skipped = skipped;
    rs->have_best = have_best;
    rs->loss_sum = loss_sum;
    rs->loss_count = loss_count;
    memset(&rs->best_metrics, 0, sizeof rs->best_metrics);
    rs->best_metrics.score = NAN;
    json_t *score = json_object_get(meta, "best_score");
    if (json_is_number(score)) rs->best_metrics.score = json_number_value(score);
    for (size_t i = 0; i < json_array_size(bm); i++) {
        json_t *e = json_array_get(bm, i);
        json_t *v = json_array_get(e, 1);
        rs->best_metrics.metric[i] = (petl_metric)json_integer_value(json_array_get(e, 0));
        rs->best_metrics.value[i] = json_is_number(v) ? json_number_value(v) : NAN;
        rs->best_metrics.count = i + 1;
    }
done:
    json_decref(fp);
    json_decref(meta);
    petl_st_close(st);
    return s;
}

static void copy_params(const run_state *rs, bool to_best) {
    size_t off = 0;
    for (size_t i = 0; i < rs->n_params; i++) {
        const petl_param *p = petl_task_model_param(rs->tm, i);
        size_t bytes = (size_t)p->numel * sizeof(float);
        if (to_best)
            memcpy(rs->best + off, p->data, bytes);
        else
            memcpy(p->data, rs->best + off, bytes);
        off += (size_t)p->numel;
    }
}

/* One line of the --log file, flushed. A failed write (a full disk, EFBIG over
 * `ulimit -f`) stops the run: the log is output the user asked for, and a disk
 * that is full now is full for the adapter too. Takes obj over. */
static petl_status log_line(FILE *log, const char *path, json_t *obj, petl_error *err) {
    petl_status s = PETL_OK;
    if (log && obj) {
        char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        errno = 0;
        if (!text)
            s = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory for a log line", path);
        else if (fprintf(log, "%s\n", text) < 0 || fflush(log) != 0)
            s = petl_fail(err, PETL_ERR_IO, "%s: cannot write the log: %s", path,
                          strerror(errno ? errno : EIO));
        free(text);
    }
    json_decref(obj);
    return s;
}

/* The dropout key of a batch: a function of (seed, global batch index) only;
 * never 0, which would turn dropout off. */
static uint64_t dropout_seed(uint64_t seed, int64_t global) {
    petl_rng r = petl_rng_stream(seed, PETL_RNG_DROPOUT_HIDDEN, (uint64_t)global, 0);
    uint64_t x = petl_rng_next(&r);
    return x ? x : 1;
}

static bool file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* One run of petl_train: its state (checkpointed), inputs and work buffers. */
typedef struct {
    run_state rs;
    petl_task_model *tm;
    const petl_task *task;
    const petl_batcher *train, *dev;
    const petl_train_opts *o;
    petl_progress_fn cb;
    void *user;
    petl_train_result *res;
    petl_error *err;
    int nb;        /* batches per epoch */
    int64_t total; /* batches of the run */
    int eval_batch;
    petl_ctx *ctx; /* training context, also used for the dev evaluations */
    petl_opt_group *groups;
    petl_batch_plan plan; /* the epoch's batches */
    petl_batch_buf buf;
    FILE *log;
    double t0, eval_s; /* start, and time spent in periodic evaluations (eval_every) */
    int64_t tokens;
    bool stopped; /* stop_at reached */
    petl_train_progress pr;
} run;

static void progress(run *r, petl_progress_kind kind) {
    r->pr.kind = kind;
    if (r->cb) r->cb(&r->pr, r->user);
}

/* Checks the options and sizes the run; makes the optimiser, the context and
 * the batch buffer, resumes from the checkpoint when asked and opens the log.
 */
static petl_status run_open(run *r) {
    const petl_train_opts *o = r->o;
    petl_error *err = r->err;
    const size_t n = petl_batcher_count(r->train);
    if (n == 0) return petl_fail(err, PETL_ERR_ARG, "the training set is empty");
    if (o->epochs < 1 || o->batch < 1 || o->eval_batch < 0 || !(o->warmup >= 0 && o->warmup <= 1))
        return petl_fail(err, PETL_ERR_ARG,
                         "training options: epochs, batch and eval batch must be "
                         ">= 1 and warmup "
                         "in [0, 1]");
    if (r->dev && !r->task && !o->evaluate)
        return petl_fail(err, PETL_ERR_ARG,
                         "training: a dev set but no task (metrics) and no evaluator");
    r->nb = (int)petl_batcher_epoch_batches(n, o->batch);
    r->total = (int64_t)r->nb * o->epochs;
    const int tl = petl_batcher_max_len(r->train), dl = r->dev ? petl_batcher_max_len(r->dev) : 0;
    const int max_len = tl > dl ? tl : dl;
    r->eval_batch = o->eval_batch > 0 ? o->eval_batch : o->batch;
    const int max_batch = o->batch > r->eval_batch ? o->batch : r->eval_batch;

    run_state *rs = &r->rs;
    r->groups = calloc(rs->n_params ? rs->n_params : 1, sizeof *r->groups);
    rs->best = malloc((size_t)petl_task_model_trainable_count(r->tm) * sizeof(float) + 1);
    if (!r->groups || !rs->best)
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory for the training state");
    for (size_t i = 0; i < rs->n_params; i++) {
        const petl_param *p = petl_task_model_param(r->tm, i);
        r->groups[i] = (petl_opt_group){p->data, p->grad, (size_t)p->numel, p->decay, NULL, NULL};
    }
    petl_adamw_opts ao;
    petl_adamw_opts_default(&ao);
    ao.lr = o->lr;
    ao.weight_decay = o->weight_decay;
    ao.bias_correction = o->bias_correction;
    ao.max_grad_norm = o->max_grad_norm;
    ao.total_steps = r->total;
    ao.warmup_steps = petl_warmup_steps(r->total, o->warmup);
    petl_status s = petl_adamw_new(r->groups, rs->n_params, &ao, &rs->opt, err);
    if (s == PETL_OK) s = petl_train_ctx_new(r->tm, max_batch, max_len, &r->ctx, err);
    if (s == PETL_OK) s = petl_batch_buf_init(&r->buf, o->batch, max_len, err);
    /* A checkpoint path is overwritten at every save: it must hold nothing or a
     * petl checkpoint (a data file given by mistake is refused here, not replaced
     * at epoch 1). */
    if (s == PETL_OK && o->checkpoint_path) s = petl_checkpoint_check(o->checkpoint_path, err);
    if (s == PETL_OK && o->resume && o->checkpoint_path && file_exists(o->checkpoint_path)) {
        s = load_checkpoint(rs, o, r->train, r->dev, err);
        r->res->resumed = s == PETL_OK;
        r->res->resumed_step = rs->global;
    }
    if (s == PETL_OK && o->log_path && !(r->log = fopen(o->log_path, "a")))
        s = petl_fail(err, PETL_ERR_IO, "%s: cannot open the log: %s", o->log_path,
                      strerror(errno));
    if (s == PETL_OK && r->res->resumed)
        s = log_line(r->log, o->log_path,
                     json_pack("{s:s, s:I, s:i, s:i}", "event", "resume", "step",
                               (json_int_t)rs->global, "epoch", rs->epoch, "batch", rs->batch),
                     err);
    return s;
}

/* One optimisation step on the epoch's batch rs.batch: forward + backward,
 * clip, AdamW (a step whose loss or gradient norm is not finite is skipped),
 * progress and log line. */
static petl_status train_batch(run *r) {
    run_state *rs = &r->rs;
    const petl_train_opts *o = r->o;
    const int64_t *rows = r->plan.order + r->plan.start[rs->batch];
    const size_t nr = r->plan.start[rs->batch + 1] - r->plan.start[rs->batch];
    petl_status s = petl_batcher_fill(r->train, rows, nr, o->pad_to_max, &r->buf, r->err);
    if (s != PETL_OK) return s;
    petl_task_model_zero_grad(r->tm);
    float loss = 0;
    const petl_targets t = {r->buf.labels, r->buf.targets, r->buf.starts, r->buf.ends};
    s = petl_train_step(r->ctx, &r->buf.batch, &t, dropout_seed(o->seed, rs->global), &loss,
                        r->err);
    if (s != PETL_OK) return s;
    r->tokens += r->buf.tokens;
    const double norm = petl_adamw_clip(rs->opt), lr = petl_adamw_lr(rs->opt);
    const bool skip = !isfinite(norm) || !isfinite(loss);
    if (skip)
        rs->skipped++;
    else
        petl_adamw_step(rs->opt);
    rs->global++;
    if (!skip) {
        rs->loss_sum += loss;
        rs->loss_count++;
    }
    const double el = petl_now() - r->t0;
    r->pr = (petl_train_progress){.step = rs->global,
                                  .total_steps = r->total,
                                  .epoch = rs->epoch,
                                  .epochs = o->epochs,
                                  .loss = loss,
                                  .mean_loss =
                                      rs->loss_count ? rs->loss_sum / (double)rs->loss_count : NAN,
                                  .lr = lr,
                                  .grad_norm = norm,
                                  .tokens_per_s = el > 0 ? (double)r->tokens / el : 0,
                                  .elapsed_s = el};
    progress(r, skip ? PETL_PROGRESS_SKIPPED : PETL_PROGRESS_STEP);
    if (!r->log || !(o->log_every <= 1 || rs->global % o->log_every == 0 || rs->global == 1 ||
                     rs->global == r->total || skip))
        return PETL_OK;
    return log_line(r->log, o->log_path,
                    json_pack("{s:I, s:i, s:o, s:o, s:o, s:f, s:f, s:b}", "step",
                              (json_int_t)rs->global, "epoch", rs->epoch, "loss", jreal(loss), "lr",
                              jreal(lr), "grad_norm", jreal(norm), "tokens_per_s",
                              r->pr.tokens_per_s, "elapsed_s", el, "skipped", skip),
                    r->err);
}

/* Evaluates the model as it is now on the dev set (o->evaluate, or the task's
 * metrics). */
static petl_status dev_eval(run *r, petl_metric_set *m) {
    if (r->o->evaluate) return r->o->evaluate(r->tm, r->ctx, r->o->evaluate_user, m, r->err);
    return petl_evaluate(r->tm, r->ctx, r->task, r->dev, r->eval_batch, NULL, m, r->err);
}

/* Remembers the model as it is now as the best one, with its dev metrics m. */
static void keep_best(run *r, const petl_metric_set *m) {
    copy_params(&r->rs, true);
    r->rs.have_best = true;
    r->rs.best_epoch = r->rs.epoch;
    r->rs.best_metrics = *m;
}

/* Saves the checkpoint with the position (epoch, batch) of the NEXT batch to
 * run. */
static petl_status checkpoint_at(run *r, int epoch, int batch) {
    run_state *rs = &r->rs;
    const int e = rs->epoch, b = rs->batch;
    rs->epoch = epoch;
    rs->batch = batch;
    petl_status s = save_checkpoint(rs, r->o, r->train, r->dev, r->err);
    rs->epoch = e;
    rs->batch = b;
    if (s != PETL_OK) return s;
    r->pr.path = r->o->checkpoint_path;
    progress(r, PETL_PROGRESS_CHECKPOINT);
    return PETL_OK;
}

static bool has_dev(const run *r) {
    return r->dev && petl_batcher_count(r->dev) > 0;
}

/* After each batch: the periodic evaluation (time to accuracy: logged with the
 * training time so far, evaluations excluded; reaching stop_at ends the run
 * with this model) and the mid-epoch checkpoint (the epoch's last batch is
 * covered by the epoch's). */
static petl_status after_batch(run *r) {
    run_state *rs = &r->rs;
    const petl_train_opts *o = r->o;
    petl_status s = PETL_OK;
    if (o->eval_every > 0 && rs->global % o->eval_every == 0 && has_dev(r)) {
        const double te = petl_now();
        petl_metric_set m;
        if ((s = dev_eval(r, &m)) != PETL_OK) return s;
        r->eval_s += petl_now() - te;
        const double train_s = petl_now() - r->t0 - r->eval_s;
        const bool reached = !isnan(o->stop_at) && isfinite(m.score) && m.score >= o->stop_at;
        json_t *pj = json_pack("{s:s, s:I, s:i, s:f}", "event", "eval", "step",
                               (json_int_t)rs->global, "epoch", rs->epoch, "train_s", train_s);
        json_object_set_new(pj, "dev", metrics_json(&m));
        json_object_set_new(pj, "score", jreal(m.score));
        if (reached) json_object_set_new(pj, "stop_at_reached", json_true());
        if ((s = log_line(r->log, o->log_path, pj, r->err)) != PETL_OK) return s;
        if (reached) {
            keep_best(r, &m);
            r->res->stopped_step = rs->global;
            r->res->stopped_train_s = train_s;
            r->stopped = true;
            return PETL_OK;
        }
    }
    if (o->checkpoint_path && o->checkpoint_every > 0 && rs->global % o->checkpoint_every == 0 &&
        rs->batch + 1 < r->nb)
        s = checkpoint_at(r, rs->epoch, rs->batch + 1);
    return s;
}

/* The end of an epoch: dev evaluation and keep-best (the first epoch is always
 * the best so far; later ones must beat it, a NaN score never does), the
 * epoch's log line, the checkpoint. */
static petl_status epoch_end(run *r) {
    run_state *rs = &r->rs;
    const petl_train_opts *o = r->o;
    const double mean_loss = rs->loss_count ? rs->loss_sum / (double)rs->loss_count : NAN;
    json_t *ej = json_pack("{s:I, s:i, s:o}", "step", (json_int_t)rs->global, "epoch", rs->epoch,
                           "train_loss", jreal(mean_loss));
    if (has_dev(r)) {
        progress(r, PETL_PROGRESS_EVAL_START);
        petl_metric_set m;
        petl_status s = dev_eval(r, &m);
        if (s != PETL_OK) {
            json_decref(ej);
            return s;
        }
        const bool best = !rs->have_best ||
                          (isfinite(m.score) &&
                           (!isfinite(rs->best_metrics.score) || m.score > rs->best_metrics.score));
        if (best) keep_best(r, &m);
        json_object_set_new(ej, "dev", metrics_json(&m));
        json_object_set_new(ej, "score", jreal(m.score));
        json_object_set_new(ej, "best", json_boolean(best));
        r->pr.dev = &m;
        r->pr.best = best;
        r->pr.mean_loss = mean_loss;
        r->pr.elapsed_s = petl_now() - r->t0;
        progress(r, PETL_PROGRESS_EPOCH);
        r->pr.dev = NULL;
    }
    petl_status s = log_line(r->log, o->log_path, ej, r->err);
    rs->loss_sum = 0;
    rs->loss_count = 0;
    if (s == PETL_OK && o->checkpoint_path) s = checkpoint_at(r, rs->epoch + 1, 0);
    return s;
}

/* Frees what run_open made; a failed close of the log fails a run that had not
 * failed. */
static petl_status run_close(run *r, petl_status s) {
    if (r->log && fclose(r->log) != 0 && s == PETL_OK)
        s = petl_fail(r->err, PETL_ERR_IO, "%s: cannot write the log: %s", r->o->log_path,
                      strerror(errno));
    petl_batch_buf_free(&r->buf);
    petl_batch_plan_free(&r->plan);
    petl_ctx_free(r->ctx);
    petl_adamw_free(r->rs.opt);
    free(r->rs.best);
    free(r->groups);
    return s;
}

/* The training loop (karpathy/llm.c's main, in named steps). */
petl_status petl_train(petl_task_model *tm, const petl_task *task, const petl_batcher *train,
                       const petl_batcher *dev, const petl_train_opts *o, petl_progress_fn cb,
                       void *user, petl_train_result *res, petl_error *err) {
    memset(res, 0, sizeof *res);
    res->best_epoch = -1;
    run r = {.rs = {.tm = tm, .n_params = petl_task_model_num_params(tm), .best_epoch = -1},
             .tm = tm,
             .task = task,
             .train = train,
             .dev = dev,
             .o = o,
             .cb = cb,
             .user = user,
             .res = res,
             .err = err};
    r.rs.best_metrics.score = NAN;
    run_state *rs = &r.rs;
    petl_status s = run_open(&r);
    r.t0 = petl_now();
    r.pr = (petl_train_progress){
        .step = rs->global, .total_steps = r.total, .epoch = rs->epoch, .epochs = o->epochs};
    if (s == PETL_OK) progress(&r, PETL_PROGRESS_START);
    for (; s == PETL_OK && rs->epoch < o->epochs && !r.stopped; rs->epoch++, rs->batch = 0) {
        petl_batch_plan_free(&r.plan);
        s = petl_batcher_plan_train(train, o->batch, o->seed, rs->epoch, &r.plan, err);
        for (; s == PETL_OK && rs->batch < r.nb && !r.stopped; rs->batch++) {
            s = train_batch(&r);
            if (s == PETL_OK) s = after_batch(&r);
        }
        if (s == PETL_OK && !r.stopped) s = epoch_end(&r);
    }
    if (s == PETL_OK) {
        if (rs->have_best) copy_params(rs, false);
        res->best_epoch = rs->have_best ? rs->best_epoch : -1;
        res->best = rs->best_metrics;
        res->steps = rs->global;
        res->skipped = rs->skipped;
        res->train_seconds = petl_now() - r.t0;
    }
    return run_close(&r, s);
}
