/* What differs between encoder families, in one place: the checkpoint's tensor names (which the
 * loader reads and a task model's trainable tensors are named after) and the few points where
 * their forwards differ. src/forward.c runs every family from this description; adding a family
 * is one more petl_arch in src/arch.c (plus its tokenizer). Internal to the library. */
#ifndef PETL_ARCH_H
#define PETL_ARCH_H

#include <stdbool.h>

/* The tensors of one encoder layer, in the order of the loader's and the task model's
 * parameter blocks (query, key and value back to back form the fused [3H, H] QKV matrix). */
typedef enum {
    PETL_L_Q_W,
    PETL_L_K_W,
    PETL_L_V_W,
    PETL_L_Q_B,
    PETL_L_K_B,
    PETL_L_V_B,
    PETL_L_ATTN_OUT_W,
    PETL_L_ATTN_OUT_B,
    PETL_L_LN1_W,
    PETL_L_LN1_B,
    PETL_L_FFN_IN_W,
    PETL_L_FFN_IN_B,
    PETL_L_FFN_OUT_W,
    PETL_L_FFN_OUT_B,
    PETL_L_LN2_W,
    PETL_L_LN2_B,
    PETL_L_COUNT
} petl_layer_tensor;

/* The embedding tensors (the type table is absent, NULL, in families without one). */
typedef enum {
    PETL_E_WORD,
    PETL_E_POS,
    PETL_E_TYPE,
    PETL_E_LN_W,
    PETL_E_LN_B,
    PETL_E_COUNT
} petl_emb_tensor;

typedef struct {
    const char *model_type; /* config.json "model_type" */
    const char *prefix;     /* key prefix of the encoder in a task checkpoint ("bert.") */
    /* Keys below the prefix. */
    const char *emb[PETL_E_COUNT];             /* emb[PETL_E_TYPE] NULL: no token-type table */
    const char *emb_project_w, *emb_project_b; /* E -> H projection when embedding_size != hidden
                                                  (ELECTRA), else NULL */
    const char *rel_bias;   /* relative attention bias [buckets, heads], shared by every layer
                               (MPNet), else NULL */
    const char *layer;      /* printf pattern of a layer's prefix, %d its index */
    const char *layer_stem; /* the pattern up to the index: "encoder.layer." */
    const char *layer_keys[PETL_L_COUNT]; /* below the layer prefix */
    const char *adapter_site[2];          /* below the layer prefix: where adapters 1 and 2 sit */
    const char *pooler_w, *pooler_b;      /* NULL: the family has no pooler */
    /* Forward differences. */
    bool pos_after_pad;       /* position ids start at pad_token_id + 1 (RoBERTa), else 0... */
    int pos_start;            /* ...or here when > 0, whatever the config's pad id (MPNet's padding
                                 index is fixed at 1: 2) */
    bool no_attn_out_dropout; /* no dropout after the attention output projection (DistilBERT) */
    bool token_types;         /* reads the input's token types (RoBERTa has a one-row table: always
                                 row 0; DistilBERT and MPNet have no table) */
} petl_arch;

/* The family of a config.json "model_type" (NULL: none of them). */
const petl_arch *petl_arch_find(const char *model_type);
/* The model_type values petl runs, for messages: "bert, roberta, ...". */
const char *petl_arch_names(void);

/* MPNet's (and T5's) bucket of the relative position rel = key - query: exact below
 * num_buckets / 4, then logarithmic up to max_distance, one half of the buckets each way; as
 * transformers' MPNetEncoder.relative_position_bucket computes it in float32. MPNet always
 * buckets into PETL_MPNET_BUCKETS (its config's count only sizes the table). */
#define PETL_MPNET_BUCKETS 32
#define PETL_MPNET_MAX_DISTANCE 128
int petl_rel_bucket(int rel, int num_buckets, int max_distance);

/* BERT (and every checkpoint with BERT's layout: MiniLM, sentence-transformers' BERTs). */
extern const petl_arch petl_arch_bert;

#endif
