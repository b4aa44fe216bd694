/* config.json of an encoder checkpoint: the family's config-class defaults for missing fields,
 * and a clear refusal of every setting the encoder does not implement. Unknown fields are ignored,
 * as transformers does (configs carry many that do not change the computation). */
#include "arch.h"
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No real config.json comes near this; a bigger file is not a config. */
#define CONFIG_MAX_BYTES (1u << 20)
/* Any dimension beyond this is a typo or an attack, and keeps products in int64 comfortably. */
#define CONFIG_MAX_DIM (1 << 24)

void petl_config_default(petl_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->vocab_size = 30522;
    cfg->hidden_size = 768;
    cfg->num_layers = 12;
    cfg->num_heads = 12;
    cfg->intermediate_size = 3072;
    cfg->max_position_embeddings = 512;
    cfg->type_vocab_size = 2;
    cfg->pad_token_id = 0;
    cfg->layer_norm_eps = 1e-12f;
    cfg->hidden_dropout = 0.1f;
    cfg->attention_dropout = 0.1f;
    cfg->hidden_act = PETL_ACT_GELU;
    snprintf(cfg->model_type, sizeof cfg->model_type, "bert");
}

/* transformers' ACT2FN names that compute one of our three functions. The tanh-form GELUs
 * differ only in how the constant sqrt(2/pi) is written (gelu_fast: 0.7978845608), i.e. by
 * rounding. Clipped, quick (sigmoid) and other activations are refused. */
static const struct {
    const char *name;
    petl_act act;
} act_names[] = {
    {"gelu", PETL_ACT_GELU},
    {"gelu_python", PETL_ACT_GELU},
    {"gelu_new", PETL_ACT_GELU_NEW},
    {"gelu_pytorch_tanh", PETL_ACT_GELU_NEW},
    {"gelu_python_tanh", PETL_ACT_GELU_NEW},
    {"gelu_fast", PETL_ACT_GELU_NEW},
    {"gelu_accurate", PETL_ACT_GELU_NEW},
    {"relu", PETL_ACT_RELU},
};

/* The first of the act_names that computes a: "gelu", "gelu_new", "relu". */
const char *petl_act_name(petl_act a) {
    for (size_t i = 0; i < sizeof act_names / sizeof *act_names; i++)
        if (act_names[i].act == a) return act_names[i].name;
    return "?";
}

/* Reads an integer field in [lo, hi] into *out; absent keeps *out. */
static petl_status get_int(const json_t *root, const char *key, int lo, int hi, int *out,
                           const char *what, petl_error *err) {
    const json_t *v = json_object_get(root, key);
    if (!v) return PETL_OK;
    if (!json_is_integer(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" must be an integer", what, key);
    json_int_t x = json_integer_value(v);
    if (x < lo)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" is %lld, must be at least %d", what, key,
                         (long long)x, lo);
    if (x > hi)
        return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: \"%s\" is %lld, over petl's limit of %d",
                         what, key, (long long)x, hi);
    *out = (int)x;
    return PETL_OK;
}

/* Reads a number field (integer or real) with lo <= x < hi (lo < x when lo_open). */
static petl_status get_float(const json_t *root, const char *key, double lo, bool lo_open,
                             double hi, float *out, const char *what, petl_error *err) {
    const json_t *v = json_object_get(root, key);
    if (!v) return PETL_OK;
    if (!json_is_number(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" must be a number", what, key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || (lo_open && x == lo) || x >= hi)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" is %g, must be in %c%g, %g)", what, key,
                         x, lo_open ? '(' : '[', lo, hi);
    /* The check again in float: 1e-92 is positive as a double but 0 as a float. */
    if (lo_open && !((float)x > (float)lo))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" is %g, which is 0 as a float", what, key,
                         x);
    *out = (float)x;
    return PETL_OK;
}

/* A boolean field that must be false (absent counts as false). */
static petl_status get_false(const json_t *root, const char *key, const char *why, const char *what,
                             petl_error *err) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_false(v)) return PETL_OK;
    if (!json_is_true(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" must be true or false", what, key);
    return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: \"%s\" is true: %s", what, key, why);
}

/* A string field; absent leaves *out NULL. */
static petl_status get_string(const json_t *root, const char *key, const char **out,
                              const char *what, petl_error *err) {
    const json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v) return PETL_OK;
    if (!json_is_string(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" must be a string", what, key);
    *out = json_string_value(v);
    return PETL_OK;
}

/* model_type (absent: "bert", as in old checkpoints) must name a family petl runs (arch.c). */
static petl_status parse_model_type(const json_t *root, petl_config *c, const char *what,
                                    petl_error *err) {
    const char *s;
    petl_status st = get_string(root, "model_type", &s, what, err);
    if (st != PETL_OK) return st;
    if (!s) s = "bert";
    if (!petl_arch_find(s))
        return petl_fail(err, PETL_ERR_UNSUPPORTED, "%s: \"model_type\" is \"%.64s\": petl runs %s",
                         what, s, petl_arch_names());
    snprintf(c->model_type, sizeof c->model_type, "%s", s);
    return PETL_OK;
}

/* The defaults of the family's config class in transformers where they differ from BertConfig's
 * (a config.json may leave any field out). */
static void family_defaults(petl_config *c) {
    const char *t = c->model_type;
    if (!strcmp(t, "roberta") || !strcmp(t, "xlm-roberta") || !strcmp(t, "camembert")) {
        c->pad_token_id = 1;
    } else if (!strcmp(t, "electra")) {
        c->embedding_size = 128;
        c->hidden_size = 256;
        c->num_heads = 4;
        c->intermediate_size = 1024;
    } else if (!strcmp(t, "distilbert")) {
        c->num_layers = 6;
        c->type_vocab_size = 1; /* no table: every token is type 0 */
    } else if (!strcmp(t, "mpnet")) {
        c->vocab_size = 30527;
        c->pad_token_id = 1;
        c->type_vocab_size = 1; /* no table */
        c->rel_buckets = 32;
    }
}

/* The config.json key of each field: BERT's names, DistilBERT's own. */
typedef struct {
    const char *hidden, *layers, *heads, *inter, *act, *hdrop, *adrop;
} config_keys;

static const config_keys bert_keys = {
    "hidden_size", "num_hidden_layers",   "num_attention_heads",         "intermediate_size",
    "hidden_act",  "hidden_dropout_prob", "attention_probs_dropout_prob"};
static const config_keys distilbert_keys = {
    "dim", "n_layers", "n_heads", "hidden_dim", "activation", "dropout", "attention_dropout"};

static const config_keys *keys_of(const petl_config *c) {
    return strcmp(c->model_type, "distilbert") ? &bert_keys : &distilbert_keys;
}

static petl_status parse_act(const json_t *root, petl_config *cfg, const char *what,
                             petl_error *err) {
    const char *s, *key = keys_of(cfg)->act;
    petl_status st = get_string(root, key, &s, what, err);
    if (st != PETL_OK || !s) return st;
    for (size_t i = 0; i < sizeof act_names / sizeof act_names[0]; i++) {
        if (!strcmp(s, act_names[i].name)) {
            cfg->hidden_act = act_names[i].act;
            return PETL_OK;
        }
    }
    return petl_fail(err, PETL_ERR_UNSUPPORTED,
                     "%s: \"%s\" is \"%.64s\": petl implements gelu (gelu_python), "
                     "gelu_new (gelu_pytorch_tanh, gelu_python_tanh, gelu_fast, gelu_accurate) "
                     "and relu",
                     what, key, s);
}

/* Settings that change the computation in ways petl does not implement. */
static petl_status parse_refusals(const json_t *root, const char *what, petl_error *err) {
    const char *pos;
    petl_status st = get_string(root, "position_embedding_type", &pos, what, err);
    if (st != PETL_OK) return st;
    if (pos && strcmp(pos, "absolute"))
        return petl_fail(err, PETL_ERR_UNSUPPORTED,
                         "%s: \"position_embedding_type\" is \"%.64s\": only \"absolute\" is "
                         "supported",
                         what, pos);
    st = get_false(root, "is_decoder", "petl runs encoders only", what, err);
    if (st == PETL_OK)
        st = get_false(root, "add_cross_attention", "petl runs encoders only", what, err);
    return st;
}

static petl_status parse_sizes(const json_t *root, petl_config *c, const char *what,
                               petl_error *err) {
    const config_keys *k = keys_of(c);
    const petl_arch *a = petl_arch_find(c->model_type);
    const struct {
        const char *key;
        int *dst;
    } dims[] = {
        {"vocab_size", &c->vocab_size},
        {k->hidden, &c->hidden_size},
        {k->layers, &c->num_layers},
        {k->heads, &c->num_heads},
        {k->inter, &c->intermediate_size},
        {"max_position_embeddings", &c->max_position_embeddings},
        /* families without a token-type table keep their 1 */
        {a->emb[PETL_E_TYPE] ? "type_vocab_size" : NULL, &c->type_vocab_size},
        {a->emb_project_w ? "embedding_size" : NULL, &c->embedding_size},
        {a->rel_bias ? "relative_attention_num_buckets" : NULL, &c->rel_buckets},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        if (!dims[i].key) continue;
        petl_status st = get_int(root, dims[i].key, 1, CONFIG_MAX_DIM, dims[i].dst, what, err);
        if (st != PETL_OK) return st;
    }
    if (c->hidden_size % c->num_heads != 0)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" %d is not a multiple of \"%s\" %d", what,
                         k->hidden, c->hidden_size, k->heads, c->num_heads);

    /* null means "no padding token" to transformers; petl takes the pad id from the vocab (the
     * family's default stays, and must fit the vocabulary too: RoBERTa's and MPNet's is 1). */
    petl_status st = PETL_OK;
    if (!json_is_null(json_object_get(root, "pad_token_id")))
        st = get_int(root, "pad_token_id", 0, CONFIG_MAX_DIM, &c->pad_token_id, what, err);
    if (st == PETL_OK && c->pad_token_id >= c->vocab_size)
        st = petl_fail(err, PETL_ERR_FORMAT, "%s: \"pad_token_id\" %d is not below vocab_size %d",
                       what, c->pad_token_id, c->vocab_size);
    return st;
}

static petl_status parse_root(const json_t *root, petl_config *c, const char *what,
                              petl_error *err) {
    if (!json_is_object(root))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: expected a JSON object", what);
    petl_status st = parse_model_type(root, c, what, err);
    if (st != PETL_OK) return st;
    family_defaults(c);
    const config_keys *k = keys_of(c);
    st = parse_refusals(root, what, err);
    if (st == PETL_OK) st = parse_act(root, c, what, err);
    if (st == PETL_OK) st = parse_sizes(root, c, what, err);
    /* DistilBERT's LayerNorms have a fixed eps of 1e-12 (its config has no field for it) */
    if (st == PETL_OK && k == &bert_keys)
        st = get_float(root, "layer_norm_eps", 0, true, 1, &c->layer_norm_eps, what, err);
    if (st == PETL_OK) st = get_float(root, k->hdrop, 0, false, 1, &c->hidden_dropout, what, err);
    if (st == PETL_OK)
        st = get_float(root, k->adrop, 0, false, 1, &c->attention_dropout, what, err);
    return st;
}

petl_status petl_config_parse(const char *json, size_t len, const char *what, petl_config *cfg,
                              petl_error *err) {
    if (!cfg || (!json && len))
        return petl_fail(err, PETL_ERR_ARG, "petl_config_parse: NULL text or output");
    if (!what) what = "<config>";
    json_error_t je;
    json_t *root = json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: line %d, column %d: invalid JSON: %s", what,
                         je.line, je.column, je.text);
    petl_config c; /* filled aside so that *cfg is untouched on failure */
    petl_config_default(&c);
    petl_status st = parse_root(root, &c, what, err);
    json_decref(root);
    if (st == PETL_OK) *cfg = c;
    return st;
}

petl_status petl_config_load(const char *path, petl_config *cfg, petl_error *err) {
    if (!path || !cfg) return petl_fail(err, PETL_ERR_ARG, "petl_config_load: NULL argument");
    char *text;
    size_t len;
    petl_status st = petl_read_file(path, CONFIG_MAX_BYTES, &text, &len, err);
    if (st != PETL_OK) return st;
    st = petl_config_parse(text, len, path, cfg, err);
    free(text);
    return st;
}
