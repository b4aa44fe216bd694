/* The adapter on disk: a folder with adapter_config.json and adapter.safetensors.
 * Internal API (used by the trainer and the CLI), to be merged into include/petl.h.
 *
 *   adapter_config.json  petl version, task (name, spec for petl_task_lookup, labels in class
 *                        order, regression), max_len, the petl_tune_config that rebuilds the
 *                        task model's parameter list (tune.head "classify" or "span"; files
 *                        without it are "classify"), for a span head the "squad" settings
 *                        (window step, query and answer lengths, n-best, the held-out
 *                        articles), the base model's identity (architecture, shapes, parameter
 *                        count, content hash) and free-form training notes.
 *   adapter.safetensors  every petl_param of the task model by its (AdapterHub-style) name,
 *                        F32, with a hash of all the tensors' bytes in the metadata so that a
 *                        file damaged in place is refused rather than silently used.
 *
 * Saving is atomic for the folder as a whole: both files are written and fsync'ed into a
 * temporary folder beside the target, which is then renamed into place. An existing adapter is
 * replaced only with force; then the old folder is renamed away, the new one in, and the old
 * one removed, so a failure at any point leaves either the old adapter or the new one complete
 * (after a crash between the two renames, the old one survives as ".NAME.old-*" beside it).
 *
 * Loading refuses an adapter trained on another base (naming every field that differs),
 * missing, extra or misshapen tensors (name, expected and found shape) and damaged files. */
#ifndef PETL_ADAPTER_IO_H
#define PETL_ADAPTER_IO_H

#include "data.h"
#include "petl.h"
#include "squad.h"
#include "train.h"

#define PETL_ADAPTER_CONFIG "adapter_config.json"
#define PETL_ADAPTER_WEIGHTS "adapter.safetensors"
#define PETL_ADAPTER_FORMAT_VERSION 1

/* What identifies a base model: an adapter only makes sense on the exact weights it was trained
 * with (the frozen layers are part of the function it learned). */
typedef struct {
    char model_type[32];
    int vocab_size, hidden_size, num_layers, num_heads, intermediate_size;
    int max_position_embeddings, type_vocab_size;
    int64_t num_params;
    uint64_t content_hash; /* petl_model_content_hash */
    /* The tokenizer the adapter was trained with (the same weights under another vocabulary
     * or casing see different ids). Adapters from before petl recorded it: has_tokenizer
     * false, and nothing to compare. */
    bool has_tokenizer;
    bool lowercase, strip_accents, clean_text, handle_chinese_chars;
    uint64_t vocab_hash; /* petl_tokenizer_vocab_hash */
} petl_base_identity;

/* A 64-bit hash of every float of the model's parameter block. Hand-written rather than a
 * dependency: it only has to tell different checkpoints apart (not resist an adversary), must
 * be stable across versions of petl, and runs once per process over ~90 MB (BERT-base 440 MB):
 * four independent multiply-rotate lanes over 64-bit words (xxhash-like, ~10 GB/s) instead of
 * byte-wise FNV-1a (~1 GB/s, one serial multiply per byte). */
uint64_t petl_model_content_hash(const petl_model *m);
/* Architecture from the config plus the content hash (computes the hash: ~10 ms per 100 MB). */
void petl_base_identity_of(const petl_model *m, petl_base_identity *id);
/* Adds the tokenizer's settings and vocabulary hash to *id. */
void petl_base_identity_set_tokenizer(petl_base_identity *id, const petl_tokenizer *tok);

/* The contents of adapter_config.json. Strings and arrays are owned by the struct:
 * petl_adapter_info_free (safe on a zeroed struct). */
typedef struct {
    char petl_version[32];
    char task_name[16];    /* petl_task.name: "sst2", or "tsv" / "csv" / "jsonl" */
    char task_spec[256];   /* what petl_task_lookup was given ("sst2", "tsv:text=0,label=1") */
    size_t n_labels;       /* 0 for regression */
    char **labels;         /* [n_labels] class names in index order */
    bool regression;
    int max_len;             /* the truncation used in training; eval / predict default to it
                                (a span head: the window length, squad.max_seq_len) */
    petl_tune_config tune;   /* num_labels = n_labels, or 1 for regression, or 2 for a span head
                                (then no labels) */
    petl_squad_params squad; /* tune.head == PETL_HEAD_SPAN: windowing and decoding */
    char squad_eval_articles[48]; /* the articles held out in training ("38:48", "all"): what
                                     petl eval scores by default */
    petl_base_identity base;
    char *training_json;   /* a JSON object (text) with training notes, or NULL */
} petl_adapter_info;

void petl_adapter_info_free(petl_adapter_info *info);
/* Copies labels[n] into info->labels (replacing any). */
petl_status petl_adapter_info_set_labels(petl_adapter_info *info, const char *const *labels,
                                         size_t n, petl_error *err);

/* Writes the adapter folder `dir` (see the top of the file). Refuses (PETL_ERR_IO, naming the
 * folder and --force) when `dir` exists and is not an empty folder, unless force. */
petl_status petl_adapter_save(const char *dir, const petl_task_model *tm,
                              const petl_adapter_info *info, bool force, petl_error *err);

/* Reads and validates dir/adapter_config.json only. */
petl_status petl_adapter_read_info(const char *dir, petl_adapter_info *info, petl_error *err);

/* Loads an adapter for `base` (which must outlive *out). `id` is the base's identity (computed
 * once per base by the caller: many adapters share one base). Fills *info (caller frees) and
 * *out (caller frees with petl_task_model_free). */
petl_status petl_adapter_load(const char *dir, const petl_model *base, const petl_base_identity *id,
                              petl_adapter_info *info, petl_task_model **out, petl_error *err);

/* Checks that info was made for a base with identity `id`: PETL_ERR_ARG naming every field
 * that differs (the tokenizer's only when both sides record one). */
petl_status petl_adapter_check_base(const char *dir, const petl_base_identity *have,
                                    const petl_base_identity *want, petl_error *err);

/* Fault injection for the tests: when set to k > 0, the k-th step of the next
 * petl_adapter_save fails as if the disk were full (1: after the weights, 2: after the config,
 * 3: before the swap into place). Reset to 0 after it fires. Not thread-safe; tests only. */
extern int petl_adapter_fail_at;

/* Hash of a float block, as stored in adapter.safetensors' metadata (same function as the
 * model content hash). */
uint64_t petl_hash_floats(const float *x, size_t n, uint64_t seed);

#endif
