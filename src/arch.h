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

/* The embedding and pooler tensors. */
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
    const char *emb[PETL_E_COUNT];
    const char *layer;                    /* printf pattern of a layer's prefix, %d its index */
    const char *layer_keys[PETL_L_COUNT]; /* below the layer prefix */
    const char *adapter_site[2];          /* below the layer prefix: where adapters 1 and 2 sit */
    const char *pooler_w, *pooler_b;
    /* Forward differences. */
    int position_offset; /* position id of the first token (RoBERTa: padding_idx + 1) */
    bool token_types;    /* adds a token-type embedding (DistilBERT has none) */
} petl_arch;

/* BERT (and every checkpoint with BERT's layout: MiniLM, sentence-transformers' BERTs). */
extern const petl_arch petl_arch_bert;

#endif
