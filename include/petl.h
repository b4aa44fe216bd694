/* petl: parameter-efficient transfer learning on a frozen, shared BERT-family encoder.
 *
 * The one public header. Conventions:
 *   - Every fallible function returns a petl_status and fills a petl_error (when non-NULL) with
 *     a message that names the file / tensor / line and what was wrong. The library never
 *     prints, exits or aborts because of bad input.
 *   - Objects are opaque handles with *_load / *_new and *_free pairs; *_free(NULL) is a no-op.
 *   - Sizes and element counts are size_t / int64_t.
 *   - The model (config + frozen weights) is immutable after load and may be shared between
 *     threads; per-thread work buffers live in a petl_ctx.
 */
#ifndef PETL_H
#define PETL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PETL_VERSION "0.1.0"

/* ===================================================================== errors (src/error.c) */

typedef enum {
    PETL_OK = 0,
    PETL_ERR_IO,          /* a file could not be opened, read, written or mapped */
    PETL_ERR_FORMAT,      /* a file or input is malformed (safetensors, JSON, vocab, ...) */
    PETL_ERR_UNSUPPORTED, /* well-formed, but a setting petl does not implement */
    PETL_ERR_NOMEM,       /* an allocation failed */
    PETL_ERR_ARG,         /* the caller passed an invalid argument */
    PETL_ERR_UTF8,        /* text is not valid UTF-8 */
    PETL_ERR_SHAPE,       /* a tensor is missing or has the wrong shape / dtype */
} petl_status;

typedef struct {
    petl_status code;
    char msg[512];
} petl_error;

/* A short constant name for a status ("format error", ...). */
const char *petl_status_str(petl_status s);

/* =========================================================== safetensors (src/safetensors.c) */

typedef enum {
    PETL_DT_BOOL,
    PETL_DT_U8,
    PETL_DT_I8,
    PETL_DT_U16,
    PETL_DT_I16,
    PETL_DT_F16,
    PETL_DT_BF16,
    PETL_DT_U32,
    PETL_DT_I32,
    PETL_DT_F32,
    PETL_DT_U64,
    PETL_DT_I64,
    PETL_DT_F64,
    PETL_DT_F8_E4M3,
    PETL_DT_F8_E5M2,
} petl_dtype;

#define PETL_ST_MAX_RANK 8

typedef struct {
    const char *name;                /* NUL-terminated, owned by the file object */
    petl_dtype dtype;                /* element type as stored */
    int rank;                        /* 0 (scalar) .. PETL_ST_MAX_RANK */
    int64_t shape[PETL_ST_MAX_RANK]; /* shape[0..rank) */
    int64_t numel;                   /* product of shape (1 for a scalar) */
    uint64_t begin, end;             /* byte offsets in the data buffer, end exclusive */
    const void *data;                /* begin of the bytes (unaligned!) */
} petl_st_tensor;

typedef struct petl_safetensors petl_safetensors;

/* Name ("F32") and element size in bytes of a dtype. */
const char *petl_dtype_name(petl_dtype dt);
size_t petl_dtype_size(petl_dtype dt);

/* Maps and validates a .safetensors file. On success *out owns the mapping; free with
 * petl_st_close. Every check of the reference reader, plus the stricter ones of the project
 * (duplicate names, checked arithmetic, exact 64-bit integers, nesting depth). */
petl_status petl_st_open(const char *path, petl_safetensors **out, petl_error *err);
/* Validates an in-memory file (buf is borrowed and must outlive the object). `what` names the
 * source in error messages. Used by the fuzzer and tests. */
petl_status petl_st_parse(const void *buf, size_t len, const char *what, petl_safetensors **out,
                          petl_error *err);
void petl_st_close(petl_safetensors *st);

size_t petl_st_count(const petl_safetensors *st);
/* Tensors in the order of their data offsets. */
const petl_st_tensor *petl_st_at(const petl_safetensors *st, size_t i);
/* NULL when absent. */
const petl_st_tensor *petl_st_find(const petl_safetensors *st, const char *name);
/* Value of a __metadata__ key, or NULL. */
const char *petl_st_meta(const petl_safetensors *st, const char *key);
size_t petl_st_meta_count(const petl_safetensors *st);
void petl_st_meta_at(const petl_safetensors *st, size_t i, const char **key, const char **value);

/* Copies tensor t into dst[numel] as float32, converting F32 / F16 / BF16 (and F64).
 * Integer and other dtypes are refused with PETL_ERR_SHAPE. */
petl_status petl_st_read_f32(const petl_st_tensor *t, float *dst, petl_error *err);

typedef struct {
    const char *name;
    petl_dtype dtype;
    int rank;
    const int64_t *shape;
    const void *data; /* numel * dtype size bytes */
} petl_st_entry;

/* Writes a safetensors file atomically (temporary file in the same folder, fsync, rename):
 * a failure never leaves a half-written file at `path`. The header is padded with spaces to
 * a multiple of 8 and carries {"format":"pt"} plus the given metadata pairs
 * (meta[2*i] = key, meta[2*i+1] = value). */
petl_status petl_st_write(const char *path, const petl_st_entry *entries, size_t n,
                          const char *const *meta, size_t n_meta, petl_error *err);

/* ======================================================================= config (src/config.c) */

typedef enum { PETL_ACT_GELU, PETL_ACT_GELU_NEW, PETL_ACT_RELU } petl_act;

typedef struct {
    int vocab_size;              /* 30522 */
    int hidden_size;             /* 768 */
    int num_layers;              /* 12 */
    int num_heads;               /* 12 */
    int intermediate_size;       /* 3072 */
    int max_position_embeddings; /* 512 */
    int type_vocab_size;         /* 2 */
    int pad_token_id;            /* 0 */
    float layer_norm_eps;        /* 1e-12 */
    float hidden_dropout;        /* 0.1 */
    float attention_dropout;     /* 0.1 */
    petl_act hidden_act;         /* "gelu" */
    char model_type[32];         /* "bert" */
} petl_config;

/* BertConfig defaults. */
void petl_config_default(petl_config *cfg);
/* Reads config.json; missing fields keep BertConfig defaults; unsupported settings
 * (relative position embeddings, decoders, unknown activations, ...) are refused. */
petl_status petl_config_load(const char *path, petl_config *cfg, petl_error *err);
petl_status petl_config_parse(const char *json, size_t len, const char *what, petl_config *cfg,
                              petl_error *err);
const char *petl_act_name(petl_act a);

/* ================================================================= tokenizer (src/tokenizer.c) */

typedef struct petl_tokenizer petl_tokenizer;

typedef struct {
    bool clean_text;           /* drop control chars, map whitespace to ' ' (default true) */
    bool handle_chinese_chars; /* spaces around CJK ideographs (default true) */
    bool lowercase;            /* default true */
    int strip_accents;         /* -1: follow lowercase (default), 0: no, 1: yes */
} petl_tokenizer_opts;

void petl_tokenizer_opts_default(petl_tokenizer_opts *o);

/* Loads DIR/vocab.txt and, when present, DIR/tokenizer_config.json (do_lower_case,
 * strip_accents, tokenize_chinese_chars). Requires [UNK], [CLS], [SEP] and [PAD] in the vocab. */
petl_status petl_tokenizer_load(const char *model_dir, petl_tokenizer **out, petl_error *err);
/* Builds a tokenizer from the bytes of a vocab.txt. `what` names the source in errors. */
petl_status petl_tokenizer_from_vocab(const char *vocab, size_t len, const char *what,
                                      const petl_tokenizer_opts *opts, petl_tokenizer **out,
                                      petl_error *err);
void petl_tokenizer_free(petl_tokenizer *tok);

int petl_tokenizer_vocab_size(const petl_tokenizer *tok);
/* The options in effect (strip_accents resolved to 0 or 1). */
void petl_tokenizer_get_opts(const petl_tokenizer *tok, petl_tokenizer_opts *out);
/* A 64-bit hash of the vocabulary (every token in id order): tells vocabularies apart. */
uint64_t petl_tokenizer_vocab_hash(const petl_tokenizer *tok);
/* Id of a token string, or -1. */
int32_t petl_tokenizer_token_to_id(const petl_tokenizer *tok, const char *token);
/* Token string of an id, or NULL. */
const char *petl_tokenizer_id_to_token(const petl_tokenizer *tok, int32_t id);
int32_t petl_tokenizer_pad_id(const petl_tokenizer *tok);

/* One encoded input: [CLS] A [SEP] (B [SEP]). Arrays are owned by the encoding and reused
 * across calls; free with petl_encoding_free. Zero-initialise a new one ({0}). */
typedef struct {
    int32_t *ids;      /* [len] */
    int32_t *type_ids; /* [len] */
    int len;
    int cap;
    /* [len, 2] only after petl_tokenize_offsets (petl_tokenize leaves it stale): the byte span
     * [begin, end) in its own text (text_a for type 0, text_b for type 1) of the characters
     * each token was made from; (0, 0) for the added [CLS] / [SEP]. */
    int32_t *offsets;
    int offsets_cap; /* tokens the offsets array holds; internal */
} petl_encoding;

/* Tokenizes text_a (and text_b when non-NULL and non-empty: like the reference, an empty
 * text_b means no pair), truncates to at most max_len tokens including the special tokens with
 * the fast tokenizer's `longest_first` rule, no padding. Text must be valid UTF-8 (else
 * PETL_ERR_UTF8 with the byte offset). max_len <= 0 means no truncation; like the reference, a
 * max_len below the number of special tokens (2, or 3 for a pair) truncates nothing either. */
petl_status petl_tokenize(const petl_tokenizer *tok, const char *text_a, size_t len_a,
                          const char *text_b, size_t len_b, int max_len, petl_encoding *enc,
                          petl_error *err);
/* petl_tokenize, also filling enc->offsets: the reference's return_offsets_mapping=True, but
 * in UTF-8 bytes of the input rather than code points. A token split off one raw character
 * (NFD, CJK) spans all of it; a literal special token in the text spans its text; an [UNK]
 * word spans the whole word. Texts are limited to INT32_MAX bytes. */
petl_status petl_tokenize_offsets(const petl_tokenizer *tok, const char *text_a, size_t len_a,
                                  const char *text_b, size_t len_b, int max_len, petl_encoding *enc,
                                  petl_error *err);
void petl_encoding_free(petl_encoding *enc);

/* ======================================================= model and encoder (src/model.c, ...) */

typedef struct petl_model petl_model;

/* Loads DIR/config.json + DIR/model.safetensors (keys with or without "bert.", LayerNorm
 * weight/bias or gamma/beta, embeddings.position_ids ignored; F16 / BF16 converted to F32).
 * Every expected tensor is checked for presence and shape. The pooler is optional. */
petl_status petl_model_load(const char *model_dir, petl_model **out, petl_error *err);
void petl_model_free(petl_model *m);
const petl_config *petl_model_config(const petl_model *m);
bool petl_model_has_pooler(const petl_model *m);
/* Number of parameters (floats) of the encoder. */
int64_t petl_model_num_params(const petl_model *m);

/* Arithmetic of the matrix products of the frozen layers (QKV, attention output, feed-forward
 * in and out, the attention products, and the adapters inside those layers); softmax,
 * LayerNorm, activations, weights, gradients and optimiser state stay fp32:
 *   PETL_FP32  float32 GEMMs (OpenBLAS): the default, the one the parity tests hold to the
 *              reference within 1e-4;
 *   PETL_BF16  both operands of each product rounded to bfloat16 (the base's weights once, when
 *              set), sums in fp32 (AVX512-BF16), as PyTorch's autocast does; about twice the
 *              GEMM throughput on CPUs that have it, outputs within about 1e-2 relative of fp32
 *              (docs/performance.md gives the measured effect on GLUE dev scores).
 * With PETL_BF16 and `training`, the transposed weights are packed too (the input gradients of
 * adapter, LayerNorm and head tuning run through the frozen layers in bf16). A layer a task
 * tunes (--tune full, top:K) keeps fp32 arithmetic throughout. Setting it again replaces the packs; call it
 * before any context is used on another thread. PETL_ERR_UNSUPPORTED when the CPU (or the
 * build) lacks AVX512-BF16. */
typedef enum { PETL_FP32, PETL_BF16 } petl_precision;
petl_status petl_model_set_precision(petl_model *m, petl_precision p, bool training,
                                     petl_error *err);
petl_precision petl_model_precision(const petl_model *m);
/* "fp32" / "bf16" -> *p; PETL_ERR_ARG naming the text otherwise. */
petl_status petl_precision_parse(const char *text, petl_precision *p, petl_error *err);

/* Per-thread work buffers (one arena) for batches up to max_batch x max_len (max_len at most
 * the model's max_position_embeddings). The attention scratch is sized for the OpenMP thread
 * count at creation (omp_get_max_threads()); set the thread count before creating it. */
typedef struct petl_ctx petl_ctx;
petl_status petl_ctx_new(const petl_model *m, int max_batch, int max_len, petl_ctx **out,
                         petl_error *err);
void petl_ctx_free(petl_ctx *ctx);

/* A padded batch: ids / type_ids are [batch, seq] row-major; 1 <= lengths[b] <= seq is the
 * number of real tokens in row b (the rest are padding and masked out). Every id and type id,
 * padding included, must be in range (pad with the tokenizer's pad id and type 0). */
typedef struct {
    int batch;
    int seq;
    const int32_t *ids;      /* [batch, seq] */
    const int32_t *type_ids; /* [batch, seq] */
    const int *lengths;      /* [batch] */
} petl_batch;

/* Runs the encoder. Any output pointer may be NULL:
 *   last_hidden [batch, seq, hidden]  final hidden states (padding rows too)
 *   pooled      [batch, hidden]       tanh(W_pool h_[CLS] + b) (needs a pooler)
 *   cls         [batch, hidden]       last hidden state of [CLS]
 *   mean        [batch, hidden]       mean of last hidden states over the real tokens
 * Padded keys get zero attention weight, so each row's outputs do not depend on the padding or
 * on the other rows (to float rounding). Only the real tokens are computed unless last_hidden
 * is asked for. Invalid batches (ids out of range, naming the row and position; batch or seq
 * over the context's limits) and pooled without a pooler fail with PETL_ERR_ARG. */
petl_status petl_encode(petl_ctx *ctx, const petl_batch *b, float *last_hidden, float *pooled,
                        float *cls, float *mean, petl_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PETL_H */
