/* The usage example at the top of include/petl.h, compiled and run: a renamed or re-typed
 * function breaks this build, and the test checks that every line of the header's example is a
 * line of usage() below, so the two cannot drift apart. It trains on a few SST-2-style rows. */
#include "check.h"
#include "petl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int fail(const petl_error *err) {
    fprintf(stderr, "usage example: %s\n", err->msg);
    return 1;
}

/* --- the example (keep equal to include/petl.h) --- */
/* clang-format off */
static int usage(const char *model_dir, const char *train_tsv) {
    petl_error err;
    petl_model *base = NULL; petl_tokenizer *tok = NULL; petl_task task;
    petl_dataset *train = NULL; petl_batcher *b = NULL; petl_task_model *tm = NULL;
    if (petl_model_load(model_dir, &base, &err) || petl_tokenizer_load(model_dir, &tok, &err) ||
        petl_task_lookup("sst2", &task, &err) ||
        petl_dataset_load(&task, train_tsv, NULL, 0, &train, &err) ||
        petl_batcher_new(tok, 128, &b, &err) || petl_batcher_add_dataset(b, train, &err))
        return fail(&err);
    petl_tune_config tc; // adapters of size 64 after attention and feed-forward, 2 labels
    petl_tune_config_default(&tc, petl_model_config(base));
    petl_train_opts opts; // 3 epochs, lr 3e-4, batch 32; no dev set: keeps the last epoch
    petl_train_opts_default(&opts);
    petl_train_result res;
    if (petl_task_model_new(base, &tc, 42, &tm, &err) ||
        petl_train(tm, &task, b, NULL, &opts, NULL, NULL, &res, &err))
        return fail(&err);
    float logits[2]; // the scores of labels "0" and "1"
    petl_batcher_clear(b); // now the texts to classify
    if (petl_batcher_add(b, "a gripping film", 15, NULL, 0, -1, 0, &err) ||
        petl_predict_all(tm, NULL, b, 1, &(petl_predictions){.logits = logits}, &err))
        return fail(&err);
    printf("positive: %s\n", logits[1] > logits[0] ? "yes" : "no");
    petl_task_model_free(tm); petl_batcher_free(b); petl_dataset_free(train);
    petl_tokenizer_free(tok); petl_model_free(base);
    return 0;
}
/* clang-format on */
/* --- end of the example --- */

/* Every line of the example in include/petl.h (" *     CODE") must be a line of usage() above,
 * and usage() must have no other lines. */
static void check_header_matches(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/../include/petl.h", PETL_TEST_SRC_DIR);
    FILE *h = fopen(path, "r");
    snprintf(path, sizeof path, "%s/test_usage.c", PETL_TEST_SRC_DIR);
    FILE *self = fopen(path, "r");
    CHECK(h && self);
    static char src[1 << 16];
    size_t n = fread(src, 1, sizeof src - 1, self);
    src[n] = '\0';
    const char *begin = strstr(src, "/* --- the example"), *end = strstr(src, "/* --- end of");
    CHECK(begin && end && begin < end);
    char line[512];
    int in = 0, lines = 0;
    while (fgets(line, sizeof line, h)) {
        if (strstr(line, "Usage (tests/test_usage.c")) in = 1;
        if (in && strstr(line, "*/")) break;
        const char *code = in ? strstr(line, " *     ") : NULL;
        if (code != line) continue;
        code += 7;
        char want[520];
        snprintf(want, sizeof want, "\n    %s", code); /* one level deeper in usage() */
        const char *at = strstr(begin, want);
        CHECKF(at && at < end, "include/petl.h's example line is not in usage(): %s", code);
        lines++;
    }
    CHECKF(lines >= 15, "found only %d lines of the example in include/petl.h", lines);
    /* ... and no more lines in usage() than in the header: its body, up to "return 0;". */
    const char *body = strchr(strstr(begin, "static int usage("), '\n');
    const char *ret = strstr(begin, "\n    return 0;\n}");
    CHECK(body && ret && ret < end);
    int body_lines = 0;
    for (const char *c = body; c < ret; c++)
        body_lines += *c == '\n';
    CHECKF(body_lines == lines, "usage() has %d lines, include/petl.h's example %d", body_lines,
           lines);
    fclose(h);
    fclose(self);
}

int main(void) {
    check_header_matches();
    char model[1024], cfg[1100];
    snprintf(model, sizeof model, "%s", test_model_dir());
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    if (access(cfg, R_OK) != 0) {
        test_skip("model", "no model at %s", model);
        CHECK_DONE("test_usage");
    }
    char dir[] = "/tmp/petl-test-usage-XXXXXX";
    CHECK(mkdtemp(dir));
    char tsv[64];
    snprintf(tsv, sizeof tsv, "%s/train.tsv", dir);
    FILE *f = fopen(tsv, "w");
    CHECK(f);
    fputs("sentence\tlabel\n", f);
    static const char *const rows[] = {
        "a gripping , funny film\t1",   "dull and lifeless\t0",    "a wonderful cast\t1",
        "the plot makes no sense\t0",   "warm and moving\t1",      "tedious beyond words\t0",
        "one of the best this year\t1", "a waste of two hours\t0",
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        fprintf(f, "%s\n", rows[i]);
    CHECK(fclose(f) == 0);
    CHECK(usage(model, tsv) == 0);
    unlink(tsv);
    rmdir(dir);
    CHECK_DONE("test_usage");
}
