/* The names of the tuning choices (src/options.c): every value's name parses back to it, the
 * library defaults have names, and a bad name is refused with a message naming it and the
 * accepted set, leaving the outputs untouched. */
#include "check.h"
#include "petl.h"

#include <stdio.h>
#include <string.h>

/* A refusal: PETL_ERR_ARG with every one of want[] in the message. */
static void refused(const char *text, petl_status s, const petl_error *err,
                    const char *const *want) {
    CHECKF(s == PETL_ERR_ARG, "'%s': got %s", text ? text : "(null)", petl_status_str(s));
    for (; *want; want++)
        CHECKF(strstr(err->msg, *want) != NULL, "'%s': message lacks '%s': %s",
               text ? text : "(null)", *want, err->msg);
}

static void test_tune(void) {
    size_t n = 0;
    for (; petl_tune_name((petl_tune)n); n++) {
        petl_tune t = (petl_tune)n, got = (petl_tune)-1;
        int k = -1;
        petl_error err = {0};
        char text[32];
        if (t == PETL_TUNE_TOP) {
            snprintf(text, sizeof text, "%s:3", petl_tune_name(t));
            CHECK_OK(petl_tune_parse(text, &got, &k, &err), &err);
            CHECK(got == PETL_TUNE_TOP && k == 3);
        } else {
            snprintf(text, sizeof text, "%s", petl_tune_name(t));
            CHECK_OK(petl_tune_parse(text, &got, &k, &err), &err);
            CHECKF(got == t && k == -1, "%s: %d, k %d", text, (int)got, k);
        }
    }
    CHECK(n == 5);
    CHECK(!strcmp(petl_tune_name(PETL_TUNE_LAYERNORM), "layernorm"));
    CHECK(petl_tune_name((petl_tune)-1) == NULL);

    petl_tune t = PETL_TUNE_HEAD;
    int k = 7;
    petl_error err = {0};
    CHECK_OK(petl_tune_parse("top:1", &t, &k, &err), &err);
    CHECK(t == PETL_TUNE_TOP && k == 1);
    CHECK_OK(petl_tune_parse("top:64", &t, &k, &err), &err);
    CHECK(k == PETL_TUNE_TOP_MAX);

    static const char *const unknown[] = {"'fancy'", "adapter, full, top:K, layernorm or head",
                                          NULL};
    static const char *const bad_k[] = {"top:K", "1..64", NULL};
    const char *bad[] = {"top:0", "top:65", "top:x", "top:", "top", "top:3x", "top:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        t = PETL_TUNE_HEAD;
        k = 7;
        petl_status s = petl_tune_parse(bad[i], &t, &k, &err);
        refused(bad[i], s, &err, bad_k);
        CHECKF(strstr(err.msg, bad[i]) != NULL, "%s: %s", bad[i], err.msg);
        CHECK(t == PETL_TUNE_HEAD && k == 7);
    }
    const char *words[] = {"fancy", "Adapter", "", " adapter", "adapter ", "tops:1", "full:2"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        t = PETL_TUNE_HEAD;
        petl_status s = petl_tune_parse(words[i], &t, &k, &err);
        refused(words[i], s, &err, unknown + 1);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", words[i]);
        CHECKF(strstr(err.msg, quoted) != NULL, "%s: %s", quoted, err.msg);
        CHECK(t == PETL_TUNE_HEAD);
    }
    refused("fancy", petl_tune_parse("fancy", &t, &k, &err), &err, unknown);
    refused(NULL, petl_tune_parse(NULL, &t, &k, NULL), &err, (const char *const[]){NULL});
}

static void test_adapter_act(void) {
    size_t n = 0;
    for (; petl_adapter_act_name((petl_adapter_act)n); n++) {
        petl_adapter_act got = (petl_adapter_act)-1;
        petl_error err = {0};
        CHECK_OK(petl_adapter_act_parse(petl_adapter_act_name((petl_adapter_act)n), &got, &err),
                 &err);
        CHECK(got == (petl_adapter_act)n);
    }
    CHECK(n == 3 && !strcmp(petl_adapter_act_name(PETL_ADAPTER_SWISH), "swish"));
    petl_adapter_act a = PETL_ADAPTER_RELU;
    petl_error err = {0};
    static const char *const want[] = {"adapter activation", "'tanh'", "gelu, relu or swish", NULL};
    refused("tanh", petl_adapter_act_parse("tanh", &a, &err), &err, want);
    CHECK(a == PETL_ADAPTER_RELU);
    refused("GELU", petl_adapter_act_parse("GELU", &a, &err), &err, want + 2);
}

static void test_placement(void) {
    size_t n = 0;
    for (; petl_placement_name((petl_adapter_placement)n); n++) {
        petl_adapter_placement got = (petl_adapter_placement)-1;
        petl_error err = {0};
        CHECK_OK(petl_placement_parse(petl_placement_name((petl_adapter_placement)n), &got, &err),
                 &err);
        CHECK(got == (petl_adapter_placement)n);
    }
    CHECK(n == 2 && !strcmp(petl_placement_name(PETL_PLACE_FFN), "ffn"));
    petl_adapter_placement p = PETL_PLACE_FFN;
    petl_error err = {0};
    static const char *const want[] = {"placement", "'attn'", "both or ffn", NULL};
    refused("attn", petl_placement_parse("attn", &p, &err), &err, want);
    CHECK(p == PETL_PLACE_FFN);
}

static void test_precision(void) {
    size_t n = 0;
    for (; petl_precision_name((petl_precision)n); n++) {
        petl_precision got = (petl_precision)-1;
        petl_error err = {0};
        CHECK_OK(petl_precision_parse(petl_precision_name((petl_precision)n), &got, &err), &err);
        CHECK(got == (petl_precision)n);
    }
    CHECK(n == 2 && !strcmp(petl_precision_name(PETL_FP32), "fp32"));
    petl_precision p = PETL_BF16;
    petl_error err = {0};
    static const char *const want[] = {"unknown precision 'fp16'", "fp32 or bf16", NULL};
    refused("fp16", petl_precision_parse("fp16", &p, &err), &err, want);
    CHECK(p == PETL_BF16);
}

/* The library's defaults are values with names (what `petl train --help` prints). */
static void test_defaults(void) {
    petl_tune_config tc;
    petl_tune_config_default(&tc, NULL);
    CHECK(petl_tune_name(tc.tune) && petl_adapter_act_name(tc.adapter_act) &&
          petl_placement_name(tc.placement));
}

int main(void) {
    test_tune();
    test_adapter_act();
    test_placement();
    test_precision();
    test_defaults();
    CHECK_DONE("test_options");
}
