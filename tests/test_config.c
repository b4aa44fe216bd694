/* config.json: BertConfig defaults, the real model's file, and every refusal with a message
 * that names the source and the field. */
#include "check.h"
#include "petl.h"

#include <stdio.h>
#include <string.h>

/* Parses json and checks it is refused with code and a message naming "cfg.json" and detail;
 * the output config must be left untouched. */
static void refused(const char *json, petl_status code, const char *detail) {
    petl_config c;
    memset(&c, 0x5a, sizeof c);
    petl_error err = {0};
    petl_status s = petl_config_parse(json, strlen(json), "cfg.json", &c, &err);
    CHECKF(s == code, "%s: got %s (%s), want %s", json, petl_status_str(s), err.msg,
           petl_status_str(code));
    CHECKF(!strncmp(err.msg, "cfg.json", 8), "message does not name the file: %s", err.msg);
    CHECKF(strstr(err.msg, detail) != NULL, "message lacks '%s': %s", detail, err.msg);
    unsigned char *p = (unsigned char *)&c;
    for (size_t i = 0; i < sizeof c; i++)
        CHECK(p[i] == 0x5a);
}

static petl_config parsed(const char *json) {
    petl_config c;
    petl_error err;
    CHECK_OK(petl_config_parse(json, strlen(json), "cfg.json", &c, &err), &err);
    return c;
}

static void test_defaults(void) {
    petl_config d;
    petl_config_default(&d);
    CHECK(d.vocab_size == 30522 && d.hidden_size == 768 && d.num_layers == 12);
    CHECK(d.num_heads == 12 && d.intermediate_size == 3072 && d.max_position_embeddings == 512);
    CHECK(d.type_vocab_size == 2 && d.pad_token_id == 0 && d.layer_norm_eps == 1e-12f);
    CHECK(d.hidden_dropout == 0.1f && d.attention_dropout == 0.1f);
    CHECK(d.hidden_act == PETL_ACT_GELU && !strcmp(d.model_type, "bert"));
    petl_config e = parsed("{}");
    CHECK(!memcmp(&d, &e, sizeof d));
    /* Unknown fields are ignored, missing ones keep the defaults. */
    e = parsed("{\"hidden_size\": 128, \"num_attention_heads\": 2, \"architectures\": [\"X\"],"
               " \"torch_dtype\": \"float16\", \"pad_token_id\": null}");
    CHECK(e.hidden_size == 128 && e.num_heads == 2 && e.num_layers == 12 && e.pad_token_id == 0);
    CHECK(!strcmp(petl_act_name(PETL_ACT_GELU), "gelu"));
    CHECK(!strcmp(petl_act_name(PETL_ACT_GELU_NEW), "gelu_new"));
    CHECK(!strcmp(petl_act_name(PETL_ACT_RELU), "relu"));
}

static void test_real_model(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", test_model_dir());
    petl_config c;
    petl_error err;
    CHECK_OK(petl_config_load(path, &c, &err), &err);
    CHECK(c.vocab_size == 30522 && c.hidden_size == 384 && c.num_layers == 6);
    CHECK(c.num_heads == 12 && c.intermediate_size == 1536 && c.max_position_embeddings == 512);
    CHECK(c.type_vocab_size == 2 && c.hidden_act == PETL_ACT_GELU && c.layer_norm_eps == 1e-12f);
    CHECK(petl_config_load("/nonexistent/config.json", &c, &err) == PETL_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/config.json") != NULL);
}

static void test_activations(void) {
    static const struct {
        const char *name;
        petl_act act;
    } ok[] = {
        {"gelu", PETL_ACT_GELU},
        {"gelu_python", PETL_ACT_GELU},
        {"gelu_new", PETL_ACT_GELU_NEW},
        {"gelu_pytorch_tanh", PETL_ACT_GELU_NEW},
        {"gelu_fast", PETL_ACT_GELU_NEW},
        {"gelu_accurate", PETL_ACT_GELU_NEW},
        {"gelu_python_tanh", PETL_ACT_GELU_NEW},
        {"relu", PETL_ACT_RELU},
    };
    char json[128];
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(json, sizeof json, "{\"hidden_act\": \"%s\"}", ok[i].name);
        CHECK(parsed(json).hidden_act == ok[i].act);
    }
    static const char *const bad[] = {"quick_gelu", "gelu_10", "silu", "swish", "tanh", "GELU", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(json, sizeof json, "{\"hidden_act\": \"%s\"}", bad[i]);
        refused(json, PETL_ERR_UNSUPPORTED, "\"hidden_act\" is");
    }
    refused("{\"hidden_act\": {\"fn\": 1}}", PETL_ERR_FORMAT, "\"hidden_act\" must be a string");
}

static void test_refusals(void) {
    refused("{\"position_embedding_type\": \"relative_key\"}", PETL_ERR_UNSUPPORTED,
            "\"position_embedding_type\" is \"relative_key\"");
    refused("{\"position_embedding_type\": \"relative_key_query\"}", PETL_ERR_UNSUPPORTED,
            "only \"absolute\"");
    refused("{\"position_embedding_type\": null}", PETL_ERR_FORMAT, "position_embedding_type");
    CHECK(
        parsed("{\"position_embedding_type\": \"absolute\", \"is_decoder\": false}").hidden_size ==
        768);
    refused("{\"is_decoder\": true}", PETL_ERR_UNSUPPORTED, "\"is_decoder\" is true");
    refused("{\"add_cross_attention\": true}", PETL_ERR_UNSUPPORTED, "\"add_cross_attention\"");
    refused("{\"is_decoder\": 1}", PETL_ERR_FORMAT, "\"is_decoder\" must be true or false");
    refused("{\"model_type\": \"deberta-v2\"}", PETL_ERR_UNSUPPORTED,
            "\"model_type\" is \"deberta-v2\": petl runs bert, roberta, xlm-roberta, camembert, "
            "electra, distilbert, mpnet");
    refused("{\"model_type\": \"BERT\"}", PETL_ERR_UNSUPPORTED, "petl runs bert,");
    refused("{\"model_type\": 3}", PETL_ERR_FORMAT, "\"model_type\" must be a string");
}

/* Each family's config class defaults and key names. */
static void test_families(void) {
    petl_config c = parsed("{\"model_type\": \"roberta\", \"type_vocab_size\": 1}");
    CHECK(!strcmp(c.model_type, "roberta") && c.pad_token_id == 1 && c.type_vocab_size == 1);
    CHECK(c.embedding_size == 0 && c.rel_buckets == 0);
    c = parsed("{\"model_type\": \"xlm-roberta\", \"vocab_size\": 250002}");
    CHECK(!strcmp(c.model_type, "xlm-roberta") && c.vocab_size == 250002 && c.pad_token_id == 1);
    /* ElectraConfig's defaults: the small discriminator's shape */
    c = parsed("{\"model_type\": \"electra\"}");
    CHECK(c.embedding_size == 128 && c.hidden_size == 256 && c.num_heads == 4 &&
          c.intermediate_size == 1024);
    c = parsed("{\"model_type\": \"electra\", \"embedding_size\": 768, \"hidden_size\": 768}");
    CHECK(c.embedding_size == 768 && c.hidden_size == 768);
    /* DistilBERT's own names; its LayerNorm eps is fixed (a layer_norm_eps key is not read) */
    c = parsed("{\"model_type\": \"distilbert\", \"dim\": 64, \"n_layers\": 3, \"n_heads\": 4,"
               " \"hidden_dim\": 100, \"activation\": \"relu\", \"dropout\": 0.2,"
               " \"attention_dropout\": 0.3, \"hidden_size\": 999, \"layer_norm_eps\": 0.5}");
    CHECK(c.hidden_size == 64 && c.num_layers == 3 && c.num_heads == 4 &&
          c.intermediate_size == 100 && c.hidden_act == PETL_ACT_RELU);
    CHECK(c.hidden_dropout == 0.2f && c.attention_dropout == 0.3f && c.layer_norm_eps == 1e-12f);
    CHECK(c.type_vocab_size == 1 && parsed("{\"model_type\": \"distilbert\"}").num_layers == 6);
    refused("{\"model_type\": \"distilbert\", \"dim\": 30, \"n_heads\": 4}", PETL_ERR_FORMAT,
            "\"dim\" 30 is not a multiple of \"n_heads\" 4");
    refused("{\"model_type\": \"distilbert\", \"activation\": \"tanh\"}", PETL_ERR_UNSUPPORTED,
            "\"activation\" is \"tanh\"");
    c = parsed("{\"model_type\": \"mpnet\"}");
    CHECK(c.vocab_size == 30527 && c.pad_token_id == 1 && c.rel_buckets == 32);
    CHECK(
        parsed("{\"model_type\": \"mpnet\", \"relative_attention_num_buckets\": 64}").rel_buckets ==
        64);
    /* the family's default pad id must fit the vocabulary too (found by fuzz_config) */
    refused("{\"model_type\": \"camembert\", \"vocab_size\": 1, \"pad_token_id\": null}",
            PETL_ERR_FORMAT, "\"pad_token_id\" 1 is not below vocab_size 1");
    CHECK(parsed("{\"vocab_size\": 1, \"pad_token_id\": null}").pad_token_id == 0);
    /* a field of another family is not read */
    CHECK(parsed("{\"relative_attention_num_buckets\": 64}").rel_buckets == 0);
}

static void test_sizes(void) {
    static const char *const keys[] = {
        "vocab_size",          "hidden_size",       "num_hidden_layers",
        "num_attention_heads", "intermediate_size", "max_position_embeddings",
        "type_vocab_size",
    };
    char json[128], detail[64];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        snprintf(detail, sizeof detail, "\"%s\"", keys[i]);
        snprintf(json, sizeof json, "{\"%s\": 0}", keys[i]);
        refused(json, PETL_ERR_FORMAT, detail);
        snprintf(json, sizeof json, "{\"%s\": -3}", keys[i]);
        refused(json, PETL_ERR_FORMAT, "must be at least 1");
        snprintf(json, sizeof json, "{\"%s\": 768.0}", keys[i]);
        refused(json, PETL_ERR_FORMAT, "must be an integer");
        snprintf(json, sizeof json, "{\"%s\": \"768\"}", keys[i]);
        refused(json, PETL_ERR_FORMAT, detail);
        snprintf(json, sizeof json, "{\"%s\": 9223372036854775807}", keys[i]);
        refused(json, PETL_ERR_UNSUPPORTED, "over petl's limit");
    }
    refused("{\"hidden_size\": 100, \"num_attention_heads\": 12}", PETL_ERR_FORMAT,
            "\"hidden_size\" 100 is not a multiple of \"num_attention_heads\" 12");
}

static void test_numbers(void) {
    petl_config c = parsed("{\"layer_norm_eps\": 1e-5, \"hidden_dropout_prob\": 0,"
                           " \"attention_probs_dropout_prob\": 0.0}");
    CHECK(c.layer_norm_eps == 1e-5f && c.hidden_dropout == 0 && c.attention_dropout == 0);
    refused("{\"layer_norm_eps\": 0}", PETL_ERR_FORMAT, "\"layer_norm_eps\" is 0");
    refused("{\"layer_norm_eps\": -1e-12}", PETL_ERR_FORMAT, "\"layer_norm_eps\"");
    refused("{\"layer_norm_eps\": 1e-92}", PETL_ERR_FORMAT, "0 as a float");
    refused("{\"layer_norm_eps\": \"1e-12\"}", PETL_ERR_FORMAT, "must be a number");
    refused("{\"hidden_dropout_prob\": 1}", PETL_ERR_FORMAT, "\"hidden_dropout_prob\"");
    refused("{\"attention_probs_dropout_prob\": -0.1}", PETL_ERR_FORMAT,
            "\"attention_probs_dropout_prob\"");
    refused("{\"pad_token_id\": -1}", PETL_ERR_FORMAT, "\"pad_token_id\"");
    refused("{\"vocab_size\": 100, \"pad_token_id\": 100}", PETL_ERR_FORMAT,
            "\"pad_token_id\" 100 is not below vocab_size 100");
    CHECK(parsed("{\"pad_token_id\": 1}").pad_token_id == 1);
}

static void test_bad_json(void) {
    refused("", PETL_ERR_FORMAT, "invalid JSON");
    refused("[1, 2]", PETL_ERR_FORMAT, "expected a JSON object");
    refused("{\"hidden_size\": 768,}", PETL_ERR_FORMAT, "line 1");
    refused("{\"hidden_size\": 768, \"hidden_size\": 384}", PETL_ERR_FORMAT, "duplicate");
    refused("{\"model_type\": \"bert\"} x", PETL_ERR_FORMAT, "invalid JSON");
    refused("{\"model_type\": \"b\xff\"}", PETL_ERR_FORMAT, "invalid JSON");
    petl_config c;
    petl_error err;
    CHECK(petl_config_parse(NULL, 3, "x", &c, &err) == PETL_ERR_ARG);
    CHECK(petl_config_parse("{}", 2, "x", NULL, &err) == PETL_ERR_ARG);
    CHECK(petl_config_parse("{}", 2, NULL, &c, NULL) == PETL_OK); /* err may be NULL */
}

int main(void) {
    test_defaults();
    test_real_model();
    test_activations();
    test_refusals();
    test_families();
    test_sizes();
    test_numbers();
    test_bad_json();
    CHECK_DONE("test_config");
}
