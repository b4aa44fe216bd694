/* petl_task_model_disable_adapters (the ablation switch of `petl ablate`): disabling every
 * layer's adapters gives the model whose adapters are zero (base + LayerNorms + head), and
 * disabling none changes nothing, bit for bit. */
#include "check.h"
#include "taskmodel.h"

#include <math.h>

static void predict(petl_task_model *tm, const petl_batch *b, float *logits) {
    petl_error err = {0};
    petl_ctx *ctx = NULL;
    CHECK_OK(petl_predict_ctx_new(tm, b->batch, b->seq, &ctx, &err), &err);
    CHECK_OK(petl_task_predict(ctx, b, &(petl_predictions){.logits = logits}, &err), &err);
    petl_ctx_free(ctx);
}

int main(void) {
    petl_error err = {0};
    petl_model *m = NULL;
    CHECK_OK(petl_model_load(test_model_dir(), &m, &err), &err);
    petl_tune_config tc;
    petl_tune_config_default(&tc, petl_model_config(m));
    tc.adapter_size = 4;
    tc.adapter_init_sd = 0.5f; /* far from the identity, so that the adapters matter */
    tc.num_labels = 3;
    petl_task_model *tm = NULL;
    CHECK_OK(petl_task_model_new(m, &tc, 7, &tm, &err), &err);
    /* Nonzero up-projection biases too: the init leaves them 0. */
    for (size_t i = 0; i < petl_task_model_num_params(tm); i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        if (strstr(p->name, "adapter_up.bias"))
            for (int64_t k = 0; k < p->numel; k++)
                p->data[k] = 0.05f * (float)((k % 7) - 3);
    }
    enum { B = 2, T = 7 };
    int32_t ids[B * T], types[B * T] = {0};
    int lens[B] = {7, 5};
    for (int i = 0; i < B * T; i++)
        ids[i] = 1000 + (i * 131) % 5000;
    petl_batch b = {B, T, ids, types, lens};
    float ref[B * 3], none[B * 3], off[B * 3], zero[B * 3];
    predict(tm, &b, ref);
    petl_task_model_disable_adapters(tm, 0);
    CHECK(petl_task_model_disabled_adapters(tm) == 0);
    predict(tm, &b, none);
    CHECK(!memcmp(ref, none, sizeof ref));
    petl_task_model_disable_adapters(tm, ~0ull);
    predict(tm, &b, off);
    float d_ref = 0;
    for (int i = 0; i < B * 3; i++)
        d_ref = fmaxf(d_ref, fabsf(off[i] - ref[i]));
    CHECKF(d_ref > 1e-4f, "disabling the adapters changed nothing (%g)", d_ref);
    /* Zero adapters with every adapter switched back on. */
    petl_task_model_disable_adapters(tm, 0);
    for (size_t i = 0; i < petl_task_model_num_params(tm); i++) {
        const petl_param *p = petl_task_model_param(tm, i);
        if (strstr(p->name, "adapter_up")) memset(p->data, 0, (size_t)p->numel * sizeof(float));
    }
    predict(tm, &b, zero);
    float d = 0;
    for (int i = 0; i < B * 3; i++)
        d = fmaxf(d, fabsf(off[i] - zero[i]));
    printf("all adapters off vs zero adapters: max |diff| %.3g (vs adapters on: %.3g)\n", d, d_ref);
    CHECK(d <= 1e-5f);
    petl_task_model_free(tm);
    petl_model_free(m);
    CHECK_DONE("test_ablate");
}
