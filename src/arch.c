/* The encoder families petl runs (see arch.h): each one's key names, as transformers saves them,
 * and the few points where its forward differs from BERT's. */
#include "arch.h"

#include "petl.h"

#include <math.h>
#include <string.h>

/* BERT's layer below "encoder.layer.%d.", which RoBERTa, XLM-R and ELECTRA share. */
#define BERT_LAYER_KEYS                                                                            \
    {                                                                                              \
        "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight", \
            "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",   \
            "attention.output.dense.weight", "attention.output.dense.bias",                        \
            "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",                \
            "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",         \
            "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"                \
    }
#define BERT_EMB                                                                                   \
    {                                                                                              \
        "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",              \
            "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",              \
            "embeddings.LayerNorm.bias"                                                            \
    }

const petl_arch petl_arch_bert = {
    .model_type = "bert",
    .prefix = "bert.",
    .emb = BERT_EMB,
    .layer = "encoder.layer.%d.",
    .layer_stem = "encoder.layer.",
    .layer_keys = BERT_LAYER_KEYS,
    .adapter_site = {"attention.output", "output"},
    .pooler_w = "pooler.dense.weight",
    .pooler_b = "pooler.dense.bias",
    .token_types = true,
};

/* RoBERTa: BERT's layout, positions numbered from padding_idx + 1, a one-row token-type table
 * that every token reads (its tokenizers give no token types). XLM-R and CamemBERT are RoBERTa's
 * modules under RoBERTa's prefix: the same description under their model_type. */
#define ROBERTA_ARCH(type)                                                                         \
    {                                                                                              \
        .model_type = type, .prefix = "roberta.", .emb = BERT_EMB, .layer = "encoder.layer.%d.",   \
        .layer_stem = "encoder.layer.", .layer_keys = BERT_LAYER_KEYS,                             \
        .adapter_site = {"attention.output", "output"}, .pooler_w = "pooler.dense.weight",         \
        .pooler_b = "pooler.dense.bias", .pos_after_pad = true,                                    \
    }

static const petl_arch arch_roberta = ROBERTA_ARCH("roberta");
static const petl_arch arch_xlm_roberta = ROBERTA_ARCH("xlm-roberta");
static const petl_arch arch_camembert = ROBERTA_ARCH("camembert");

/* ELECTRA (the discriminator's encoder): BERT's layer, embeddings of their own width projected
 * to the hidden size, no pooler. */
static const petl_arch arch_electra = {
    .model_type = "electra",
    .prefix = "electra.",
    .emb = BERT_EMB,
    .emb_project_w = "embeddings_project.weight",
    .emb_project_b = "embeddings_project.bias",
    .layer = "encoder.layer.%d.",
    .layer_stem = "encoder.layer.",
    .layer_keys = BERT_LAYER_KEYS,
    .adapter_site = {"attention.output", "output"},
    .token_types = true,
};

/* DistilBERT: its own names, no token types, no pooler, no dropout on the attention output. */
static const petl_arch arch_distilbert = {
    .model_type = "distilbert",
    .prefix = "distilbert.",
    .emb = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight", NULL,
            "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"},
    .layer = "transformer.layer.%d.",
    .layer_stem = "transformer.layer.",
    .layer_keys = {"attention.q_lin.weight", "attention.k_lin.weight", "attention.v_lin.weight",
                   "attention.q_lin.bias", "attention.k_lin.bias", "attention.v_lin.bias",
                   "attention.out_lin.weight", "attention.out_lin.bias", "sa_layer_norm.weight",
                   "sa_layer_norm.bias", "ffn.lin1.weight", "ffn.lin1.bias", "ffn.lin2.weight",
                   "ffn.lin2.bias", "output_layer_norm.weight", "output_layer_norm.bias"},
    .adapter_site = {"attention", "ffn"},
    .no_attn_out_dropout = true,
};

/* MPNet: positions from 2 (its padding index, 1, + 1), no token types, and a relative position bias
 * added to every layer's attention scores from one table shared by the layers. */
static const petl_arch arch_mpnet = {
    .model_type = "mpnet",
    .prefix = "mpnet.",
    .emb = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight", NULL,
            "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"},
    .rel_bias = "encoder.relative_attention_bias.weight",
    .layer = "encoder.layer.%d.",
    .layer_stem = "encoder.layer.",
    .layer_keys = {"attention.attn.q.weight", "attention.attn.k.weight", "attention.attn.v.weight",
                   "attention.attn.q.bias", "attention.attn.k.bias", "attention.attn.v.bias",
                   "attention.attn.o.weight", "attention.attn.o.bias", "attention.LayerNorm.weight",
                   "attention.LayerNorm.bias", "intermediate.dense.weight",
                   "intermediate.dense.bias", "output.dense.weight", "output.dense.bias",
                   "output.LayerNorm.weight", "output.LayerNorm.bias"},
    .adapter_site = {"attention", "output"},
    .pooler_w = "pooler.dense.weight",
    .pooler_b = "pooler.dense.bias",
    .pos_start = 2,
};

static const petl_arch *const families[] = {&petl_arch_bert, &arch_roberta, &arch_xlm_roberta,
                                            &arch_camembert, &arch_electra, &arch_distilbert,
                                            &arch_mpnet};

const petl_arch *petl_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof families / sizeof *families; i++)
        if (!strcmp(families[i]->model_type, model_type)) return families[i];
    return NULL;
}

const char *petl_arch_names(void) {
    return "bert, roberta, xlm-roberta, camembert, electra, distilbert, mpnet";
}

int petl_rel_bucket(int rel, int num_buckets, int max_distance) {
    int ret = 0, n = -rel;
    const int half = num_buckets / 2, max_exact = half / 2;
    if (n < 0) {
        ret = half;
        n = -n;
    }
    if (n < max_exact) return ret + n;
    /* float32 throughout, the constant log(max_distance / max_exact) rounded from double, as
     * torch computes it */
    const float q = logf((float)n / (float)max_exact) /
                    (float)log((double)max_distance / max_exact) * (float)(half - max_exact);
    const int large = max_exact + (int)q;
    return ret + (large < half - 1 ? large : half - 1);
}

bool petl_family_keys_get(const char *model_type, petl_family_keys *out) {
    const petl_arch *a = model_type ? petl_arch_find(model_type) : NULL;
    if (!a || !out) return false;
    *out = (petl_family_keys){.prefix = a->prefix,
                              .layers = a->layer_stem,
                              .emb = "embeddings.",
                              .word_emb = a->emb[PETL_E_WORD],
                              .emb_ln_w = a->emb[PETL_E_LN_W],
                              .pooler_w = a->pooler_w,
                              .extra = {a->emb_project_w ? "embeddings_project." : a->rel_bias}};
    return true;
}
