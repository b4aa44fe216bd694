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
/* Usage (tests/test_usage.c compiles and runs the same lines): train an adapter on a GLUE
 * task's train.tsv and classify a sentence with it. model_dir is a HuggingFace BERT folder
 * (config.json, model.safetensors, vocab.txt); fail(&err) prints err.msg and returns 1.
 *
 *     petl_error err;
 *     petl_model *base = NULL; petl_tokenizer *tok = NULL; petl_task task;
 *     petl_dataset *train = NULL; petl_batcher *b = NULL; petl_task_model *tm = NULL;
 *     if (petl_model_load(model_dir, &base, &err) || petl_tokenizer_load(model_dir, &tok, &err) ||
 *         petl_task_lookup("sst2", &task, &err) ||
 *         petl_dataset_load(&task, train_tsv, NULL, 0, &train, &err) ||
 *         petl_batcher_new(tok, 128, &b, &err) || petl_batcher_add_dataset(b, train, &err))
 *         return fail(&err);
 *     petl_tune_config tc; // adapters of size 64 after attention and feed-forward, 2 labels
 *     petl_tune_config_default(&tc, petl_model_config(base));
 *     petl_train_opts opts; // 3 epochs, lr 3e-4, batch 32; no dev set: keeps the last epoch
 *     petl_train_opts_default(&opts);
 *     petl_train_result res;
 *     if (petl_task_model_new(base, &tc, 42, &tm, &err) ||
 *         petl_train(tm, &task, b, NULL, &opts, NULL, NULL, &res, &err))
 *         return fail(&err);
 *     float logits[2]; // the scores of labels "0" and "1"
 *     petl_batcher_clear(b); // now the texts to classify
 *     if (petl_batcher_add(b, "a gripping film", 15, NULL, 0, -1, 0, &err) ||
 *         petl_predict_all(tm, NULL, b, 1, &(petl_predictions){.logits = logits}, &err))
 *         return fail(&err);
 *     printf("positive: %s\n", logits[1] > logits[0] ? "yes" : "no");
 *     petl_task_model_free(tm); petl_batcher_free(b); petl_dataset_free(train);
 *     petl_tokenizer_free(tok); petl_model_free(base);
 *
 * petl_adapter_save / petl_adapter_load keep the trained task model as an adapter folder;
 * petl_evaluate scores it on a dev set (see petl train, tools/cmd_train.c). */
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

/* dir and name joined with one '/' into a malloc'ed string (caller frees); NULL on no memory.
 * The library and the CLI build every file path of a model or adapter folder with it. */
char *petl_path_join(const char *dir, const char *name);

/* ====================================================================== utilities (src/util.c) */

/* Seconds on the monotonic clock (CLOCK_MONOTONIC): for durations, not dates. */
double petl_now(void);

/* Writes data[len] to path atomically: into a new temporary file PATH.tmp-XXXXXX (mkstemp) in
 * the same folder, fsync'ed and renamed over path, then the folder fsync'ed. A failure removes
 * the temporary file and leaves what was at path untouched (only a killed process leaves the
 * temporary file behind: see petl_is_write_tmp). The file gets mode 0644. PETL_ERR_IO naming
 * path and the reason. Every file petl writes whole goes through it (safetensors files and
 * checkpoints, adapter_config.json, petl sweep's tables). */
petl_status petl_write_file(const char *path, const void *data, size_t len, petl_error *err);
/* Whether NAME is a temporary file of petl_write_file for the file named TARGET
 * (TARGET.tmp-XXXXXX): what a writer killed before its rename leaves. */
bool petl_is_write_tmp(const char *name, const char *target);

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
    uint64_t begin, end;             /* byte offsets in the data buffer, end exclusive (a
                                        torch file's: in the file) */
    const void *data;                /* begin of the bytes (unaligned!) */
    const char *file; /* the file it is in, for messages (petl_st_open's path, petl_st_parse's
                         what; owned by the file object); NULL in a tensor made by hand */
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
/* Tensors in the order of their data offsets (a torch file's: in the state dict's order). */
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

/* Writes a safetensors file atomically (as petl_write_file): a failure never leaves a
 * half-written file at `path`. The header is padded with spaces to a multiple of 8 and carries
 * {"format":"pt"} plus the given metadata pairs (meta[2*i] = key, meta[2*i+1] = value). */
petl_status petl_st_write(const char *path, const petl_st_entry *entries, size_t n,
                          const char *const *meta, size_t n_meta, petl_error *err);

/* ============================================================ PyTorch .bin (src/torch_bin.c) */

/* Reads a state dict saved by torch.save (its zip format, the default since PyTorch 1.6:
 * pytorch_model.bin) into the same object as a safetensors file, so that petl_st_find,
 * petl_st_read_f32 and petl_st_close work unchanged; there is no metadata. The pickle inside
 * is read by a restricted unpickler that imports and calls nothing: it knows the few globals
 * a state dict of tensors needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2 /
 * _v3 / _rebuild_parameter, torch's storage classes and dtypes) and refuses any other global
 * by name ("global os.system is not allowed"), as it refuses opcodes a state dict does not use.
 * Also refused: compressed zip entries, the legacy (pre-1.6) format, big-endian files, values
 * other than tensors, non-contiguous tensors and views past their storage's end (naming the
 * tensor). The tensors point into the mapped file, as petl_st_open's do. */
petl_status petl_torch_open(const char *path, petl_safetensors **out, petl_error *err);
/* The same for a file in memory (buf is borrowed and must outlive the object); `what` names it
 * in messages. */
petl_status petl_torch_parse(const void *buf, size_t len, const char *what, petl_safetensors **out,
                             petl_error *err);

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
    char model_type[32];         /* "bert"; also roberta, xlm-roberta, camembert, electra,
                                    distilbert, mpnet */
    int embedding_size;          /* width of the embedding tables (ELECTRA's, projected to
                                    hidden_size when different); 0: hidden_size. A loaded
                                    model's is never 0 */
    int rel_buckets;             /* MPNet's relative position buckets (32), else 0 */
} petl_config;

/* BertConfig defaults. */
void petl_config_default(petl_config *cfg);

/* Where a family's encoder tensors sit in a checkpoint, for tools that read files directly
 * (petl inspect). Keys are below `prefix`, which task checkpoints use and base checkpoints may
 * leave out. */
typedef struct {
    const char *prefix;   /* "bert.", "roberta.", "distilbert.", ... */
    const char *layers;   /* where layer N's keys start, less N: "encoder.layer." */
    const char *emb;      /* the embedding keys' start: "embeddings." */
    const char *word_emb; /* "embeddings.word_embeddings.weight" */
    const char *emb_ln_w; /* "embeddings.LayerNorm.weight" */
    const char *pooler_w; /* NULL: the family has no pooler */
    const char *extra[2]; /* other encoder tensors (ELECTRA's projection, MPNet's relative
                             position bias), NULL-padded */
} petl_family_keys;

/* Fills *out for model_type; false when petl does not run that family. */
bool petl_family_keys_get(const char *model_type, petl_family_keys *out);
/* Reads config.json; missing fields keep the defaults of the family's config class in
 * transformers (model_type: BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, DistilBERT, MPNet; any other
 * is refused naming these); unsupported settings (relative position embeddings, decoders,
 * unknown activations, ...) are refused. */
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

/* Loads DIR/tokenizer.json when present (petl_tokenizer_load_json), else DIR/vocab.txt; a
 * vocab.txt needs [UNK], [CLS], [SEP] and [PAD]. DIR/tokenizer_config.json, when present, is
 * read as BertTokenizerFast does: its do_lower_case, strip_accents and tokenize_chinese_chars
 * set the BERT normalizer (a tokenizer.json's BertNormalizer too), its pad_token the pad id. */
petl_status petl_tokenizer_load(const char *model_dir, petl_tokenizer **out, petl_error *err);
/* Loads a HuggingFace tokenizer.json: the same ids, type ids and spans as the `tokenizers`
 * library. Supported: normalizers BertNormalizer, and a Sequence of (or one of) NFD, NFKD,
 * Lowercase, StripAccents, Strip, Prepend, Replace (String patterns); pre-tokenizers
 * BertPreTokenizer, ByteLevel,
 * Metaspace, Whitespace, WhitespaceSplit, Punctuation, Digits and a Sequence of them (ByteLevel /
 * Metaspace last);
 * models WordPiece, BPE (merges, continuing-subword prefix, end-of-word suffix, unk, fuse_unk,
 * byte_fallback, ignore_merges; no dropout), Unigram (unk_id required, byte_fallback);
 * post-processors BertProcessing,
 * RobertaProcessing, TemplateProcessing, ByteLevel; added tokens with every flag (normalized,
 * lstrip, rstrip, single_word). Anything else is refused naming the component
 * (PETL_ERR_FORMAT). The file's truncation and padding sections are not applied (max_len
 * decides; padding.pad_id is the pad id). */
petl_status petl_tokenizer_load_json(const char *path, petl_tokenizer **out, petl_error *err);
/* The same from the bytes of a tokenizer.json; `what` names it in errors. */
petl_status petl_tokenizer_from_json(const char *json, size_t len, const char *what,
                                     petl_tokenizer **out, petl_error *err);
/* Builds a tokenizer from the bytes of a vocab.txt. `what` names the source in errors. */
petl_status petl_tokenizer_from_vocab(const char *vocab, size_t len, const char *what,
                                      const petl_tokenizer_opts *opts, petl_tokenizer **out,
                                      petl_error *err);
void petl_tokenizer_free(petl_tokenizer *tok);

int petl_tokenizer_vocab_size(const petl_tokenizer *tok);
/* The options in effect (strip_accents resolved to 0 or 1). */
void petl_tokenizer_get_opts(const petl_tokenizer *tok, petl_tokenizer_opts *out);
/* A 64-bit hash of the vocabulary (every token in id order, added tokens included): tells
 * vocabularies apart. A model's vocab.txt and its tokenizer.json give the same value. */
uint64_t petl_tokenizer_vocab_hash(const petl_tokenizer *tok);
/* Id of a token string, or -1. */
int32_t petl_tokenizer_token_to_id(const petl_tokenizer *tok, const char *token);
/* Token string of an id, or NULL. */
const char *petl_tokenizer_id_to_token(const petl_tokenizer *tok, int32_t id);
int32_t petl_tokenizer_pad_id(const petl_tokenizer *tok);

/* One encoded input: [CLS] A [SEP] (B [SEP]), or the template of a tokenizer.json. Arrays are
 * owned by the encoding and reused across calls; free with petl_encoding_free.
 * Zero-initialise a new one ({0}). */
typedef struct {
    int32_t *ids;      /* [len] */
    int32_t *type_ids; /* [len] */
    int len;
    int cap;
    /* [len, 2] only after petl_tokenize_offsets (petl_tokenize leaves it stale): the byte span
     * [begin, end) in its own text (text_a for type 0, text_b for type 1) of the characters
     * each token was made from; (0, 0) for the template's [CLS] / [SEP]. */
    int32_t *offsets;
    int offsets_cap; /* tokens the offsets array holds; internal */
} petl_encoding;

/* Tokenizes text_a (and text_b when non-NULL and non-empty: like the reference, an empty
 * text_b means no pair), truncates to at most max_len tokens including the special tokens with
 * the fast tokenizer's `longest_first` rule, no padding. Text must be valid UTF-8 (else
 * PETL_ERR_UTF8 with the byte offset); texts are limited to INT32_MAX bytes. max_len <= 0 means
 * no truncation; like the reference, a max_len below the number of the template's special
 * tokens (BERT: 2, or 3 for a pair) truncates nothing either. */
petl_status petl_tokenize(const petl_tokenizer *tok, const char *text_a, size_t len_a,
                          const char *text_b, size_t len_b, int max_len, petl_encoding *enc,
                          petl_error *err);
/* petl_tokenize, also filling enc->offsets: the reference's return_offsets_mapping=True, but
 * in UTF-8 bytes of the input rather than code points. A token split off one raw character
 * (NFD, CJK) spans all of it; a literal special token in the text spans its text; an [UNK]
 * word spans the whole word; RobertaProcessing's trim_offsets leaves out a token's leading and
 * trailing spaces, as the reference does. */
petl_status petl_tokenize_offsets(const petl_tokenizer *tok, const char *text_a, size_t len_a,
                                  const char *text_b, size_t len_b, int max_len, petl_encoding *enc,
                                  petl_error *err);
void petl_encoding_free(petl_encoding *enc);

/* ======================================================= model and encoder (src/model.c, ...) */

typedef struct petl_model petl_model;

/* Loads DIR/config.json + DIR/model.safetensors, or DIR/pytorch_model.bin when there is no
 * model.safetensors (petl_torch_open: torch.save's zip format) (keys with or without "bert.",
 * LayerNorm weight/bias or gamma/beta, embeddings.position_ids ignored; F16 / BF16 converted to
 * F32). Every expected tensor is checked for presence and shape. The pooler is optional. */
petl_status petl_model_load(const char *model_dir, petl_model **out, petl_error *err);
void petl_model_free(petl_model *m);
const petl_config *petl_model_config(const petl_model *m);
bool petl_model_has_pooler(const petl_model *m);
/* The longest sequence the model takes: its position embeddings less the first position id
 * (RoBERTa and MPNet number positions from pad_token_id + 1). */
int petl_model_max_len(const petl_model *m);
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
 * tunes (--tune full, top:K) keeps fp32 arithmetic throughout. Setting it again replaces the packs;
 * call it before any context is used on another thread. PETL_ERR_UNSUPPORTED when the CPU (or the
 * build) lacks AVX512-BF16. */
typedef enum { PETL_FP32, PETL_BF16 } petl_precision;
petl_status petl_model_set_precision(petl_model *m, petl_precision p, bool training,
                                     petl_error *err);
petl_precision petl_model_precision(const petl_model *m);
/* "fp32" / "bf16" -> *p; PETL_ERR_ARG naming the text and the accepted names otherwise
 * (src/options.c, with the other option names). */
petl_status petl_precision_parse(const char *text, petl_precision *p, petl_error *err);
/* The name petl_precision_parse reads; NULL for a value outside the enum. */
const char *petl_precision_name(petl_precision p);

/* Per-thread work buffers (one arena) for batches up to max_batch x max_len (max_len at most
 * the model's max_position_embeddings). The attention scratch is sized for the OpenMP thread
 * count at creation (omp_get_max_threads()); set the thread count before creating it.
 * petl_ctx is the one context type of every forward: petl_ctx_new makes one for the bare
 * encoder (petl_encode), petl_predict_ctx_new one for a task model; petl_ctx_free frees both. */
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

/* ====================================================================== metrics (src/metrics.c) */

/* Evaluation metrics of the GLUE tasks, computed in double precision. Each metric matches its
 * scikit-learn / SciPy counterpart (checked by tests/test_metrics.c against
 * tests/golden/metrics_cases.txt from scripts/reference/gen-metrics-golden.py):
 *   accuracy  sklearn.metrics.accuracy_score
 *   f1        sklearn.metrics.f1_score (binary, pos_label=1; 0 when tp + fp + fn == 0)
 *   mcc       sklearn.metrics.matthews_corrcoef on binary labels (0 when undefined)
 *   pearson   scipy.stats.pearsonr (NaN when either side is constant or n < 2)
 *   spearman  scipy.stats.spearmanr, ties ranked by their average rank (NaN as for pearson,
 *             and when any value is NaN)
 *   mse       mean squared error
 * Every metric of n == 0 examples is NaN. */

typedef enum {
    PETL_METRIC_ACCURACY,
    PETL_METRIC_F1,  /* F1 of class 1 (binary) */
    PETL_METRIC_MCC, /* Matthews correlation (binary) */
    PETL_METRIC_PEARSON,
    PETL_METRIC_SPEARMAN,
    PETL_METRIC_MSE,
    PETL_METRIC_EXACT_MATCH, /* SQuAD v1.1 official exact match, as a fraction (0-1) */
    PETL_METRIC_SQUAD_F1,    /* SQuAD v1.1 official token F1, as a fraction (0-1); key "f1" */
} petl_metric;

#define PETL_MAX_METRICS 4 /* most metrics one task reports */

/* "accuracy", "f1", "mcc", "pearson", "spearman", "mse", "exact_match" (SQuAD; its F1 is "f1"
 * too): the keys of `petl eval`'s JSON. */
const char *petl_metric_name(petl_metric m);

/* Classification metrics of predicted vs gold class indices [n]. f1 and mcc are binary: class 1
 * is the positive class and every other value counts as negative. */
double petl_accuracy(const int32_t *pred, const int32_t *gold, size_t n);
double petl_f1_binary(const int32_t *pred, const int32_t *gold, size_t n);
double petl_mcc_binary(const int32_t *pred, const int32_t *gold, size_t n);

/* Regression metrics of x[n] vs y[n]. */
double petl_pearson(const double *x, const double *y, size_t n);
double petl_mse(const double *pred, const double *gold, size_t n);
/* Needs 2n ranks of scratch memory: PETL_ERR_NOMEM when that fails. */
petl_status petl_spearman(const double *x, const double *y, size_t n, double *out, petl_error *err);

typedef struct {
    size_t count;                         /* number of metrics filled */
    petl_metric metric[PETL_MAX_METRICS]; /* which metric each value is */
    double value[PETL_MAX_METRICS];
    /* Mean of the values except MSE: GLUE's task score (MRPC (accuracy + f1) / 2), the number
     * to pick the best epoch by. NaN when there is no such value. */
    double score;
} petl_metric_set;

struct petl_task;

/* The task's official metrics (see petl_task.metrics): CoLA mcc; SST-2, MNLI, QNLI, RTE, WNLI
 * accuracy; MRPC, QQP accuracy and f1; STS-B pearson and spearman; a generic task accuracy
 * (classification) or pearson, spearman and mse (regression). preds / golds [n] hold class
 * indices (whole numbers in [0, n_labels) when the task has a fixed label set) or regression
 * values. PETL_ERR_ARG for n == 0 or a class index that is not a whole number >= 0. */
petl_status petl_task_metrics(const struct petl_task *task, const double *preds,
                              const double *golds, size_t n, petl_metric_set *out, petl_error *err);

/* ======================================================================= task data (src/data.c) */

/* Task data: the nine GLUE tasks and a generic TSV / CSV / JSON-lines format.
 *
 * A task (petl_task, a plain value filled by petl_task_lookup) says how to read a file: format,
 * header, which columns hold text_a / text_b / label, the label set, whether it is a regression
 * task and which metrics are official. A dataset (petl_dataset, opaque) is one loaded file:
 * its examples, all strings in one arena owned by the dataset.
 *
 * Reading rules, for every format:
 *   - A UTF-8 byte-order mark at the start is skipped; the whole file must be valid UTF-8
 *     (PETL_ERR_UTF8 naming file:line:column) and hold no NUL byte.
 *   - Lines end with LF or CRLF (the CR is dropped); a missing final newline is fine.
 *   - Blank lines are skipped (they never hold a row).
 *   - TSV: fields are split at every TAB with NO quote processing: several GLUE files hold
 *     literal '"' characters that a CSV-style reader would swallow.
 *   - CSV: RFC 4180: fields split at ',', a field that starts with '"' is quoted and may hold
 *     ',', '"' (written "") and line breaks; a '"' inside an unquoted field is kept literally.
 *   - JSON lines: one object per line, read with jansson.
 *   - Any error (missing column, unknown label, bad number, ...) names file:line and stops the
 *     load. Rows are skipped only where the official processors skip them: QQP rows with too few
 *     columns (transformers' QqpProcessor catches the IndexError); they are counted.
 *
 * The generic format, given to petl_task_lookup instead of a task name:
 *
 *     spec    := format [ ":" option { "," option } ]
 *     format  := "tsv" | "csv" | "jsonl"
 *     option  := ("text" | "text_a" | "text_b" | "label") "=" column
 *              | "header" | "regression"
 *     column  := digits (0-based column index; tsv / csv)
 *              | name   (a header column name for tsv / csv with "header"; a key for jsonl)
 *
 * "text" and "text_a" are the same; text and label are required, text_b is optional. Names
 * cannot hold ',', '=' or ':'. Defaults: no header, classification. Examples:
 *     tsv:text=0,label=1            csv:text=review,label=stars,header
 *     tsv:text=1,text_b=2,label=3,header      jsonl:text=premise,text_b=hypothesis,label=label
 *     csv:text_a=s1,text_b=s2,label=score,header,regression
 * Labels of a generic classification task are discovered from the file: numerically sorted when
 * every label is an integer, else sorted by bytes (strcmp). JSON labels may be strings or
 * integers; a regression target may be a JSON number or a numeric string.
 */

typedef enum { PETL_FMT_TSV, PETL_FMT_CSV, PETL_FMT_JSONL } petl_data_format;

#define PETL_COL_NONE (-1)   /* no such column (text_b of a single-sentence task) */
#define PETL_COL_LAST (-2)   /* the row's last column (the label of several GLUE tasks) */
#define PETL_COL_BYNAME (-3) /* resolved at load time from the header by the *_name field */
#define PETL_TASK_MAX_LABELS 8
#define PETL_DATA_MAX_LABELS 1024 /* more distinct labels than this means a wrong label column */

typedef struct petl_task {
    char name[16]; /* "sst2", "mnli", ...; "tsv" / "csv" / "jsonl" for a generic spec */
    bool glue;     /* one of the nine GLUE tasks */
    petl_data_format format;
    bool header;          /* the first row is a header (skipped, or used to resolve names) */
    bool regression;      /* label is a float target (STS-B) */
    bool skip_short_rows; /* QQP: rows with fewer than min_cols columns are skipped, counted */
    int min_cols;         /* tsv / csv: rows need at least this many columns */
    int col_a, col_b, col_label;                 /* tsv / csv column index, or a PETL_COL_* value */
    char name_a[64], name_b[64], name_label[64]; /* jsonl keys / header names; "" when unused */
    size_t n_labels; /* fixed label set in the official order; 0: discovered / none */
    const char *labels[PETL_TASK_MAX_LABELS]; /* static strings */
    size_t n_metrics; /* the task's official metrics, in the order GLUE reports them */
    petl_metric metrics[PETL_MAX_METRICS];
    const char *train_file; /* "train.tsv" ("train.csv", "train.jsonl" for a generic spec) */
    const char *dev_file;   /* "dev.tsv"; MNLI "dev_matched.tsv" */
    const char *dev2_file;  /* MNLI "dev_mismatched.tsv"; NULL for the others */
} petl_task;

/* Fills *out for a GLUE task name (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli; case and
 * '-' ignored, so "SST-2" and "STS-B" work too) or a generic format spec (grammar above). */
petl_status petl_task_lookup(const char *name, petl_task *out, petl_error *err);

/* File name (inside a GLUE-layout task folder) of a split: "train", "dev" ("dev_matched" for
 * MNLI), "dev_matched" and "dev_mismatched" (MNLI only). NULL for an unknown split. */
const char *petl_task_split_file(const petl_task *task, const char *split);

typedef struct {
    const char *text_a;  /* NUL-terminated UTF-8, owned by the dataset */
    const char *text_b;  /* NULL for a single-sentence task */
    size_t len_a, len_b; /* bytes, without the NUL (len_b 0 when text_b is NULL) */
    int32_t label;       /* class index into the dataset's labels; -1 for regression */
    double target;       /* regression target; 0 for classification */
    size_t line;         /* 1-based line of the row (its first line for a multi-line CSV row) */
} petl_example;

typedef struct petl_dataset petl_dataset;

/* Reads a task file. The label set of a classification task is, in order of preference:
 * `labels` (n_labels names, e.g. the training set's or a saved adapter's: an unknown label is
 * an error), the task's fixed GLUE set, or the labels discovered in this file. On success
 * *out owns everything; free with petl_dataset_free. */
petl_status petl_dataset_load(const petl_task *task, const char *path, const char *const *labels,
                              size_t n_labels, petl_dataset **out, petl_error *err);
/* The same from memory (buf is copied; it need not be NUL-terminated). `what` names the
 * source in error messages. Used by the fuzzer and tests. */
petl_status petl_dataset_parse(const petl_task *task, const char *buf, size_t len, const char *what,
                               const char *const *labels, size_t n_labels, petl_dataset **out,
                               petl_error *err);
void petl_dataset_free(petl_dataset *ds);

size_t petl_dataset_count(const petl_dataset *ds);
const petl_example *petl_dataset_at(const petl_dataset *ds, size_t i);
/* The examples as one array [count] (NULL when count is 0), owned by the dataset. */
const petl_example *petl_dataset_examples(const petl_dataset *ds);
bool petl_dataset_is_regression(const petl_dataset *ds);
/* The label names in class-index order (owned by the dataset; 0 for regression): pass them as
 * `labels` when loading the dev set so that indices agree. */
size_t petl_dataset_num_labels(const petl_dataset *ds);
const char *const *petl_dataset_labels(const petl_dataset *ds);
/* Index of a label name, or -1. */
int32_t petl_dataset_label_index(const petl_dataset *ds, const char *name);
/* Rows skipped as malformed (QQP only; 0 for every other task). */
size_t petl_dataset_skipped(const petl_dataset *ds);
/* TSV / CSV: the number of columns of every row after the header (skipped rows included); 0
 * when rows differ in width, and for JSON lines. What petl_adapter_info.data_columns records. */
size_t petl_dataset_columns(const petl_dataset *ds);

/* ===================================================================== SQuAD v1.1 (src/squad.c) */

/* SQuAD v1.1: the JSON reader, BERT-style windowed features, span decoding and the official
 * exact-match / F1.
 *
 * Reading (petl_squad_load / petl_squad_parse). The file is the official format:
 *   {"version": ..., "data": [{"title": str, "paragraphs": [{"context": str,
 *     "qas": [{"id": str, "question": str, "answers": [{"text": str, "answer_start": int}]}]}]}]}
 * Every rule below is an error (PETL_ERR_FORMAT, or PETL_ERR_UTF8 from the JSON parser) naming
 * the source, the article index and title and, inside a question, its id; nothing is skipped
 * silently, because a training set that quietly loses questions gives numbers nobody can
 * reproduce:
 *   - malformed JSON (with its line and column), duplicate keys, a missing or mistyped field;
 *   - an empty (or whitespace-only) context or question; a duplicate question id;
 *   - an answer whose text is empty, or whose answer_start (a code point offset, as Python
 *     indexes str) plus its length runs past the context, or where context[start : start +
 *     len(text)] is not exactly the text;
 *   - a question with no answers, unless opts.allow_unanswered (for files to predict on, not to
 *     score: v1.1 has no unanswerable questions and the official script cannot score one).
 * The whole file is validated; only the questions of the articles [article_begin, article_end)
 * are kept. The split used here, because only the dev file is available: the first 38 of its
 * 48 articles for training (8,582 questions), the last 10 for evaluation (1,988 questions);
 * no article is in both. Users with the real training file read it whole.
 *
 * Features (petl_squad_featurize): Google's run_squad.py windowing (google-research/bert):
 *   - the question alone is tokenized and cut to its first max_query_len tokens;
 *   - the context is tokenized once, with byte offsets (petl_tokenize_offsets);
 *   - windows of at most max_seq_len - n_query - S context tokens start every doc_stride tokens
 *     (S: the special tokens of the tokenizer's pair template: 3 for BERT, 4 for RoBERTa / MPNet)
 *     (the stride is the STEP, as in Google's code; HF's `stride` is the overlap) until one
 *     reaches the end of the context;
 *   - each window is the tokenizer's pair template around (question, window): BERT's [CLS]
 *     question [SEP] window [SEP], type ids 0 up to the first [SEP] inclusive and 1 after;
 *     RoBERTa's and MPNet's <s> question </s></s> window </s>, type ids 0; padded with the pad
 *     id and type 0 to max_seq_len;
 *   - a context token's score in a window is min(left, right) + 0.01 x window length; it is
 *     "max context" in the first window where its score is highest;
 *   - training positions (from the FIRST gold answer): the answer's tokens are the context
 *     tokens that overlap its byte span (the char offsets of the tokenizer, as HF does, rather
 *     than Google's whitespace words + _improve_answer_span); in a window that holds them all,
 *     their positions in the sequence; otherwise start = end = 0 ([CLS]), as Google's code does
 *     for v1.1. An answer that overlaps no token (only characters the tokenizer drops) also
 *     gets 0 / 0 in every window.
 *
 * Decoding (petl_squad_decode), per question over all its windows, as Google's
 * write_predictions: the n_best highest start and end logits of each window (over all
 * max_seq_len positions, padding included, ties to the lower position); pairs are dropped when
 * either end is not a context token, the start is not max-context in that window, end < start
 * or the span is longer than max_answer_len tokens; the best pair by start + end logit (ties to
 * the earlier window, then the earlier start and end candidates) gives the answer: the context
 * bytes from its first token's start to its last token's end (HF's offset mapping rather than
 * Google's get_final_text).
 *
 * Scoring: the official evaluate-v1.1.py. normalize = Python str.lower() (full Unicode
 * lowercasing, final sigma included), drop the 32 ASCII punctuation characters of
 * string.punctuation, replace the words a / an / the by ' ' (re's \b(a|an|the)\b on str: word
 * characters are Unicode letters, numbers and '_'), then ' '.join(text.split()) (Python's
 * whitespace: \t-\r, \x1c-\x1f, space, \x85, \xa0, U+1680, U+2000-U+200A, U+2028, U+2029,
 * U+202F, U+205F, U+3000). EM: normalized strings equal; F1 over the multiset of normalized
 * tokens (0 when nothing is shared); max over the gold answers; totals are 100 x mean.
 */

/* The documented split of the dev file: articles [0, 38) train, [38, 48) evaluation. */
#define PETL_SQUAD_DEV_TRAIN_ARTICLES 38

typedef struct {
    int64_t article_begin; /* first article kept (default 0) */
    int64_t article_end;   /* one past the last article kept; -1: to the end (default) */
    bool allow_unanswered; /* keep questions without answers (default false) */
    int64_t max_questions; /* keep only the first N questions of the range (quick runs, as
                              run_qa.py's max_*_samples); 0: all (default) */
} petl_squad_opts;

void petl_squad_opts_default(petl_squad_opts *o);

/* True when s[len] holds nothing but Python whitespace (str.isspace): what the reader calls an
 * empty context or question. */
bool petl_squad_is_blank(const char *s, size_t len);

/* Parses "B:E", "B:" or ":E" (article indices, E exclusive) into opts; "train" and "eval"
 * name the documented split of the dev file (0:38 and 38:); "all" is everything. */
petl_status petl_squad_parse_range(const char *spec, petl_squad_opts *opts, petl_error *err);

typedef struct {
    const char *text; /* NUL-terminated UTF-8, owned by the dataset */
    size_t len;       /* bytes */
    size_t begin;     /* byte offset in the context */
    int64_t start;    /* answer_start as in the file: a code point offset */
} petl_squad_answer;

typedef struct {
    const char *id;       /* owned by the dataset */
    const char *question; /* NUL-terminated */
    size_t question_len;
    size_t context;   /* index of its context (petl_squad_context) */
    size_t article;   /* article index in the file */
    size_t n_answers; /* >= 1 unless allow_unanswered */
    const petl_squad_answer *answers;
} petl_squad_question;

typedef struct {
    const char *text; /* NUL-terminated */
    size_t len;
    size_t article;
} petl_squad_context;

typedef struct petl_squad petl_squad;

/* Reads a SQuAD v1.1 file (opts may be NULL for the defaults). On success *out owns
 * everything; free with petl_squad_free. */
petl_status petl_squad_load(const char *path, const petl_squad_opts *opts, petl_squad **out,
                            petl_error *err);
/* The same from memory (buf is borrowed only during the call). `what` names the source. */
petl_status petl_squad_parse(const char *buf, size_t len, const char *what,
                             const petl_squad_opts *opts, petl_squad **out, petl_error *err);
void petl_squad_free(petl_squad *ds);

size_t petl_squad_num_articles(const petl_squad *ds); /* in the whole file */
size_t petl_squad_count(const petl_squad *ds);        /* questions kept */
const petl_squad_question *petl_squad_at(const petl_squad *ds, size_t i);
size_t petl_squad_num_contexts(const petl_squad *ds); /* contexts of the questions kept */
const petl_squad_context *petl_squad_context_at(const petl_squad *ds, size_t i);
const char *petl_squad_article_title(const petl_squad *ds, size_t article);

typedef struct {
    int max_seq_len;    /* 384 */
    int max_query_len;  /* 64 */
    int doc_stride;     /* 128: the step between window starts */
    int n_best;         /* 20 */
    int max_answer_len; /* 30 tokens */
} petl_squad_params;

void petl_squad_params_default(petl_squad_params *p);

/* All windows of all questions, in question order. Every array is [n, max_seq_len] row-major
 * and owned by the object. */
typedef struct {
    size_t n;          /* windows */
    int max_seq_len;   /* row length */
    int32_t *ids;      /* [n, max_seq_len] padded with the pad id */
    int32_t *type_ids; /* [n, max_seq_len] padded with 0 */
    int *lengths;      /* [n] real tokens */
    size_t *question;  /* [n] question index */
    int *window;       /* [n] window index within its question */
    int *ctx_begin;    /* [n] sequence position of the first context token (BERT: n_query + 2) */
    int *ctx_len;      /* [n] context tokens in the window */
    int32_t *offsets;  /* [n, max_seq_len, 2] byte span in the context; -1 / -1 off context */
    uint8_t *max_ctx;  /* [n, max_seq_len] 1 where the token is max-context in this window */
    int *start_pos; /* [n] training target (0, the first token, when not in the window); -1 when the
                       question has no answer */
    int *end_pos;      /* [n] */
} petl_squad_features;

/* Windows of every question of ds. PETL_ERR_ARG for settings that leave no room for the
 * context (max_seq_len - max_query_len - S < 1, doc_stride < 1) or over 512 positions. */
petl_status petl_squad_featurize(const petl_squad *ds, const petl_tokenizer *tok,
                                 const petl_squad_params *p, petl_squad_features **out,
                                 petl_error *err);
void petl_squad_features_free(petl_squad_features *f);

typedef struct {
    const char *text;  /* into the context (not NUL-terminated); "" when no span was valid */
    size_t len;        /* bytes */
    size_t begin, end; /* byte span in the context */
    int64_t char_begin, char_end; /* the same span in code points (Python str indices) */
    double score;                 /* start + end logit; -INFINITY when no span was valid */
    bool found;
} petl_squad_prediction;

/* Decodes start / end logits [f->n, f->max_seq_len] into preds[petl_squad_count(ds)]. */
petl_status petl_squad_decode(const petl_squad *ds, const petl_squad_features *f,
                              const float *start_logits, const float *end_logits,
                              const petl_squad_params *p, petl_squad_prediction *preds,
                              petl_error *err);

/* The official per-answer scores of one prediction against one gold answer (UTF-8 texts; an
 * invalid sequence is treated as U+FFFD). */
petl_status petl_squad_em(const char *pred, size_t pred_len, const char *gold, size_t gold_len,
                          double *out, petl_error *err);
petl_status petl_squad_f1(const char *pred, size_t pred_len, const char *gold, size_t gold_len,
                          double *out, petl_error *err);

/* Scores predictions (texts[i] / lens[i] for question i) against every question of ds: per
 * question (max over its answers) into em[i] / f1[i] when non-NULL (0 / 1 values and F1 in
 * [0, 1]); totals in percent, summed in question order as the official script does. A question
 * without answers is PETL_ERR_ARG (the official script cannot score it either). */
petl_status petl_squad_score(const petl_squad *ds, const char *const *texts, const size_t *lens,
                             double *em, double *f1, double *total_em, double *total_f1,
                             petl_error *err);

/* ================================================================ task models (src/taskmodel.c) */

/* A task model is a task trained on a frozen base: adapters, tuned LayerNorms, the head, and for
 * full / top-K tuning the tuned copies of base weights, all in one float block of its own. The
 * base petl_model stays immutable and shared: many task models can share one base. Its trainable
 * tensors carry AdapterHub / HuggingFace key names (what the adapter file stores). Train one with
 * petl_train, run one with petl_predict_all / petl_evaluate, save and load one with
 * petl_adapter_save / petl_adapter_load. */

/* What is trained (`--tune`). */
typedef enum {
    PETL_TUNE_ADAPTER,   /* adapters + every LayerNorm + head (the paper's method; default) */
    PETL_TUNE_FULL,      /* every parameter: the full fine-tuning baseline */
    PETL_TUNE_TOP,       /* the top top_k layers (+ pooler) + head: "variable fine-tuning" */
    PETL_TUNE_LAYERNORM, /* every LayerNorm + head */
    PETL_TUNE_HEAD,      /* head only: the feature-based baseline */
} petl_tune;

typedef enum {
    PETL_PLACE_BOTH, /* after the attention output projection and after the FFN (the paper) */
    PETL_PLACE_FFN,  /* after the FFN output projection only */
} petl_adapter_placement;

typedef enum { PETL_ADAPTER_GELU, PETL_ADAPTER_RELU, PETL_ADAPTER_SWISH } petl_adapter_act;

/* The task head. */
typedef enum {
    PETL_HEAD_CLASSIFY, /* pooled [CLS] -> dropout -> classifier [num_labels, H] (default):
                           BertForSequenceClassification, tensors classifier.weight / .bias */
    PETL_HEAD_SPAN,     /* every token -> qa_outputs [2, H]: start / end logits, no pooler, no
                           head dropout (BertForQuestionAnswering, tensors qa_outputs.weight /
                           .bias); trained on span targets, run by petl_predict_all */
} petl_head_kind;

typedef struct {
    petl_tune tune;
    int top_k;                        /* PETL_TUNE_TOP: number of top layers tuned */
    int adapter_size;                 /* bottleneck m, default 64 */
    petl_adapter_act adapter_act;     /* default GELU (exact erf form) */
    float adapter_init_sd;            /* truncated normal (cut at 2 sd), default 1e-3 */
    petl_adapter_placement placement; /* default PETL_PLACE_BOTH */
    bool freeze_layernorms;           /* PETL_TUNE_ADAPTER: the LayerNorms stay the base's, so
                                         only adapters and head train: exactly what an AdapterHub
                                         adapter holds (petl export). Default false */
    uint64_t adapter_layers;          /* bit l set: layer l carries adapters; default all */
    int num_labels;                   /* >= 2: classification (cross-entropy); 1: regression;
                                         PETL_HEAD_SPAN: 2 (start, end) */
    petl_head_kind head;              /* default PETL_HEAD_CLASSIFY */
    bool head_dense; /* PETL_HEAD_CLASSIFY: the head's own dense + tanh layer before the
                        classifier, trained (AdapterHub's two-layer classification head), in place
                        of the base's frozen pooler; named as the pooler where the family has
                        one, else head.dense.weight / .bias. Default false */
    float hidden_dropout;             /* default: the config's hidden_dropout_prob */
    float attention_dropout;          /* default: the config's attention_probs_dropout_prob */
    float head_dropout;               /* before the classifier, default 0.1 (unused by spans) */
} petl_tune_config;

/* Defaults above, for a base with config cfg (dropouts from cfg). */
void petl_tune_config_default(petl_tune_config *tc, const petl_config *cfg);

typedef struct petl_task_model petl_task_model;

/* A new task model on `base` (which must outlive it): adapters initialised near identity from
 * `seed`, LayerNorms and tuned weights copied from the base, head initialised as BERT does
 * (normal(0, initializer_range 0.02), bias 0). */
petl_status petl_task_model_new(const petl_model *base, const petl_tune_config *tc, uint64_t seed,
                                petl_task_model **out, petl_error *err);
void petl_task_model_free(petl_task_model *tm);
const petl_tune_config *petl_task_model_tune_config(const petl_task_model *tm);

/* Ablation at inference (the paper's Figure 6): bit l of layer_mask set makes both adapters of
 * layer l the identity (as if their weights were zero); 0 (the default) runs every adapter.
 * Layers from 64 up cannot be switched off. Read by every forward (and backward) until changed;
 * not thread-safe against a forward running on another thread. */
void petl_task_model_disable_adapters(petl_task_model *tm, uint64_t layer_mask);
uint64_t petl_task_model_disabled_adapters(const petl_task_model *tm);

/* Trained floats, and the whole model's (base + adapters + head) for the "% trained" line. */
int64_t petl_task_model_trainable_count(const petl_task_model *tm);
int64_t petl_task_model_total_count(const petl_task_model *tm);

/* Work buffers to run one task model (a petl_ctx, the one context type of every forward, freed
 * with petl_ctx_free), for inference only (one layer's activations, no backward buffers) on
 * batches of up to max_batch x max_len: pass it to petl_predict_all, petl_evaluate or
 * petl_squad_evaluate to reuse it across calls (petl_train makes its own training context). */
petl_status petl_predict_ctx_new(const petl_task_model *tm, int max_batch, int max_len,
                                 petl_ctx **out, petl_error *err);

/* Where predictions go, by head kind (one predict call for every head). Rows are examples. */
typedef struct {
    float *logits;      /* [n, num_labels]  classification / regression (num_labels 1) */
    float *start, *end; /* [n, seq]  span head: start / end logits, -INFINITY past each row's
                           tokens (petl_squad_decode's layout) */
    int seq;            /* span rows' length (petl_predict_all: >= petl_batcher_max_len) */
} petl_predictions;

/* =========================================================== tokenized examples (src/batcher.c) */

/* A petl_batcher holds a set of examples tokenized ONCE (ids and type ids of every example in
 * one growing arena, plus label / target or span targets): what petl_train, petl_evaluate and
 * the predict functions take. They run it in batches of similar length, each padded to its
 * longest row (the planning is internal to the library). */

typedef struct petl_batcher petl_batcher;

/* An empty batcher that truncates to max_len tokens (special tokens included; >= 3). `tok` is
 * borrowed and must outlive the batcher. *out is owned by the caller: petl_batcher_free. */
petl_status petl_batcher_new(const petl_tokenizer *tok, int max_len, petl_batcher **out,
                             petl_error *err);
void petl_batcher_free(petl_batcher *b);

/* Tokenizes and appends one example (label -1 / target 0 when unknown). */
petl_status petl_batcher_add(petl_batcher *b, const char *text_a, size_t len_a, const char *text_b,
                             size_t len_b, int32_t label, float target, petl_error *err);
/* Appends one example tokenized already (a SQuAD window: [CLS] question [SEP] context [SEP]):
 * ids / type_ids [len], 1 <= len <= max_len (no truncation: PETL_ERR_ARG), with span targets
 * start / end (sequence positions in [0, len), or -1 when unknown). Label -1, target 0. */
petl_status petl_batcher_add_encoded(petl_batcher *b, const int32_t *ids, const int32_t *type_ids,
                                     int len, int32_t start, int32_t end, petl_error *err);
/* Appends every example of a dataset, in order; errors name the file line of the example. */
petl_status petl_batcher_add_dataset(petl_batcher *b, const petl_dataset *ds, petl_error *err);
/* Forgets the examples (keeps the memory): used to batch a stream chunk by chunk. */
void petl_batcher_clear(petl_batcher *b);

size_t petl_batcher_count(const petl_batcher *b);
int petl_batcher_max_len(const petl_batcher *b);

/* Number of batches of a training epoch: ceil(n / batch). */
size_t petl_batcher_epoch_batches(size_t n, int batch);

/* ====================================================== training and evaluation (src/trainer.c) */

/* The training loop: epochs of length-grouped batches, AdamW with clipping and the linear
 * warmup / decay schedule, dev evaluation after each epoch keeping the best epoch, a JSON-lines
 * log, and checkpoints that a killed run resumes from bit for bit.
 *
 * Determinism and resume. Everything random is a pure function of the seed and the position: the
 * batch order of epoch e comes from (seed, e), the dropout of global step s from (seed, s), and the
 * head / adapter initialisation from the seed. So the state of a run between two steps is exactly:
 * the parameters, AdamW's m / v and step count, the position (epoch, batch within the epoch) and
 * the best-so-far (epoch, metrics, a copy of the parameters). A checkpoint stores all of it in one
 * safetensors file (tensors "param/NAME", "adam_m/NAME", "adam_v/NAME", "best/NAME", and the rest
 * as JSON in the metadata key "petl_checkpoint"), written atomically; a resumed run with the same
 * options and thread count continues with bitwise the same numbers as a run never stopped. The
 * options that change the numbers are stored too, and a resume with different ones is refused.
 *
 * The library never prints: progress goes to a callback. */

/* A dev evaluation other than petl_evaluate's (SQuAD: decode the spans and score them): fills
 * *out for the model as it is now. ctx is the training context, usable for inference. */
typedef petl_status (*petl_eval_fn)(petl_task_model *tm, petl_ctx *ctx, void *user,
                                    petl_metric_set *out, petl_error *err);

typedef struct {
    double lr;                /* peak learning rate */
    int epochs;               /* >= 1 */
    int batch;                /* >= 1 */
    uint64_t seed;            /* batch order, dropout (the task model's init uses its own seed) */
    double warmup;            /* fraction of the steps with a linear warmup (0.1) */
    double weight_decay;      /* 0.01; not on LayerNorm parameters and biases */
    double max_grad_norm;     /* 1.0 */
    bool bias_correction;     /* false: BERT-style Adam as the paper; true: torch AdamW */
    bool pad_to_max;          /* pad every batch to max_len instead of its longest row */
    int eval_batch;           /* batch size for dev evaluation (0: the training batch) */
    int64_t checkpoint_every; /* steps between checkpoints (0: only at epoch ends) */
    const char *checkpoint_path; /* NULL: no checkpoints */
    bool resume;                 /* continue from checkpoint_path when it exists */
    const char *log_path;        /* JSON-lines log (appended); NULL: none */
    int log_every;               /* steps between log lines (10); the first and last steps always */
    petl_eval_fn evaluate;       /* NULL: petl_evaluate(dev) with the task's metrics */
    void *evaluate_user;
    const char *resume_key; /* more settings a resume must match (SQuAD's windowing and
                               decoding); NULL: none */
    int64_t eval_every;     /* also evaluate on dev every N steps (0: only after each epoch); logged
                               with "train_s", the training time without evaluations */
    double stop_at;         /* with eval_every: stop at the first evaluation whose score (the task's
                               main metric) is >= stop_at, keeping that model (time to accuracy);
                               NAN: never */
} petl_train_opts;

void petl_train_opts_default(petl_train_opts *o);

typedef enum {
    PETL_PROGRESS_START,      /* before the first step (after a resume: step > 0) */
    PETL_PROGRESS_STEP,       /* after every optimiser step */
    PETL_PROGRESS_EVAL_START, /* dev evaluation of an epoch begins */
    PETL_PROGRESS_EPOCH,      /* dev evaluation done: dev, best */
    PETL_PROGRESS_CHECKPOINT, /* a checkpoint was written */
    PETL_PROGRESS_SKIPPED,    /* a step was skipped: non-finite gradient norm */
} petl_progress_kind;

typedef struct {
    petl_progress_kind kind;
    int64_t step, total_steps;  /* completed optimiser steps */
    int epoch, epochs;          /* 0-based epoch in progress */
    double loss;                /* this step's loss */
    double mean_loss;           /* mean loss of the epoch so far */
    double lr, grad_norm;       /* of this step (grad_norm before clipping) */
    double tokens_per_s;        /* real tokens through forward + backward, since the start */
    double elapsed_s;           /* since this process started training */
    const petl_metric_set *dev; /* PETL_PROGRESS_EPOCH: the epoch's dev metrics */
    bool best;                  /* PETL_PROGRESS_EPOCH: a new best epoch */
    const char *path;           /* PETL_PROGRESS_CHECKPOINT */
} petl_train_progress;

typedef void (*petl_progress_fn)(const petl_train_progress *p, void *user);

typedef struct {
    int best_epoch;       /* 0-based; -1 without a dev set (the last epoch is kept) */
    petl_metric_set best; /* dev metrics of the best epoch */
    int64_t steps;        /* optimiser steps of the whole run */
    int64_t skipped;      /* steps skipped for a non-finite gradient norm */
    bool resumed;         /* started from a checkpoint */
    int64_t resumed_step;
    double train_seconds;   /* in this process */
    int64_t stopped_step;   /* stop_at reached after this many steps (0: ran to the end) */
    double stopped_train_s; /* training seconds (evaluations excluded) when it was reached */
} petl_train_result;

/* Trains tm on `train` (labels / targets filled; a span head: span targets). After each epoch
 * evaluates on `dev` (may be NULL) with the task's metrics, or with o->evaluate when set (task
 * may then be NULL; `dev` still sizes the context and names the dev set in checkpoints), and
 * remembers the best epoch (by petl_metric_set.score). On return tm holds the best epoch's
 * parameters (the last epoch's without a dev set). A training context for max_batch x max_len is
 * created inside. */
petl_status petl_train(petl_task_model *tm, const petl_task *task, const petl_batcher *train,
                       const petl_batcher *dev, const petl_train_opts *o, petl_progress_fn cb,
                       void *user, petl_train_result *res, petl_error *err);

/* Runs the model over every example of b (no dropout) in length-sorted batches and writes its
 * head's outputs in the INPUT order of b: out->logits[i * num_labels + c] (num_labels 1 for
 * regression), or for a span head out->start / out->end [count, out->seq] (seq >=
 * petl_batcher_max_len(b)). ctx may be NULL (one is created for the call). */
petl_status petl_predict_all(petl_task_model *tm, petl_ctx *ctx, const petl_batcher *b, int batch,
                             const petl_predictions *out, petl_error *err);

/* Evaluates tm on b with the task's metrics (gold = b's labels / targets). preds[n] (optional)
 * receives the predicted class index or regression value per example, in input order. */
petl_status petl_evaluate(petl_task_model *tm, petl_ctx *ctx, const petl_task *task,
                          const petl_batcher *b, int batch, double *preds, petl_metric_set *out,
                          petl_error *err);

/* SQuAD evaluation of a span model: b holds the windows of f in order (petl_batcher_add_encoded
 * of each feature), which are run, decoded (petl_squad_decode with p) and scored against ds's
 * gold answers. *out: exact_match and f1 as fractions (the official script's percentages / 100,
 * like every petl metric), score = f1 (the best epoch is the best F1). preds (optional,
 * [petl_squad_count(ds)]) receives the predictions; their texts point into ds. */
petl_status petl_squad_evaluate(petl_task_model *tm, petl_ctx *ctx, const petl_squad *ds,
                                const petl_squad_features *f, const petl_batcher *b,
                                const petl_squad_params *p, int batch, petl_squad_prediction *preds,
                                petl_metric_set *out, petl_error *err);

/* =========================================================== adapter folders (src/adapter_io.c) */

/* The adapter on disk: a folder with adapter_config.json and adapter.safetensors.
 *
 *   adapter_config.json  petl version, task (name, spec for petl_task_lookup, labels in class
 *                        order, regression), max_len, the petl_tune_config that rebuilds the
 *                        task model's parameter list (tune.head "classify" or "span"; files
 *                        without it are "classify"), for a span head the "squad" settings
 *                        (window step, query and answer lengths, n-best, the held-out
 *                        articles), the base model's identity (architecture, shapes, parameter
 *                        count, content hash) and free-form training notes.
 *   adapter.safetensors  every trainable tensor of the task model by its (AdapterHub-style)
 *                        name, F32, with a hash of all the tensors' bytes in the metadata so that a
 *                        file damaged in place is refused rather than silently used.
 *
 * Saving is atomic for the folder as a whole: both files are written and fsync'ed into a
 * temporary folder beside the target, which is then renamed into place. An existing adapter is
 * replaced only with force, and only when the folder holds nothing but a petl adapter (section
 * "outputs"); then the old folder is renamed away, the new one in, and the old one's files
 * removed, so a failure at any point leaves either the old adapter or the new one complete
 * (after a crash between the two renames, the old one survives as ".NAME.old-PID" beside it,
 * and the next `petl train` on the same folder puts it back).
 *
 * Loading refuses an adapter trained on another base (naming every field that differs),
 * missing, extra or misshapen tensors (name, expected and found shape) and damaged files. */

#define PETL_ADAPTER_CONFIG "adapter_config.json"
#define PETL_ADAPTER_WEIGHTS "adapter.safetensors"

/* What identifies a base model: an adapter only makes sense on the exact weights it was trained
 * with (the frozen layers are part of the function it learned). */
typedef struct {
    char model_type[32];
    int vocab_size, hidden_size, num_layers, num_heads, intermediate_size;
    int max_position_embeddings, type_vocab_size;
    int64_t num_params;
    uint64_t content_hash; /* hash of every float of the base's weights */
    /* The tokenizer the adapter was trained with (the same weights under another vocabulary
     * or casing see different ids). Adapters from before petl recorded it: has_tokenizer
     * false, and nothing to compare. */
    bool has_tokenizer;
    bool lowercase, strip_accents, clean_text, handle_chinese_chars;
    uint64_t vocab_hash; /* petl_tokenizer_vocab_hash */
} petl_base_identity;

/* Architecture from the config plus the content hash (computes the hash: ~10 ms per 100 MB). */
void petl_base_identity_of(const petl_model *m, petl_base_identity *id);
/* Adds the tokenizer's settings and vocabulary hash to *id. */
void petl_base_identity_set_tokenizer(petl_base_identity *id, const petl_tokenizer *tok);

/* The contents of adapter_config.json. Strings and arrays are owned by the struct:
 * petl_adapter_info_free (safe on a zeroed struct). */
typedef struct {
    char petl_version[32];
    char task_name[16];  /* petl_task.name: "sst2", or "tsv" / "csv" / "jsonl" */
    char task_spec[256]; /* what petl_task_lookup was given ("sst2", "tsv:text=0,label=1") */
    size_t n_labels;     /* 0 for regression */
    char **labels;       /* [n_labels] class names in index order */
    bool regression;
    int max_len;             /* the truncation used in training; eval / predict default to it
                                (a span head: the window length, squad.max_seq_len) */
    petl_tune_config tune;   /* num_labels = n_labels, or 1 for regression, or 2 for a span head
                                (then no labels) */
    petl_squad_params squad; /* tune.head == PETL_HEAD_SPAN: windowing and decoding */
    char squad_eval_articles[48]; /* the articles held out in training ("38:48", "all"): what
                                     petl eval scores by default */
    /* The input shape the adapter was trained on: true for text pairs (text_a + text_b: MRPC,
     * RTE, a generic spec with text_b=; a span head's question + context), false for single
     * texts. Inputs of the other shape are refused (petl predict, petl serve, petl eval with
     * another task): a pair squeezed into a single-text adapter scores as noise. Saved as
     * task.pair_input; for files from before it, petl_adapter_load derives it from task_spec. */
    bool pair_input;
    /* The training file's width: the number of columns of every row of a generic TSV / CSV
     * task's train file (task.data_columns); 0 when not recorded (GLUE tasks, whose layouts
     * petl_dataset_load checks by their headers; JSON lines; rows of varying width; older
     * files). petl eval refuses a data file of another width: it is another task's data. */
    int data_columns;
    petl_base_identity base;
    char *training_json; /* a JSON object (text) with training notes, or NULL */
} petl_adapter_info;

void petl_adapter_info_free(petl_adapter_info *info);
/* Copies labels[n] into info->labels (replacing any). */
petl_status petl_adapter_info_set_labels(petl_adapter_info *info, const char *const *labels,
                                         size_t n, petl_error *err);

/* Writes the adapter folder `dir` (see above; a symbolic link is written through to its
 * target). Refuses (PETL_ERR_IO, saying what is there) what petl_out_check refuses: anything but
 * nothing, an empty folder, or (with force) a petl adapter folder. */
petl_status petl_adapter_save(const char *dir, const petl_task_model *tm,
                              const petl_adapter_info *info, bool force, petl_error *err);

/* Loads an adapter for `base` (which must outlive *out). `id` is the base's identity (computed
 * once per base by the caller: many adapters share one base). Fills *info (caller frees) and
 * *out (caller frees with petl_task_model_free). */
petl_status petl_adapter_load(const char *dir, const petl_model *base, const petl_base_identity *id,
                              petl_adapter_info *info, petl_task_model **out, petl_error *err);

/* ==================================================== AdapterHub interop (src/adapterhub.c)
 *
 * `petl export --format adapterhub`: a petl adapter as an `adapters` library folder
 * (adapter_config.json + adapter.safetensors, head_config.json + model_head.safetensors), for
 * model.load_adapter(dir, use_safetensors=True). The paper's adapter is adapters' double_seq_bn;
 * the head is a classification head (pooler + classifier as layers 2) or a question_answering
 * head. Trained LayerNorms, which AdapterHub has no place for, go to PETL_ADAPTERHUB_LAYERNORMS
 * under the model's own tensor names. Families the adapters library has no model class for
 * (MPNet), and adapters that train anything else of the base, are refused (PETL_ERR_ARG). */

#define PETL_ADAPTERHUB_LAYERNORMS "petl_layernorms.safetensors"

typedef struct {
    size_t adapter_tensors, head_tensors;
    size_t layernorm_tensors; /* > 0: the side file was written (load it too for the same
                                 outputs) */
} petl_adapterhub_report;

/* Writes the export of tm (loaded with petl_adapter_load, whose info it takes) into the folder
 * `out`, which must not exist or be empty (written whole or not at all). `name` is the
 * adapter's name in adapters (no '.' or '/'), `model_name` what its config records as
 * model_name (the base's hub id or folder). */
petl_status petl_adapterhub_export(const petl_task_model *tm, const petl_adapter_info *info,
                                   const char *out, const char *name, const char *model_name,
                                   petl_adapterhub_report *rep, petl_error *err);

/* adapters stores the bottleneck m as reduction_factor rf and reads it back as int(H // rf),
 * Python's float floor division (emulated exactly by petl_adapterhub_floordiv). This is the
 * double nearest H / m that gives m back (H / m itself does not always: 768 / 13); NAN for m
 * outside 1..H. */
double petl_adapterhub_reduction_factor(int hidden, int bottleneck);
double petl_adapterhub_floordiv(double x, double y);

/* `petl import`: an AdapterHub bottleneck adapter folder (adapter_config.json and
 * adapter.safetensors or pytorch_adapter.bin; head_config.json and model_head.safetensors or
 * pytorch_model_head.bin) as a task model on `base`: the paper's adapter (double_seq_bn, or its
 * output adapter alone), a classification head of 1 or 2 layers (tanh; regression as 1 label)
 * or a question_answering head. What petl does not compute is refused naming the field:
 * parallel, gated, PHM, invertible adapters, adapter LayerNorms, the adapter after the
 * LayerNorm (seq_bn), scaling other than 1, activations other than gelu / relu / swish, other
 * head types. AdapterHub records no base hash: model_type and hidden_size are checked, and
 * every tensor's shape. */
typedef struct {
    char name[65];   /* the adapter's name in adapters */
    size_t n_labels; /* label names from head_config's label2id (by id); 0: none */
    char **labels;
} petl_adapterhub_imported;
petl_status petl_adapterhub_import(const char *dir, const petl_model *base, petl_task_model **out,
                                   petl_adapterhub_imported *im, petl_error *err);
void petl_adapterhub_imported_free(petl_adapterhub_imported *im);

/* ============================================================ option names (src/options.c)
 *
 * The names of the tuning choices, one table per enum: `petl train --tune / --adapter-act /
 * --placement`, the values of `petl sweep`'s grid and adapter_config.json all go through these
 * functions. *_name gives a value's name, NULL for a value outside the enum (so a loop from 0
 * up to the first NULL lists the choices in order). *_parse reads a name; anything else is
 * PETL_ERR_ARG with a message naming the text and the accepted names, and leaves the outputs
 * untouched. */

#define PETL_TUNE_TOP_MAX 64 /* the most layers --tune top:K takes */

/* "adapter", "full", "top", "layernorm", "head": adapter_config.json's tune.mode (top's K is
 * stored apart, as tune.top_k). */
const char *petl_tune_name(petl_tune t);
/* "adapter", "full", "layernorm", "head", or "top:K" with K in 1..PETL_TUNE_TOP_MAX (`--tune`)
 * -> *tune, and *top_k for top:K only (whether K fits the model is petl_task_model_new's
 * check). */
petl_status petl_tune_parse(const char *text, petl_tune *tune, int *top_k, petl_error *err);

/* "gelu", "relu", "swish". */
const char *petl_adapter_act_name(petl_adapter_act a);
petl_status petl_adapter_act_parse(const char *text, petl_adapter_act *a, petl_error *err);

/* "both", "ffn". */
const char *petl_placement_name(petl_adapter_placement p);
petl_status petl_placement_parse(const char *text, petl_adapter_placement *p, petl_error *err);

/* ============================================= outputs: what petl may replace (src/outputs.c)
 *
 * petl deletes or overwrites only what it created. An adapter folder (`petl train --out`) is
 * written new, or replaces an empty folder, or (with --force) replaces a folder that holds
 * nothing but a petl adapter (adapter_config.json with "format": "petl-adapter", and
 * adapter.safetensors); any other folder or file is refused, naming what it holds. A symbolic
 * link as --out is written through: its target is checked and replaced as above, the link
 * stays. A checkpoint path may hold nothing or a petl checkpoint. A run takes a lock beside its
 * output (PARENT/.NAME.lock, flock(2): released by the kernel when the process dies) so that a
 * second run on the same output is refused at once, naming the first; under the lock, what
 * killed runs left beside the output is provably stale and is cleaned up. */

typedef enum {
    PETL_OUT_MISSING, /* nothing there: the adapter is renamed into place */
    PETL_OUT_EMPTY,   /* an empty folder: rename(2) replaces it */
    PETL_OUT_ADAPTER, /* a petl adapter folder, to replace (force was given) */
} petl_out_state;

/* Checks an output folder path before any work is done: not empty, ".", ".." or "/"; its
 * parent an existing folder that takes new entries. A symbolic link is followed (a dangling
 * link, or one to a non-folder, is refused). `resolved` (cap bytes) gets the path to write:
 * dir without trailing '/', or the link's target. PETL_ERR_ARG / PETL_ERR_IO naming the path. */
petl_status petl_out_resolve(const char *dir, char *resolved, size_t cap, petl_error *err);

/* What is at a resolved output path; refuses (PETL_ERR_IO, saying what is there) a file, a
 * link, a folder that is not a petl adapter folder, and an adapter folder without force. */
petl_status petl_out_check(const char *dir, bool force, petl_out_state *state, petl_error *err);

/* Refuses (PETL_ERR_IO / PETL_ERR_ARG, naming it) a checkpoint path whose parent is missing or
 * read-only, or that holds anything but a petl checkpoint (a link, a folder, another file). */
petl_status petl_checkpoint_check(const char *path, petl_error *err);

/* An exclusive lock beside `path` (PARENT/.NAME.lock) recording `who` (e.g. "petl train --out
 * X") and this process's id and start time. PETL_ERR_IO naming the holder when another
 * process has it. Released (and its file removed) by petl_lock_release, or by the kernel when
 * the process dies. */
typedef struct petl_lock petl_lock;
petl_status petl_lock_take(const char *path, const char *who, petl_lock **out, petl_error *err);
void petl_lock_release(petl_lock *l);

/* Call while holding the lock on `out` (a resolved path) and on `checkpoint` (NULL: none):
 * removes what killed runs left, all provably stale under the lock: temporary adapter folders
 * (PARENT/.NAME.tmp-XXXXXX), replaced adapter folders (.NAME.old-PID, whose process is gone)
 * and partial checkpoints (CHECKPOINT.tmp-XXXXXX). When `out` is missing and a complete
 * .NAME.old-PID exists (a run killed between the two renames of a replacement), it is renamed
 * back to `out`. Only petl's own file names are removed; a folder holding anything else is left.
 * *report gets one line per action (caller frees; NULL when there was nothing to do). */
petl_status petl_out_clean_litter(const char *out, const char *checkpoint, char **report,
                                  petl_error *err);

/* Whether NAME is one of the files petl writes in an adapter folder. */
bool petl_out_is_adapter_file(const char *name);
/* Removes petl's own files from an adapter folder, then the folder; -1 (errno set) when
 * anything else is left in it. */
int petl_out_remove_adapter_dir(const char *dir);

/* ==================================================================== sweep grids (src/sweep.c) */

/* A sweep grid: `petl sweep --grid "lr=3e-5,3e-4 epochs=1,3 size=8,64 seed=1,2"`, the cross
 * product of training options (axes), each run named by a stable id made from its values.
 *
 * Syntax: axes separated by white space, each NAME=V1,V2,...; names are `petl train` options
 * without the dashes (lr, epochs, batch, seed, max-len, warmup, weight-decay, tune, init-sd,
 * placement) plus the short forms size (--adapter-size), act (--adapter-act) and top (K of
 * --tune top:K). Values are checked here (numbers, known words) so that a typo fails before
 * hours of training rather than at run 17. Runs are numbered with the LAST axis varying
 * fastest, as nested loops written in the order of the spec. */

typedef struct {
    char *name;         /* canonical axis name: "lr", "size", "top", ... */
    const char *option; /* the `petl train` option it sets: "--lr", "--adapter-size", "--tune" */
    size_t n;           /* >= 1 values */
    char **values;      /* [n] as written in the spec */
    char **args;        /* [n] the option's argument: the value, or "top:K" for the top axis */
} petl_grid_axis;

typedef struct {
    size_t n_axes;
    petl_grid_axis *axes; /* [n_axes] in spec order */
    size_t n_runs;        /* product of the axes' sizes (at most PETL_GRID_MAX_RUNS) */
} petl_grid;

#define PETL_GRID_MAX_RUNS 100000
#define PETL_GRID_ID_MAX 256

/* Parses spec into *out (free with petl_grid_free). PETL_ERR_ARG naming the axis and value on
 * an unknown axis, a repeated axis, tune together with top, an empty or malformed value, two
 * values of one axis with the same id, or too many runs. */
petl_status petl_grid_parse(const char *spec, petl_grid **out, petl_error *err);
void petl_grid_free(petl_grid *g);

/* Index of axis `axis`'s value in run `run` (< n_runs). */
size_t petl_grid_value_index(const petl_grid *g, size_t run, size_t axis);

/* The run's id, e.g. "lr3e-5_epochs1_size8_seed1": the axes in spec order, name then value,
 * with every character outside [A-Za-z0-9.+-] of a value turned into '-'. Stable across
 * processes (a resumed sweep finds its runs by it) and unique within the grid. Writes at most
 * cap bytes (PETL_GRID_ID_MAX is enough unless the spec is huge); returns the length it needs
 * (>= cap: truncated). */
size_t petl_grid_run_id(const petl_grid *g, size_t run, char *buf, size_t cap);

/* ======================================================================== server (src/server.c) */

/* petl serve as a library: one frozen base model in memory serving many task adapters over
 * HTTP/1.1 (libmicrohttpd), with dynamic batching across requests and tasks. One worker thread
 * gathers the requests arriving within a window into batches; the rows of every task that
 * leaves the base's weights untouched (--tune adapter, layernorm, head) run through ONE fused
 * forward (the base's GEMMs once for all rows, each task's adapters, LayerNorms and head on its
 * own rows), the rows of full / top-K tasks task by task. docs/serving.md gives the routes.
 *
 * Threads: the HTTP daemon runs one thread per connection; handlers parse, look up the task and
 * tokenize on their own thread, then block until the worker has run their job. The base model,
 * the tokenizer and loaded task models are only read after load, so they are shared freely. */

#define PETL_SRV_NAME_MAX 64 /* task names: [A-Za-z0-9_.-]{1,64}, not starting with '.' */

/* True when name is a valid task name (see PETL_SRV_NAME_MAX). */
bool petl_srv_name_valid(const char *name, size_t len);

/* The dynamic batching of requests (petl_server_opts.batch). */
typedef struct {
    double window_ms; /* how long to wait for more jobs after the first (2) */
    int max_batch;    /* rows per batch (32); a larger job runs in pieces, others between them */
    int queue;        /* jobs waiting at most (256); more are refused */
    int max_tokens;   /* padded tokens (rows x longest row) per batch (1024); 0: rows only */
} petl_srv_queue_opts;

typedef struct {
    const char *host;         /* IPv4 address to bind ("127.0.0.1"; "localhost" is accepted) */
    int port;                 /* 0: any free port (see petl_server_port) */
    size_t max_body;          /* bytes (1 MiB) */
    size_t max_inputs;        /* per request (256) */
    size_t max_tasks;         /* loaded at once (10000) */
    int max_connections;      /* concurrent connections served (256); more are answered 503 */
    int max_per_address;      /* concurrent connections from one client address served (0: half of
                                 max_connections); more are answered 503 */
    double request_timeout_s; /* a request's headers and body must arrive within this (10) */
    unsigned timeout_s;       /* idle connection timeout (30) */
    petl_srv_queue_opts batch;
    const char *admin_token;  /* NULL: the admin routes answer 403 */
    const char *adapters_dir; /* relative paths of POST /v1/tasks resolve against it */
    /* One line per start / load / unload / stop (no newline); NULL: silent. Called from any
     * thread, one line at a time. */
    void (*log)(void *user, const char *line);
    void *log_user;
} petl_server_opts;

void petl_server_opts_default(petl_server_opts *o);

typedef struct petl_server petl_server;

/* A server for `base` and `tok` (both borrowed, must outlive it). Nothing listens yet. */
petl_status petl_server_new(const petl_server_opts *o, const petl_model *base,
                            const petl_tokenizer *tok, petl_server **out, petl_error *err);
/* Loads dir as task name (before or after start). */
petl_status petl_server_load(petl_server *s, const char *name, const char *dir, petl_error *err);
/* Starts the batch worker and the HTTP daemon. */
petl_status petl_server_start(petl_server *s, petl_error *err);
/* The port listened on (after start). */
int petl_server_port(const petl_server *s);
/* Graceful stop: stop accepting connections, let requests in flight finish (at most
 * grace_s seconds), then stop the daemon and the worker. Idempotent. */
void petl_server_stop(petl_server *s, double grace_s);
/* Stops (when running) and frees. NULL is a no-op. */
void petl_server_free(petl_server *s);

#ifdef __cplusplus
}
#endif
#endif /* PETL_H */
