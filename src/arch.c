/* The encoder families petl runs (see arch.h). */
#include "arch.h"

const petl_arch petl_arch_bert = {
    .model_type = "bert",
    .prefix = "bert.",
    .emb = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
            "embeddings.LayerNorm.bias"},
    .layer = "encoder.layer.%d.",
    .layer_keys = {"attention.self.query.weight", "attention.self.key.weight",
                   "attention.self.value.weight", "attention.self.query.bias",
                   "attention.self.key.bias", "attention.self.value.bias",
                   "attention.output.dense.weight", "attention.output.dense.bias",
                   "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                   "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
                   "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"},
    .adapter_site = {"attention.output", "output"},
    .pooler_w = "pooler.dense.weight",
    .pooler_b = "pooler.dense.bias",
    .position_offset = 0,
    .token_types = true,
};
