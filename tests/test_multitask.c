/* The fused multi-task forward (petl_task_predict_multi): one batch mixing rows of several task
 * models on one base gives, row for row, the logits petl_task_predict gives each task's rows on
 * their own. Tasks differ in everything that is per task: adapter size, placement, adapter
 * layers, activation, label count, --tune mode (adapter / layernorm / head), and an adapter
 * ablation switch; every tuned parameter is perturbed so that a task's LayerNorm or adapter
 * applied to another task's rows would show. Also: what must be refused (a task that tunes base
 * weights, another base, sizes over the context's), and the server's executor on a mixed batch
 * with a full-tuned task (not fusable) and a task whose forward fails: only that task's rows
 * fail.
 *
 * Tolerance: max |multi - single| <= 1e-5. The two forwards run the same float operations on
 * the same rows; only the GEMMs see a different number of rows (BLAS may block them
 * differently), which moves logits by a few float roundings (measured ~1e-7). A task's
 * LayerNorm or adapter on the wrong rows is off by O(0.1). */
#include "check.h"
#include "petl.h"
#include "rng.h"
#include "server.h"
#include "taskmodel.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tiny_dir[64];

/* model.st is committed under that name: link it as model.safetensors into a temporary folder
 * (as tests/test_train.c). */
static const char *tiny_model_dir(void) {
    snprintf(tiny_dir, sizeof tiny_dir, "/tmp/petl-multi-XXXXXX");
    CHECK(mkdtemp(tiny_dir) != NULL);
    const char *names[][2] = {{"config.json", "config.json"}, {"model.st", "model.safetensors"}};
    for (int i = 0; i < 2; i++) {
        char src[4096], dst[4096];
        snprintf(src, sizeof src, "%s/golden/tiny-bert/plain/%s", PETL_TEST_SRC_DIR, names[i][0]);
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

/* A task model whose every tuned parameter is moved by normal(0, sd): near-identity adapters
 * and base LayerNorms would hide rows going through the wrong task. */
static petl_task_model *make_task(const petl_model *m, petl_tune tune, int adapter_size,
                                  petl_adapter_placement place, uint64_t layers,
                                  petl_adapter_act act, int num_labels, uint64_t seed) {
    petl_tune_config tc;
    petl_tune_config_default(&tc, petl_model_config(m));
    tc.tune = tune;
    tc.adapter_size = adapter_size;
    tc.placement = place;
    tc.adapter_layers = layers;
    tc.adapter_act = act;
    tc.num_labels = num_labels;
    petl_error err = {0};
    petl_task_model *tm = NULL;
    CHECK_OK(petl_task_model_new(m, &tc, seed, &tm, &err), &err);
    petl_rng r = petl_rng_stream(seed, 77, 0, 0);
    for (size_t i = 0; i < petl_task_model_num_params(tm); i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        for (int64_t k = 0; k < p->numel; k++)
            p->data[k] += (float)(0.1 * petl_rng_normal(&r));
    }
    return tm;
}

typedef struct {
    int B, seq;
    int32_t *ids, *types;
    int *lens;
} batch_buf;

static void batch_fill(batch_buf *bb, const petl_config *c, int B, int seq, uint64_t seed) {
    bb->B = B;
    bb->seq = seq;
    bb->ids = calloc((size_t)B * seq, sizeof *bb->ids);
    bb->types = calloc((size_t)B * seq, sizeof *bb->types);
    bb->lens = calloc((size_t)B, sizeof *bb->lens);
    CHECK(bb->ids && bb->types && bb->lens);
    petl_rng r = petl_rng_stream(seed, 78, 0, 0);
    for (int b = 0; b < B; b++) {
        bb->lens[b] = 1 + (int)petl_rng_below(&r, (uint64_t)seq);
        int split = bb->lens[b] / 2;
        for (int p = 0; p < bb->lens[b]; p++) {
            bb->ids[b * seq + p] = (int32_t)petl_rng_below(&r, (uint64_t)c->vocab_size);
            bb->types[b * seq + p] = p >= split && (b & 1);
        }
    }
}

static void batch_free(batch_buf *bb) {
    free(bb->ids);
    free(bb->types);
    free(bb->lens);
}

/* Mixed batch over tasks[row_of[b]] vs each task's rows alone; returns max |diff|. */
static double compare(const petl_model *m, petl_task_model **tasks, int ntasks, const int *row_of,
                      const batch_buf *bb, int max_m, int max_nl) {
    petl_error err = {0};
    const int B = bb->B, ld = max_nl;
    const petl_task_model **rt = calloc((size_t)B, sizeof *rt);
    float *multi = calloc((size_t)B * ld, sizeof *multi);
    CHECK(rt && multi);
    for (int b = 0; b < B; b++)
        rt[b] = tasks[row_of[b]];
    petl_ctx *mc = NULL;
    CHECK_OK(petl_multi_ctx_new(m, B, bb->seq, max_m, max_nl, &mc, &err), &err);
    petl_batch batch = {B, bb->seq, bb->ids, bb->types, bb->lens};
    CHECK_OK(petl_task_predict_multi(mc, rt, &batch, multi, ld, &err), &err);
    /* the same context again gives the same logits (no state leaks between calls) */
    float *again = calloc((size_t)B * ld, sizeof *again);
    CHECK(again);
    CHECK_OK(petl_task_predict_multi(mc, rt, &batch, again, ld, &err), &err);
    CHECK(!memcmp(multi, again, (size_t)B * ld * sizeof *multi));
    free(again);

    double worst = 0.0;
    int32_t *ids = calloc((size_t)B * bb->seq, sizeof *ids);
    int32_t *types = calloc((size_t)B * bb->seq, sizeof *types);
    int *lens = calloc((size_t)B, sizeof *lens), *rows = calloc((size_t)B, sizeof *rows);
    float *single = calloc((size_t)B * ld, sizeof *single);
    CHECK(ids && types && lens && rows && single);
    for (int t = 0; t < ntasks; t++) {
        int n = 0;
        for (int b = 0; b < B; b++)
            if (row_of[b] == t) {
                memcpy(ids + (size_t)n * bb->seq, bb->ids + (size_t)b * bb->seq,
                       (size_t)bb->seq * sizeof *ids);
                memcpy(types + (size_t)n * bb->seq, bb->types + (size_t)b * bb->seq,
                       (size_t)bb->seq * sizeof *types);
                lens[n] = bb->lens[b];
                rows[n++] = b;
            }
        if (!n) continue;
        const int nl = petl_task_model_tune_config(tasks[t])->num_labels;
        petl_ctx *pc = NULL;
        CHECK_OK(petl_predict_ctx_new(tasks[t], n, bb->seq, &pc, &err), &err);
        petl_batch sb = {n, bb->seq, ids, types, lens};
        CHECK_OK(petl_task_predict(pc, &sb, &(petl_predictions){.logits = single}, &err), &err);
        for (int k = 0; k < n; k++)
            for (int j = 0; j < nl; j++) {
                double d = fabs((double)single[k * nl + j] - multi[(size_t)rows[k] * ld + j]);
                CHECKF(isfinite(single[k * nl + j]), "task %d row %d: logit not finite", t, k);
                if (d > worst) worst = d;
            }
        petl_ctx_free(pc);
    }
    free(ids);
    free(types);
    free(lens);
    free(rows);
    free(single);
    free(rt);
    free(multi);
    petl_ctx_free(mc);
    return worst;
}

static void test_tiny(const char *dir) {
    petl_error err = {0};
    petl_model *m = NULL, *other = NULL;
    CHECK_OK(petl_model_load(dir, &m, &err), &err);
    const petl_config *c = petl_model_config(m);
    petl_task_model *t[5];
    t[0] = make_task(m, PETL_TUNE_ADAPTER, 16, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 3,
                     11);
    t[1] = make_task(m, PETL_TUNE_ADAPTER, 4, PETL_PLACE_FFN, 2, PETL_ADAPTER_SWISH, 2, 12);
    t[2] = make_task(m, PETL_TUNE_LAYERNORM, 64, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU,
                     1, 13);
    t[3] =
        make_task(m, PETL_TUNE_HEAD, 64, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 2, 14);
    t[4] =
        make_task(m, PETL_TUNE_ADAPTER, 8, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_RELU, 2, 15);
    petl_task_model_disable_adapters(t[4], 1); /* layer 0's adapters off (ablation) */
    for (int i = 0; i < 5; i++)
        CHECK(petl_task_model_shares_base(t[i]));

    /* interleaved rows: no task's rows are contiguous in the batch */
    batch_buf bb;
    batch_fill(&bb, c, 13, 12, 99);
    const int row_of[13] = {0, 1, 2, 3, 4, 0, 2, 1, 0, 3, 4, 4, 2};
    double d = compare(m, t, 5, row_of, &bb, 16, 3);
    printf("tiny: 5 tasks, 13 rows: max |multi - single| = %.3g\n", d);
    CHECKF(d <= 1e-5, "max diff %g", d);
    /* one task only, and a context larger than needed */
    const int one[13] = {0};
    d = compare(m, t, 5, one, &bb, 64, 8);
    CHECKF(d <= 1e-5, "one task: max diff %g", d);

    /* refusals: nothing computed, a clear message */
    petl_ctx *mc = NULL;
    CHECK_OK(petl_multi_ctx_new(m, 4, 12, 8, 2, &mc, &err), &err);
    petl_batch b4 = {4, 12, bb.ids, bb.types, bb.lens};
    float lg[4 * 3];
    const petl_task_model *rt[4] = {t[1], t[1], t[1], t[1]};
    CHECK_OK(petl_task_predict_multi(mc, rt, &b4, lg, 2, &err), &err);
    rt[2] = t[0]; /* adapter size 16 > 8, and 3 labels > 2 */
    CHECK(petl_task_predict_multi(mc, rt, &b4, lg, 3, &err) == PETL_ERR_ARG);
    CHECK(strstr(err.msg, "batch row 2"));
    petl_task_model *full =
        make_task(m, PETL_TUNE_FULL, 8, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 2, 16);
    petl_task_model *top =
        make_task(m, PETL_TUNE_TOP, 8, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 2, 17);
    CHECK(!petl_task_model_shares_base(full));
    CHECK(!petl_task_model_shares_base(top));
    rt[2] = top;
    CHECK(petl_task_predict_multi(mc, rt, &b4, lg, 2, &err) == PETL_ERR_ARG);
    CHECK(strstr(err.msg, "tunes base weights"));
    CHECK_OK(petl_model_load(dir, &other, &err), &err);
    petl_task_model *foreign = make_task(other, PETL_TUNE_HEAD, 8, PETL_PLACE_BOTH, ~(uint64_t)0,
                                         PETL_ADAPTER_GELU, 2, 18);
    rt[2] = foreign;
    CHECK(petl_task_predict_multi(mc, rt, &b4, lg, 2, &err) == PETL_ERR_ARG);
    CHECK(strstr(err.msg, "another base"));
    rt[2] = NULL;
    CHECK(petl_task_predict_multi(mc, rt, &b4, lg, 2, &err) == PETL_ERR_ARG);
    rt[2] = t[1];
    petl_batch b5 = {5, 12, bb.ids, bb.types, bb.lens};
    CHECK(petl_task_predict_multi(mc, rt, &b5, lg, 2, &err) == PETL_ERR_ARG); /* > max_batch */
    petl_ctx_free(mc);
    CHECK(petl_multi_ctx_new(m, 4, 33, 8, 2, &mc, &err) == PETL_ERR_ARG && !mc); /* > 32 pos */
    petl_ctx_free(NULL);
    CHECK_OK(petl_multi_ctx_new(m, 4, 12, 8, 2, &mc, &err), &err);
    petl_ctx_free(mc);

    petl_task_model_free(foreign);
    petl_task_model_free(full);
    petl_task_model_free(top);
    for (int i = 0; i < 5; i++)
        petl_task_model_free(t[i]);
    batch_free(&bb);
    petl_model_free(other);
    petl_model_free(m);
}

/* A server task around tm (labels "0".."nl-1", max_len 12). */
static petl_srv_task *wrap(const char *name, petl_task_model *tm, int nl) {
    petl_adapter_info info;
    memset(&info, 0, sizeof info);
    const char *names[3] = {"0", "1", "2"};
    petl_error err = {0};
    CHECK_OK(petl_adapter_info_set_labels(&info, names, (size_t)nl, &err), &err);
    info.max_len = 12;
    petl_srv_task *t = NULL;
    CHECK_OK(petl_srv_task_wrap(name, NULL, tm, &info, &t, &err), &err);
    return t;
}

/* The executor on one mixed batch: a fusable adapter task, a fusable head task, a full-tuned
 * task (its own forward); results equal each row alone; then a row with a token id outside the
 * vocabulary fails its own task's rows only. */
static void test_exec(const char *dir) {
    petl_error err = {0};
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(dir, &m, &err), &err);
    petl_srv_task *t[3];
    t[0] = wrap(
        "a",
        make_task(m, PETL_TUNE_ADAPTER, 8, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 2, 31),
        2);
    t[1] = wrap(
        "b",
        make_task(m, PETL_TUNE_HEAD, 8, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 3, 32),
        3);
    t[2] = wrap(
        "c",
        make_task(m, PETL_TUNE_FULL, 8, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 2, 33),
        2);
    enum { N = 7 };
    batch_buf bb;
    batch_fill(&bb, petl_model_config(m), N, 12, 7);
    const int row_of[N] = {0, 1, 2, 0, 2, 1, 0};
    petl_encoding enc[N];
    const petl_encoding *encp[N];
    petl_srv_task *rt[N];
    float out[N][3], *outp[N];
    petl_error rerr[N];
    for (int i = 0; i < N; i++) {
        enc[i] = (petl_encoding){bb.ids + i * 12, bb.types + i * 12, bb.lens[i], 12, NULL, 0};
        encp[i] = &enc[i];
        rt[i] = t[row_of[i]];
        outp[i] = out[i];
        rerr[i].code = PETL_OK;
    }
    petl_srv_rows rows = {N, rt, encp, outp, rerr};
    petl_srv_exec *ex = NULL;
    CHECK_OK(petl_srv_exec_new(8, 0, &ex, &err), &err);
    CHECK_OK(petl_srv_exec_run(ex, &rows, &err), &err);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        CHECK(rerr[i].code == PETL_OK);
        petl_ctx *pc = NULL;
        CHECK_OK(petl_predict_ctx_new(rt[i]->tm, 1, 12, &pc, &err), &err);
        petl_batch one = {1, 12, bb.ids + i * 12, bb.types + i * 12, bb.lens + i};
        float ref[3];
        CHECK_OK(petl_task_predict(pc, &one, &(petl_predictions){.logits = ref}, &err), &err);
        for (int k = 0; k < rt[i]->num_labels; k++)
            if (fabs((double)ref[k] - out[i][k]) > worst) worst = fabs((double)ref[k] - out[i][k]);
        petl_ctx_free(pc);
    }
    printf("executor: 3 tasks (one full-tuned), %d rows: max |exec - alone| = %.3g\n", N, worst);
    CHECKF(worst <= 1e-5, "max diff %g", worst);
    /* row 5 (task b) gets a token id outside the vocabulary: b's rows fail, a's and c's not */
    bb.ids[5 * 12] = 100000;
    for (int i = 0; i < N; i++)
        rerr[i].code = PETL_OK;
    CHECK_OK(petl_srv_exec_run(ex, &rows, &err), &err);
    for (int i = 0; i < N; i++)
        CHECKF((rerr[i].code != PETL_OK) == (row_of[i] == 1), "row %d: code %d", i,
               (int)rerr[i].code);
    CHECK(strstr(rerr[1].msg, "vocabulary"));
    petl_srv_exec_free(ex);
    for (int i = 0; i < 3; i++)
        petl_srv_task_release(t[i]);
    batch_free(&bb);
    petl_model_free(m);
}

/* The real default checkpoint: two adapter tasks of different sizes and a head-only task. */
static void test_minilm(void) {
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", PETL_TEST_MODEL_DIR);
    if (access(cfg, R_OK) != 0) {
        test_skip("model", "minilm: no %s (run scripts/fetch-model)", cfg);
        return;
    }
    petl_error err = {0};
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(PETL_TEST_MODEL_DIR, &m, &err), &err);
    const petl_config *c = petl_model_config(m);
    petl_task_model *t[3];
    t[0] = make_task(m, PETL_TUNE_ADAPTER, 64, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 2,
                     21);
    t[1] =
        make_task(m, PETL_TUNE_ADAPTER, 8, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 3, 22);
    t[2] =
        make_task(m, PETL_TUNE_HEAD, 64, PETL_PLACE_BOTH, ~(uint64_t)0, PETL_ADAPTER_GELU, 1, 23);
    batch_buf bb;
    batch_fill(&bb, c, 9, 24, 5);
    const int row_of[9] = {2, 0, 1, 1, 0, 2, 0, 1, 2};
    double d = compare(m, t, 3, row_of, &bb, 64, 3);
    printf("minilm: 3 tasks, 9 rows: max |multi - single| = %.3g\n", d);
    CHECKF(d <= 1e-5, "max diff %g", d);
    for (int i = 0; i < 3; i++)
        petl_task_model_free(t[i]);
    batch_free(&bb);
    petl_model_free(m);
}

int main(void) {
    const char *dir = tiny_model_dir();
    test_tiny(dir);
    test_exec(dir);
    tiny_model_dir_remove();
    test_minilm();
    CHECK_DONE("test_multitask");
}
