/* The frozen encoder's parameters: one float allocation with named pointers into it (the layout
 * of karpathy/llm.c). Internal to the library: src/forward.c runs it, task models (src/taskmodel.c)
 * point into it for every tensor they do not tune. */
#ifndef PETL_MODEL_H
#define PETL_MODEL_H

#include "arch.h"
#include "kernels.h"
#include "petl.h"

/* One transformer layer (post-LN, as every family petl runs). H = hidden, I = intermediate. Linear
 * weights are kept as stored by PyTorch, [out, in], so a forward is out = inp . W^T + b. */
typedef struct {
    /* Q, K and V rows stacked into one [3H, H] matrix, so that one GEMM projects all three:
     * qkv_w + 0 = query.weight, + H*H = key.weight, + 2*H*H = value.weight. */
    float *qkv_w;      /* [3H, H] */
    float *qkv_b;      /* [3H] */
    float *attn_out_w; /* [H, H]  attention.output.dense */
    float *attn_out_b; /* [H] */
    float *ln1_w;      /* [H]     attention.output.LayerNorm */
    float *ln1_b;      /* [H] */
    float *ffn_in_w;   /* [I, H]  intermediate.dense */
    float *ffn_in_b;   /* [I] */
    float *ffn_out_w;  /* [H, I]  output.dense */
    float *ffn_out_b;  /* [H] */
    float *ln2_w;      /* [H]     output.LayerNorm */
    float *ln2_b;      /* [H] */
} petl_layer_params;

/* A layer's weights packed as bf16 (petl_model_set_precision): the forward packs (W as
 * [out, in]) and, for training, the backward packs (W^T, for input gradients). */
typedef struct {
    petl_bf16_mat qkv, attn_out, ffn_in, ffn_out;         /* forward */
    petl_bf16_mat qkv_t, attn_out_t, ffn_in_t, ffn_out_t; /* backward: data NULL when unpacked */
} petl_layer_bf16;

struct petl_model {
    petl_config cfg;
    const petl_arch *arch; /* tensor names and forward differences of its family */
    bool has_pooler;
    float *mem; /* [num_params]: every tensor below points into this one allocation */
    int64_t num_params;
    float *word_emb;           /* [V, E] */
    float *pos_emb;            /* [P, E]  P = max_position_embeddings */
    float *type_emb;           /* [T, E]  T = type_vocab_size; NULL: the family has none */
    float *emb_ln_w;           /* [E]     E = embedding_size (= H but in ELECTRA) */
    float *emb_ln_b;           /* [E] */
    float *emb_proj_w;         /* [H, E]  ELECTRA when E != H, else NULL */
    float *emb_proj_b;         /* [H] */
    float *rel_bias;           /* [buckets, num_heads]  MPNet's relative position bias, else NULL */
    int pos_offset;            /* position id of the first token */
    petl_layer_params *layers; /* [num_layers] */
    float *pool_w;             /* [H, H]  NULL without a pooler */
    float *pool_b;             /* [H] */
    petl_layer_bf16 *bf16;     /* [num_layers] with PETL_BF16, else NULL */
    char *config_path;         /* the config.json it was loaded from, for messages; or NULL */
};

/* PETL_ERR_ARG naming the model's config.json when max_len is over its position embeddings. */
petl_status petl_model_check_max_len(const petl_model *m, int max_len, petl_error *err);

/* Checks a padded batch against a model's config and a context's limits (max_batch rows of at
 * most max_len positions): arrays present, sizes in range, 1 <= lengths[r] <= seq, every id and
 * token type (when the family reads them) in range for the real tokens, and for the padding too
 * when check_padding (callers that compute every position read them). PETL_ERR_ARG naming the row
 * and position. Shared by the inference encoder and the task model. */
petl_status petl_batch_check(const petl_model *m, int max_batch, int max_len, const petl_batch *b,
                             bool check_padding, petl_error *err);

#endif
