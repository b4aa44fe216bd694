/* The tokenizer: its public API, the vocabulary, loading (vocab.txt + tokenizer_config.json
 * here, tokenizer.json in tok_json.c) and the pipeline that runs the stages of tok_internal.h,
 * reproducing HuggingFace's `tokenizers` exactly: added tokens split off the raw text, then
 * off the normalized text, pre-tokenizer, model, truncation (longest_first) and the
 * post-processor's template, with the byte span of every token in its input.
 *
 * A vocab.txt folder is the pipeline of BertTokenizerFast: BertNormalizer (clean text, CJK
 * spacing, NFD + drop Mn, lowercase), BertPreTokenizer, WordPiece ("##", words over 100
 * characters are [UNK]), [CLS] A [SEP] (B [SEP]), the special tokens matched on the raw text.
 *
 * Working memory is per call (the tokenizer is shared between threads and never written after
 * load): a few arrays that grow with the text, freed at the end of the call; the output arrays
 * grow geometrically inside the caller's petl_encoding. */
#include "tok_internal.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* WordPiece's max_input_chars_per_word for vocab.txt folders. */
#define WORD_MAX_CHARS 100
/* Vocab files larger than this are refused (bert-base's is 232 kB). */
#define VOCAB_MAX_BYTES (64u << 20)
/* tokenizer.json files larger than this are refused (XLM-R's is 17 MB). */
#define JSON_MAX_BYTES (256u << 20)

enum { SP_UNK, SP_CLS, SP_SEP, SP_PAD, SP_MASK, SP_COUNT };

typedef struct {
    char name[64]; /* the literal text, e.g. "[SEP]" */
} special_token;

/* --------------------------------------------------------------------- vocab lookups */

/* Inserts id; a later duplicate of a token replaces the earlier one, as the reference's
 * HashMap::insert does. */
static void vocab_insert(petl_tokenizer *tok, int32_t id) {
    size_t mask = tok->n_slots - 1, n = tok->token_len[id];
    const char *s = tok->tokens[id];
    for (size_t i = (size_t)petl_fnv1a(PETL_FNV_BASIS, s, n) & mask;; i = (i + 1) & mask) {
        int32_t o = tok->slots[i];
        if (o < 0 || (tok->token_len[o] == n && memcmp(tok->tokens[o], s, n) == 0)) {
            tok->slots[i] = id;
            return;
        }
    }
}

petl_status petl_tok_vocab_set(petl_tokenizer *tok, const char *const *tokens, const uint32_t *lens,
                               int32_t n, const char *what, petl_error *err) {
    size_t bytes = 0;
    for (int32_t id = 0; id < n; id++)
        bytes += (size_t)lens[id] + 1;
    size_t n_slots = 16;
    while (n_slots < 2 * (size_t)n)
        n_slots *= 2;
    char *buf = malloc(bytes + 1);
    const char **toks = malloc(((size_t)n + 1) * sizeof *toks);
    uint32_t *tlen = malloc(((size_t)n + 1) * sizeof *tlen);
    int32_t *slots = malloc(n_slots * sizeof *slots);
    if (!buf || !toks || !tlen || !slots) {
        free(buf), free(toks), free(tlen), free(slots);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory for %d tokens", what, n);
    }
    size_t at = 0;
    for (int32_t id = 0; id < n; id++) {
        memcpy(buf + at, tokens[id], lens[id]);
        buf[at + lens[id]] = '\0';
        toks[id] = buf + at;
        tlen[id] = lens[id];
        at += (size_t)lens[id] + 1;
    }
    /* tokens may point into the old buffer: free it only now */
    free(tok->buf), free(tok->tokens), free(tok->token_len), free(tok->slots);
    tok->buf = buf, tok->tokens = toks, tok->token_len = tlen, tok->slots = slots;
    tok->n_vocab = n;
    tok->n_slots = n_slots;
    memset(slots, 0xFF, n_slots * sizeof *slots);
    for (int32_t id = 0; id < n; id++)
        vocab_insert(tok, id);
    return PETL_OK;
}

int petl_tokenizer_vocab_size(const petl_tokenizer *tok) {
    return tok ? tok->n_vocab : 0;
}

void petl_tokenizer_get_opts(const petl_tokenizer *tok, petl_tokenizer_opts *out) {
    if (tok)
        *out = tok->opts;
    else
        petl_tokenizer_opts_default(out);
}

/* FNV-1a over each token followed by a newline: the vocabulary is small (bert-base's 30,522
 * tokens, 232 kB, hash once per process), the value must be stable across petl versions (a
 * vocab.txt and the tokenizer.json of the same model give the same value), and it only has to
 * tell vocabularies apart, so the simplest well-known 64-bit hash will do. */
uint64_t petl_tokenizer_vocab_hash(const petl_tokenizer *tok) {
    uint64_t h = PETL_FNV_BASIS;
    for (int32_t id = 0; tok && id < tok->n_vocab; id++) {
        h = petl_fnv1a(h, tok->tokens[id], tok->token_len[id]);
        h = petl_fnv1a(h, "\n", 1);
    }
    return h;
}

int32_t petl_tokenizer_token_to_id(const petl_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    return petl_tok_vocab_find(tok, "", 0, token, strlen(token));
}

const char *petl_tokenizer_id_to_token(const petl_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_vocab) return NULL;
    return tok->tokens[id];
}

int32_t petl_tokenizer_pad_id(const petl_tokenizer *tok) {
    return tok ? tok->pad_id : -1;
}

/* ------------------------------------------------------------------------- loading */

void petl_tokenizer_opts_default(petl_tokenizer_opts *o) {
    o->clean_text = true;
    o->handle_chinese_chars = true;
    o->lowercase = true;
    o->strip_accents = -1;
}

void petl_tokenizer_free(petl_tokenizer *tok) {
    if (!tok) return;
    free(tok->buf);
    free(tok->tokens);
    free(tok->token_len);
    free(tok->slots);
    free(tok->prefix);
    free(tok->suffix);
    free(tok->merge_keys);
    free(tok->merge_vals);
    free(tok->scores);
    for (size_t i = 0; i < tok->n_norm_steps; i++)
        free(tok->norm_steps[i].prepend), petl_tok_regex_free(tok->norm_steps[i].re),
            free(tok->norm_steps[i].trie), free(tok->norm_steps[i].blob);
    for (size_t i = 0; i < tok->n_splits; i++)
        petl_tok_regex_free(tok->splits[i].re);
    petl_tok_bytelevel_free(tok);
    for (size_t i = 0; i < tok->n_added; i++) {
        free(tok->added[i].content);
        free(tok->added[i].norm);
    }
    free(tok->added);
    free(tok->single.pieces);
    free(tok->pair.pieces);
    free(tok->tpl_ids);
    free(tok);
}

/* The first byte of the UTF-8 form of c. */
static unsigned lead_byte(int32_t c) {
    if (c < 0x80) return (unsigned)c;
    if (c < 0x800) return 0xC0 | (unsigned)(c >> 6);
    if (c < 0x10000) return 0xE0 | (unsigned)(c >> 12);
    return 0xF0 | (unsigned)(c >> 18);
}

/* The code points of s[0..n) (valid UTF-8) into a new array (*out, caller frees). */
static petl_status decode_all(const char *s, size_t n, int32_t **out, size_t *count,
                              petl_error *err) {
    *out = malloc((n + 1) * sizeof **out);
    if (!*out) return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; k++)
        i += petl_utf8_decode((const unsigned char *)s + i, n - i, &(*out)[k]);
    *count = k;
    return PETL_OK;
}

petl_status petl_tok_set_added(petl_tokenizer *tok, const petl_added_spec *specs, size_t n,
                               const char *what, petl_error *err) {
    tok->added = calloc(n + 1, sizeof *tok->added);
    const char **fresh = calloc(n + 1, sizeof *fresh); /* contents that get new ids */
    if (!tok->added || !fresh) {
        free(fresh);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    }
    size_t n_fresh = 0;
    petl_status st = PETL_OK;
    petl_tok_text t = {0};
    for (size_t i = 0; i < n && st == PETL_OK; i++) {
        const petl_added_spec *sp = &specs[i];
        size_t len = strlen(sp->content);
        if (len == 0) continue; /* the reference ignores empty added tokens */
        if (petl_utf8_check(sp->content, len) != len) {
            st = petl_fail(err, PETL_ERR_FORMAT, "%s: added token %zu is not valid UTF-8", what, i);
            break;
        }
        /* Its id: that of the same content among the added tokens, else in the vocabulary,
         * else the next id after the vocabulary. A repeated content takes the later flags. */
        petl_added_token *a = NULL;
        for (size_t j = 0; j < tok->n_added && !a; j++)
            if (strcmp(tok->added[j].content, sp->content) == 0) a = &tok->added[j];
        if (!a) {
            a = &tok->added[tok->n_added++];
            a->id = petl_tok_vocab_find(tok, "", 0, sp->content, len);
            if (a->id < 0) {
                if (tok->n_vocab + (int64_t)n_fresh >= INT32_MAX / 4) {
                    st = petl_fail(err, PETL_ERR_FORMAT, "%s: too many tokens", what);
                    break;
                }
                a->id = tok->n_vocab + (int32_t)n_fresh;
                fresh[n_fresh++] = sp->content;
            }
            a->content = strdup(sp->content);
            if (!a->content) {
                st = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
                break;
            }
            a->len = len;
        }
        a->normalized = sp->normalized;
        a->single_word = sp->single_word;
        a->lstrip = sp->lstrip;
        a->rstrip = sp->rstrip;
        /* What is matched: the content itself on the raw text, or what the normalizer makes of
         * it on the normalized text. */
        free(a->norm);
        a->norm = NULL;
        if (a->normalized) {
            if ((st = petl_tok_normalize(tok, a->content, 0, len, &t, err)) != PETL_OK) break;
            a->n_norm = t.n;
            a->norm = malloc((t.n + 1) * sizeof *a->norm);
            if (!a->norm) {
                st = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
                break;
            }
            memcpy(a->norm, t.cp, t.n * sizeof *a->norm);
        } else if ((st = decode_all(a->content, len, &a->norm, &a->n_norm, err)) != PETL_OK) {
            break;
        }
        if (a->n_norm == 0)
            st =
                petl_fail(err, PETL_ERR_FORMAT,
                          "%s: added token \"%s\" is empty after the normalizer", what, a->content);
    }
    free(t.cp), free(t.beg), free(t.end), free(t.ccc);
    for (size_t j = 0; j < tok->n_added && st == PETL_OK; j++)
        tok->first_byte[tok->added[j].normalized][lead_byte(tok->added[j].norm[0])] = true;
    if (st == PETL_OK && n_fresh > 0) {
        /* The new tokens extend the vocabulary (the model never produces them). */
        int32_t total = tok->n_vocab + (int32_t)n_fresh;
        const char **all = malloc((size_t)total * sizeof *all);
        uint32_t *lens = malloc((size_t)total * sizeof *lens);
        if (!all || !lens) {
            st = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
        } else {
            for (int32_t id = 0; id < tok->n_vocab; id++)
                all[id] = tok->tokens[id], lens[id] = tok->token_len[id];
            for (size_t j = 0; j < n_fresh; j++)
                all[tok->n_vocab + (int32_t)j] = fresh[j],
                                   lens[tok->n_vocab + (int32_t)j] = (uint32_t)strlen(fresh[j]);
            st = petl_tok_vocab_set(tok, all, lens, total, what, err);
        }
        free(all);
        free(lens);
    }
    free(fresh);
    return st;
}

/* Splits a vocab.txt (buf[0..len), NUL-terminated, modified) into lines: the reference reads it
 * with BufRead::lines (split on \n, a final \n ends the last line rather than starting an
 * empty one) and trims trailing whitespace of each line. */
static petl_status vocab_from_lines(petl_tokenizer *tok, char *buf, size_t len, const char *what,
                                    petl_error *err) {
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++)
        n_lines += buf[i] == '\n';
    if (len > 0 && buf[len - 1] != '\n') n_lines++;
    if (n_lines == 0) return petl_fail(err, PETL_ERR_FORMAT, "%s: empty vocabulary", what);
    if (n_lines > (size_t)INT32_MAX / 4)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: too many lines", what);
    const char **toks = malloc(n_lines * sizeof *toks);
    uint32_t *lens = malloc(n_lines * sizeof *lens);
    petl_status st = PETL_OK;
    if (!toks || !lens) st = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    size_t start = 0, id = 0;
    while (st == PETL_OK && start < len) {
        char *nl = memchr(buf + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - buf) : len;
        size_t bad = petl_utf8_check(buf + start, end - start);
        if (bad != end - start) {
            st = petl_fail(err, PETL_ERR_FORMAT, "%s: line %zu: invalid UTF-8 at byte %zu", what,
                           id + 1, bad);
            break;
        }
        /* trailing whitespace, as Rust's str::trim_end (Unicode White_Space) */
        size_t n = end - start;
        while (n > 0) {
            size_t k = 1;
            while (k < n && k < 4 && ((unsigned char)buf[start + n - k] & 0xC0) == 0x80)
                k++;
            int32_t cp;
            if (petl_utf8_decode((const unsigned char *)buf + start + n - k, k, &cp) != k ||
                !petl_uc_is_whitespace(cp))
                break;
            n -= k;
        }
        toks[id] = buf + start;
        lens[id] = (uint32_t)n;
        id++;
        start = end + 1;
    }
    if (st == PETL_OK) st = petl_tok_vocab_set(tok, toks, lens, (int32_t)id, what, err);
    free(toks);
    free(lens);
    return st;
}

/* The longest model token bounds the WordPiece search. */
static void set_model_size(petl_tokenizer *tok) {
    tok->n_model = tok->n_vocab;
    tok->max_token_len = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++)
        if (tok->token_len[id] > tok->max_token_len) tok->max_token_len = tok->token_len[id];
}

/* BertProcessing's template: [CLS] A [SEP] and [CLS] A [SEP] B [SEP], B's part of type 1. */
petl_status petl_tok_set_bert_template(petl_tokenizer *tok, int32_t cls, int32_t sep, bool roberta,
                                       petl_error *err) {
    tok->tpl_ids = malloc(2 * sizeof *tok->tpl_ids);
    tok->single.pieces = malloc(3 * sizeof *tok->single.pieces);
    tok->pair.pieces = malloc(6 * sizeof *tok->pair.pieces);
    if (!tok->tpl_ids || !tok->single.pieces || !tok->pair.pieces)
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    tok->tpl_ids[0] = cls;
    tok->tpl_ids[1] = sep;
    tok->n_tpl_ids = 2;
    const petl_tpl_piece CLS = {PETL_PIECE_SPECIAL, 0, 0, 1}, SEP = {PETL_PIECE_SPECIAL, 0, 1, 1};
    const petl_tpl_piece A = {PETL_PIECE_A, 0, 0, 0};
    petl_tpl_piece *s = tok->single.pieces, *p = tok->pair.pieces;
    s[0] = CLS, s[1] = A, s[2] = SEP;
    tok->single.n = 3, tok->single.n_added = 2;
    if (roberta) {
        /* <s> A </s> </s> B </s>, every token of type 0 */
        const petl_tpl_piece B = {PETL_PIECE_B, 0, 0, 0};
        p[0] = CLS, p[1] = A, p[2] = SEP, p[3] = SEP, p[4] = B, p[5] = SEP;
        tok->pair.n = 6, tok->pair.n_added = 4;
    } else {
        const petl_tpl_piece B = {PETL_PIECE_B, 1, 0, 0}, SEP1 = {PETL_PIECE_SPECIAL, 1, 1, 1};
        p[0] = CLS, p[1] = A, p[2] = SEP, p[3] = B, p[4] = SEP1;
        tok->pair.n = 5, tok->pair.n_added = 3;
    }
    return PETL_OK;
}

static void default_specials(special_token *sp) {
    static const char *const names[SP_COUNT] = {"[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"};
    memset(sp, 0, SP_COUNT * sizeof *sp);
    for (int i = 0; i < SP_COUNT; i++)
        snprintf(sp[i].name, sizeof sp[i].name, "%s", names[i]);
}

/* A vocab.txt (bytes vocab[0..len)) with BertTokenizerFast's pipeline. */
static petl_status from_vocab(const char *vocab, size_t len, const char *what,
                              const petl_tokenizer_opts *opts, const special_token *names,
                              petl_tokenizer **out, petl_error *err) {
    *out = NULL;
    if (len > VOCAB_MAX_BYTES)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: vocabulary of %zu bytes is too large", what,
                         len);
    petl_tokenizer *tok = calloc(1, sizeof *tok);
    char *buf = malloc(len + 1);
    petl_status st = PETL_ERR_NOMEM;
    if (!tok || !buf) {
        petl_fail(err, st, "%s: out of memory", what);
        goto fail;
    }
    memcpy(buf, vocab, len);
    buf[len] = '\0';
    if ((st = vocab_from_lines(tok, buf, len, what, err)) != PETL_OK) goto fail;
    set_model_size(tok);
    petl_tokenizer_opts_default(&tok->opts);
    if (opts) tok->opts = *opts;
    if (tok->opts.strip_accents < 0) tok->opts.strip_accents = tok->opts.lowercase ? 1 : 0;
    tok->normalizer = PETL_NORM_BERT;
    petl_tok_normalizer_init(tok);
    tok->pre_tokenizer = PETL_PRE_BERT;
    tok->model = PETL_MODEL_WORDPIECE;
    tok->max_word_chars = WORD_MAX_CHARS;
    tok->prefix = strdup("##");
    if (!tok->prefix) {
        st = petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
        goto fail;
    }
    tok->prefix_len = 2;
    special_token def[SP_COUNT];
    if (!names) default_specials(def);
    if (!names) names = def;
    /* [UNK] [CLS] [SEP] [PAD] are required; the special tokens in the vocabulary are matched
     * in the raw text ([MASK] may be missing). */
    int32_t ids[SP_COUNT];
    petl_added_spec specs[SP_COUNT];
    size_t n_specs = 0;
    for (int i = 0; i < SP_COUNT; i++) {
        ids[i] = names[i].name[0] ? petl_tokenizer_token_to_id(tok, names[i].name) : -1;
        if (ids[i] < 0 && i != SP_MASK) {
            st = petl_fail(err, PETL_ERR_FORMAT, "%s: special token %s is not in the vocabulary",
                           what, names[i].name[0] ? names[i].name : "(empty)");
            goto fail;
        }
        if (ids[i] >= 0) specs[n_specs++] = (petl_added_spec){.content = names[i].name};
    }
    tok->unk_id = ids[SP_UNK];
    tok->pad_id = ids[SP_PAD];
    if ((st = petl_tok_set_added(tok, specs, n_specs, what, err)) != PETL_OK) goto fail;
    if ((st = petl_tok_set_bert_template(tok, ids[SP_CLS], ids[SP_SEP], false, err)) != PETL_OK)
        goto fail;
    free(buf);
    *out = tok;
    return PETL_OK;
fail:
    free(buf);
    petl_tokenizer_free(tok);
    return st;
}

petl_status petl_tokenizer_from_vocab(const char *vocab, size_t len, const char *what,
                                      const petl_tokenizer_opts *opts, petl_tokenizer **out,
                                      petl_error *err) {
    if (!out || (!vocab && len > 0))
        return petl_fail(err, PETL_ERR_ARG, "petl_tokenizer_from_vocab: NULL argument");
    return from_vocab(vocab ? vocab : "", len, what ? what : "vocab", opts, NULL, out, err);
}

/* A special token's name in tokenizer_config.json: a string or an AddedToken object with a
 * "content" string. Absent keeps the default. */
static petl_status config_special(json_t *root, const char *key, special_token *sp,
                                  const char *path, petl_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return PETL_OK;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) >= sizeof sp->name)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" must be a non-empty string", path, key);
    snprintf(sp->name, sizeof sp->name, "%s", json_string_value(v));
    return PETL_OK;
}

static petl_status config_bool(json_t *root, const char *key, bool *dst, bool null_ok, int *tri,
                               const char *path, petl_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v) return PETL_OK;
    if (json_is_null(v) && null_ok) {
        *tri = -1;
        return PETL_OK;
    }
    if (!json_is_boolean(v))
        return petl_fail(err, PETL_ERR_FORMAT, "%s: \"%s\" must be true or false", path, key);
    if (dst) *dst = json_is_true(v);
    if (tri) *tri = json_is_true(v);
    return PETL_OK;
}

/* Reads tokenizer_config.json (path) into opts and the special-token names. */
static petl_status read_config(const char *path, petl_tokenizer_opts *opts, special_token *sp,
                               petl_error *err) {
    /* petl_read_file, not json_load_file: a FIFO or device there is refused, not waited on */
    char *text = NULL;
    size_t len = 0;
    petl_status rs = petl_read_file(path, VOCAB_MAX_BYTES, &text, &len, err);
    if (rs != PETL_OK) return rs;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: line %d: invalid JSON: %s", path, je.line,
                         je.text);
    petl_status st = PETL_OK;
    static const char *const keys[SP_COUNT] = {"unk_token", "cls_token", "sep_token", "pad_token",
                                               "mask_token"};
    if (!json_is_object(root)) {
        st = petl_fail(err, PETL_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    if (st == PETL_OK)
        st = config_bool(root, "do_lower_case", &opts->lowercase, false, NULL, path, err);
    if (st == PETL_OK)
        st = config_bool(root, "strip_accents", NULL, true, &opts->strip_accents, path, err);
    if (st == PETL_OK)
        st = config_bool(root, "tokenize_chinese_chars", &opts->handle_chinese_chars, false, NULL,
                         path, err);
    for (int i = 0; i < SP_COUNT && st == PETL_OK; i++)
        st = config_special(root, keys[i], &sp[i], path, err);
    json_decref(root);
    return st;
}

/* A tokenizer.json's bytes; bert: tokenizer_config.json's overrides of a BertNormalizer. */
static petl_status from_json(const char *json, size_t len, const char *what,
                             const petl_tokenizer_opts *bert, petl_tokenizer **out,
                             petl_error *err) {
    *out = NULL;
    if (len > JSON_MAX_BYTES)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: %zu bytes is too large", what, len);
    petl_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    tok->pad_id = -1;
    petl_status st = petl_tok_json_parse(tok, json, len, what, bert, err);
    if (st != PETL_OK) {
        petl_tokenizer_free(tok);
        return st;
    }
    /* Without a padding section: the usual pad tokens, else id 0 (padded positions are
     * masked, so any id does; petl_tokenizer_load prefers tokenizer_config.json's). */
    if (tok->pad_id < 0) tok->pad_id = petl_tokenizer_token_to_id(tok, "[PAD]");
    if (tok->pad_id < 0) tok->pad_id = petl_tokenizer_token_to_id(tok, "<pad>");
    if (tok->pad_id < 0) tok->pad_id = 0;
    *out = tok;
    return PETL_OK;
}

petl_status petl_tokenizer_from_json(const char *json, size_t len, const char *what,
                                     petl_tokenizer **out, petl_error *err) {
    if (!out || (!json && len > 0))
        return petl_fail(err, PETL_ERR_ARG, "petl_tokenizer_from_json: NULL argument");
    return from_json(json ? json : "", len, what ? what : "tokenizer.json", NULL, out, err);
}

/* Reads a tokenizer.json file (see from_json). */
static petl_status load_json(const char *path, const petl_tokenizer_opts *bert,
                             petl_tokenizer **out, petl_error *err) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    petl_status st = petl_read_file(path, JSON_MAX_BYTES, &text, &len, err);
    if (st == PETL_OK) st = from_json(text, len, path, bert, out, err);
    free(text);
    return st;
}

petl_status petl_tokenizer_load_json(const char *path, petl_tokenizer **out, petl_error *err) {
    if (!out || !path) return petl_fail(err, PETL_ERR_ARG, "petl_tokenizer_load_json: NULL");
    return load_json(path, NULL, out, err);
}

petl_status petl_tokenizer_load(const char *model_dir, petl_tokenizer **out, petl_error *err) {
    if (!out || !model_dir) return petl_fail(err, PETL_ERR_ARG, "petl_tokenizer_load: NULL");
    *out = NULL;
    char *jpath = petl_path_join(model_dir, "tokenizer.json");
    char *vpath = petl_path_join(model_dir, "vocab.txt");
    char *cpath = petl_path_join(model_dir, "tokenizer_config.json");
    char *text = NULL;
    size_t len = 0;
    petl_status st = PETL_ERR_NOMEM;
    if (!jpath || !vpath || !cpath) {
        petl_fail(err, st, "%s: out of memory", model_dir);
        goto done;
    }
    petl_tokenizer_opts opts;
    petl_tokenizer_opts_default(&opts);
    special_token names[SP_COUNT];
    default_specials(names);
    /* tokenizer_config.json is optional: BERT defaults without it. With a tokenizer.json, its
     * do_lower_case, strip_accents and tokenize_chinese_chars override a BertNormalizer's (as
     * transformers' BertTokenizerFast does) and its pad_token names the pad token. */
    bool has_config = access(cpath, F_OK) == 0;
    if (has_config && (st = read_config(cpath, &opts, names, err)) != PETL_OK) goto done;
    if (access(jpath, F_OK) == 0) {
        if ((st = load_json(jpath, has_config ? &opts : NULL, out, err)) != PETL_OK) goto done;
        int32_t pad = has_config ? petl_tokenizer_token_to_id(*out, names[SP_PAD].name) : -1;
        if (pad >= 0) (*out)->pad_id = pad;
        goto done;
    }
    if ((st = petl_read_file(vpath, VOCAB_MAX_BYTES, &text, &len, err)) != PETL_OK) goto done;
    st = from_vocab(text, len, vpath, &opts, names, out, err);
done:
    free(text);
    free(jpath);
    free(vpath);
    free(cpath);
    return st;
}

/* ------------------------------------------------------------------ per-call working state */

/* The capacity for need elements, doubling from cap (64 at least). */
static size_t next_cap(size_t cap, size_t need) {
    size_t c = cap ? cap : 64;
    while (c < need)
        c *= 2;
    return c;
}

/* Resizes array p to cap elements; on failure p stays as it was and ok becomes false. */
#define RESIZE(p, cap, ok)                                                                         \
    do {                                                                                           \
        void *q_ = realloc((p), (cap) * sizeof *(p));                                              \
        if (q_)                                                                                    \
            (p) = q_;                                                                              \
        else                                                                                       \
            (ok) = false;                                                                          \
    } while (0)

void petl_tok_work_free(petl_tok_work *w) {
    petl_tok_text *ts[2] = {&w->raw, &w->text};
    for (int i = 0; i < 2; i++)
        free(ts[i]->cp), free(ts[i]->beg), free(ts[i]->end), free(ts[i]->ccc);
    free(w->words);
    free(w->segs[0]);
    free(w->segs[1]);
    free(w->bytes);
    free(w->boff);
    free(w->syms);
    free(w->heap);
    free(w->words2);
    free(w->uscore), free(w->ustart), free(w->uid), free(w->ufwd);
    free(w->pre.cp), free(w->pre.beg), free(w->pre.end), free(w->pre.ccc);
    for (int i = 0; i < 2; i++)
        free(w->seq[i].ids), free(w->seq[i].offs), free(w->seq[i].trim);
    petl_tok_regex_scratch_free(&w->rx);
    memset(w, 0, sizeof *w);
}

petl_status petl_tok_text_reserve(petl_tok_text *t, size_t need, petl_error *err) {
    if (need <= t->cap) return PETL_OK;
    size_t cap = next_cap(t->cap, need);
    bool ok = true;
    RESIZE(t->cp, cap, ok);
    RESIZE(t->beg, cap, ok);
    RESIZE(t->end, cap, ok);
    RESIZE(t->ccc, cap, ok);
    if (!ok) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu characters", need);
    t->cap = cap;
    return PETL_OK;
}

petl_status petl_tok_seq_push(petl_tok_seq *s, int32_t id, int32_t beg, int32_t end,
                              petl_error *err) {
    if (s->n == s->cap) {
        size_t cap = next_cap(s->cap, s->n + 1);
        bool ok = true;
        RESIZE(s->ids, cap, ok);
        RESIZE(s->offs, 2 * cap, ok);
        RESIZE(s->trim, 2 * cap, ok);
        if (!ok) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu tokens", cap);
        s->cap = cap;
    }
    s->ids[s->n] = id;
    s->offs[2 * s->n] = beg;
    s->offs[2 * s->n + 1] = end;
    s->trim[2 * s->n] = s->trim[2 * s->n + 1] = 0;
    s->n++;
    return PETL_OK;
}

/* Room for need segments in *segs. */
static petl_status segs_reserve(petl_tok_segment **segs, size_t *cap, size_t need,
                                petl_error *err) {
    if (need <= *cap) return PETL_OK;
    size_t c = next_cap(*cap, need);
    bool ok = true;
    RESIZE(*segs, c, ok);
    if (!ok) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu segments", c);
    *cap = c;
    return PETL_OK;
}

/* -------------------------------------------------------------------- added tokens */

/* The longest added token of the kind (normalized or not) whose pattern starts at t[k..n). */
static const petl_added_token *match_at(const petl_tokenizer *tok, const petl_tok_text *t, size_t k,
                                        size_t n, bool normalized) {
    const petl_added_token *best = NULL;
    for (size_t i = 0; i < tok->n_added; i++) {
        const petl_added_token *a = &tok->added[i];
        if (a->normalized != normalized || a->n_norm > n - k || (best && a->n_norm <= best->n_norm))
            continue;
        if (memcmp(t->cp + k, a->norm, a->n_norm * sizeof *a->norm) == 0) best = a;
    }
    return best;
}

/* Splits t[0..n) by the added tokens of one kind, as the reference's AddedVocabulary does: the
 * leftmost-longest matches from left to right (an Aho-Corasick search: after a match the search
 * goes on at its end), a single_word token only where no word character touches it, lstrip /
 * rstrip taking the whitespace beside it into the token. Segments into *segs (grown). */
static petl_status split_added(const petl_tokenizer *tok, const petl_tok_text *t, bool normalized,
                               petl_tok_segment **segs, size_t *cap, size_t *n_segs,
                               petl_error *err) {
    size_t n = t->n, start_offset = 0, ns = 0;
    bool any = false;
    for (size_t i = 0; i < tok->n_added && !any; i++)
        any = tok->added[i].normalized == normalized;
    for (size_t k = 0; any && k < n;) {
        if (!tok->first_byte[normalized][lead_byte(t->cp[k])]) {
            k++;
            continue;
        }
        const petl_added_token *a = match_at(tok, t, k, n, normalized);
        if (!a) {
            k++;
            continue;
        }
        size_t start = k, stop = k + a->n_norm;
        k = stop;
        if (a->single_word && ((start > 0 && petl_uc_is_word(t->cp[start - 1])) ||
                               (stop < n && petl_uc_is_word(t->cp[stop]))))
            continue;
        if (a->lstrip) {
            size_t s = start;
            while (s > 0 && petl_uc_is_whitespace(t->cp[s - 1]))
                s--;
            start = s > start_offset ? s : start_offset;
        }
        if (a->rstrip)
            while (stop < n && petl_uc_is_whitespace(t->cp[stop]))
                stop++;
        petl_status st = segs_reserve(segs, cap, ns + 2, err);
        if (st != PETL_OK) return st;
        if (start_offset < start) (*segs)[ns++] = (petl_tok_segment){start_offset, start, NULL};
        (*segs)[ns++] = (petl_tok_segment){start, stop, a};
        start_offset = stop;
    }
    if (start_offset < n) {
        petl_status st = segs_reserve(segs, cap, ns + 1, err);
        if (st != PETL_OK) return st;
        (*segs)[ns++] = (petl_tok_segment){start_offset, n, NULL};
    }
    *n_segs = ns;
    return PETL_OK;
}

static bool is_space_like(int32_t c) {
    return c == 0x120 || petl_uc_is_whitespace(c);
}

void petl_tok_count_spaces(const int32_t *s, size_t n, int32_t *lead, int32_t *trail) {
    size_t i = 0, j = n;
    while (i < n && is_space_like(s[i]))
        i++;
    while (j > 0 && is_space_like(s[j - 1]))
        j--;
    *lead = (int32_t)i;
    *trail = (int32_t)(n - j);
}

/* The same for a token of the vocabulary (UTF-8). */
static void count_token_spaces(const char *s, size_t n, int32_t *lead, int32_t *trail) {
    const unsigned char *u = (const unsigned char *)s;
    int32_t c;
    size_t i = 0, j = n;
    *lead = *trail = 0;
    while (i < n) {
        size_t m = petl_utf8_decode(u + i, n - i, &c);
        if (m == 0 || !is_space_like(c)) break;
        i += m;
        (*lead)++;
    }
    while (j > 0) {
        size_t b = j - 1;
        while (b > 0 && (u[b] & 0xC0) == 0x80)
            b--;
        if (petl_utf8_decode(u + b, j - b, &c) == 0 || !is_space_like(c)) break;
        j = b;
        (*trail)++;
    }
}

/* An added token matched at t[seg->start .. seg->stop): its span, and the spaces of its text
 * (the matched text, with what lstrip / rstrip took) for trim_offsets. */
static petl_status push_added(const petl_tokenizer *tok, const petl_tok_text *t,
                              const petl_tok_segment *seg, petl_tok_seq *seq, petl_error *err) {
    petl_status st =
        petl_tok_seq_push(seq, seg->tok->id, t->beg[seg->start], t->end[seg->stop - 1], err);
    if (st == PETL_OK && tok->trim_offsets)
        petl_tok_count_spaces(t->cp + seg->start, seg->stop - seg->start,
                              &seq->trim[2 * (seq->n - 1)], &seq->trim[2 * (seq->n - 1) + 1]);
    return st;
}

/* ------------------------------------------------------------------------- pipeline */

/* One piece of raw text between added tokens: normalizer, added tokens of the normalized
 * text, pre-tokenizer, model. */
static petl_status encode_piece(const petl_tokenizer *tok, const char *text, size_t a, size_t b,
                                petl_tok_work *w, petl_tok_seq *seq, petl_error *err) {
    petl_status st = petl_tok_normalize(tok, text, a, b, &w->text, err);
    size_t n_segs = 0;
    if (st == PETL_OK)
        st = split_added(tok, &w->text, true, &w->segs[1], &w->cap_segs[1], &n_segs, err);
    for (size_t s = 0; s < n_segs && st == PETL_OK; s++) {
        const petl_tok_segment *g = &w->segs[1][s];
        if (g->tok) {
            st = push_added(tok, &w->text, g, seq, err);
            continue;
        }
        if ((st = petl_tok_pre_tokenize(tok, w, g->start, g->stop, err)) != PETL_OK) break;
        for (size_t k = 0; k < w->n_words && st == PETL_OK; k++) {
            size_t first = seq->n;
            st = petl_tok_model_run(tok, w, w->words[2 * k], w->words[2 * k + 1], seq, err);
            for (size_t i = first; tok->trim_offsets && i < seq->n; i++) {
                int32_t id = seq->ids[i];
                if (tok->model == PETL_MODEL_UNIGRAM && id == tok->unk_id)
                    continue; /* its text is the characters it stands for: the model counted */
                count_token_spaces(tok->tokens[id], tok->token_len[id], &seq->trim[2 * i],
                                   &seq->trim[2 * i + 1]);
            }
        }
    }
    return st;
}

/* The tokens of one (valid UTF-8) text into seq. */
static petl_status encode_seq(const petl_tokenizer *tok, const char *text, size_t len,
                              petl_tok_work *w, petl_tok_seq *seq, petl_error *err) {
    seq->n = 0;
    /* Most texts hold no byte that starts a raw-matched added token: one piece, no split. */
    bool maybe = false;
    for (size_t i = 0; i < len && !maybe; i++)
        maybe = tok->first_byte[0][(unsigned char)text[i]];
    if (!maybe) return len > 0 ? encode_piece(tok, text, 0, len, w, seq, err) : PETL_OK;
    /* The raw text as characters, each its own span: the added tokens are matched on it. */
    petl_tok_text *raw = &w->raw;
    petl_status st = petl_tok_text_reserve(raw, len, err);
    if (st != PETL_OK) return st;
    raw->n = 0;
    for (size_t i = 0; i < len;) {
        size_t k = petl_utf8_decode((const unsigned char *)text + i, len - i, &raw->cp[raw->n]);
        raw->beg[raw->n] = (int32_t)i;
        raw->end[raw->n] = (int32_t)(i + k);
        raw->ccc[raw->n++] = 0;
        i += k;
    }
    size_t n_segs = 0;
    st = split_added(tok, raw, false, &w->segs[0], &w->cap_segs[0], &n_segs, err);
    for (size_t s = 0; s < n_segs && st == PETL_OK; s++) {
        const petl_tok_segment *g = &w->segs[0][s];
        if (g->tok)
            st = push_added(tok, raw, g, seq, err);
        else
            st = encode_piece(tok, text, (size_t)raw->beg[g->start], (size_t)raw->end[g->stop - 1],
                              w, seq, err);
    }
    return st;
}

/* RobertaProcessing's trim_offsets (the reference's byte-level process_offsets): a token whose
 * text starts or ends with spaces does not cover them. Counts are characters; spans are bytes
 * of text, so they move over whole characters. The first token keeps one leading space that
 * add_prefix_space would have added. */
static void trim_offsets(const petl_tokenizer *tok, const char *text, petl_tok_seq *s) {
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 0; i < s->n; i++) {
        int32_t lead = s->trim[2 * i], trail = s->trim[2 * i + 1];
        int32_t *beg = &s->offs[2 * i], *end = &s->offs[2 * i + 1];
        if (lead > 0) {
            bool first = i == 0 || *beg == 0;
            if (first && tok->add_prefix_space && lead == 1) lead = 0;
            for (int32_t k = 0; k < lead && *beg < *end; k++) {
                int32_t c;
                *beg += (int32_t)petl_utf8_decode(u + *beg, (size_t)(*end - *beg), &c);
            }
        }
        if (trail > 0) {
            /* only when at least `trail` characters precede the end */
            int32_t p = *end, k = 0;
            for (; k < trail && p > 0; k++) {
                p--;
                while (p > 0 && (u[p] & 0xC0) == 0x80)
                    p--;
            }
            if (k == trail) *end = p > *beg ? p : *beg;
        }
    }
}

void petl_encoding_free(petl_encoding *enc) {
    if (!enc) return;
    free(enc->ids);
    free(enc->type_ids);
    free(enc->offsets);
    enc->ids = enc->type_ids = enc->offsets = NULL;
    enc->len = enc->cap = 0;
}

/* Makes room for `more` ids after enc->len, growing geometrically. The offsets array grows with
 * them only when asked for (with_offsets), so that petl_tokenize never pays for it; its capacity
 * is then the same enc->cap, which is why a call with offsets after one without reallocates. */
static petl_status enc_reserve(petl_encoding *enc, size_t more, bool with_offsets,
                               petl_error *err) {
    size_t need = (size_t)enc->len + more;
    if (need <= (size_t)enc->cap && (!with_offsets || enc->offsets_cap == enc->cap)) return PETL_OK;
    if (need > (size_t)INT_MAX / 2)
        return petl_fail(err, PETL_ERR_ARG, "text too long: more than %d tokens", INT_MAX / 2);
    size_t cap = enc->cap > 0 ? (size_t)enc->cap : 64;
    while (cap < need)
        cap *= 2;
    int32_t *ids = realloc(enc->ids, cap * sizeof *ids);
    if (ids) enc->ids = ids;
    int32_t *types = ids ? realloc(enc->type_ids, cap * sizeof *types) : NULL;
    if (!ids || !types) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu tokens", cap);
    enc->type_ids = types;
    enc->cap = (int)cap;
    if (with_offsets) {
        int32_t *offs = realloc(enc->offsets, 2 * cap * sizeof *offs);
        if (!offs) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu offsets", cap);
        enc->offsets = offs;
        enc->offsets_cap = (int)cap;
    }
    return PETL_OK;
}

/* Lengths (*n1, *n2) kept of sequences of n1 and n2 tokens (n2 = 0 without a pair) under a
 * budget, as tokenizers' truncate_encodings does with longest_first. */
static void truncate_lengths(size_t *n1, size_t *n2, bool pair, size_t budget) {
    if (*n1 + *n2 <= budget) return;
    if (!pair) {
        *n1 = budget;
        return;
    }
    size_t a = *n1, b = *n2;
    bool swap = a > b;
    if (swap) a = *n2, b = *n1;
    if (a > budget)
        b = a;
    else
        b = a > budget - a ? a : budget - a;
    if (a + b > budget) {
        a = budget / 2;
        b = a + budget % 2;
    }
    *n1 = swap ? b : a;
    *n2 = swap ? a : b;
}

static petl_status check_utf8(const char *text, size_t len, const char *which, petl_error *err) {
    size_t bad = petl_utf8_check(text, len);
    if (bad == len) return PETL_OK;
    return petl_fail(err, PETL_ERR_UTF8, "%s: invalid UTF-8 at byte offset %zu (byte 0x%02X)",
                     which, bad, (unsigned char)text[bad]);
}

/* The template's pieces into enc: the sequences' tokens (cut to n[0], n[1]) with the piece's
 * type id, the special ids with the span (0, 0). */
static void apply_template(const petl_tokenizer *tok, const petl_template *tpl,
                           const petl_tok_seq *seq, const size_t *n, bool offsets,
                           petl_encoding *enc) {
    int len = 0;
    for (size_t p = 0; p < tpl->n; p++) {
        const petl_tpl_piece *pc = &tpl->pieces[p];
        if (pc->kind == PETL_PIECE_SPECIAL) {
            for (size_t i = 0; i < pc->n; i++, len++) {
                enc->ids[len] = tok->tpl_ids[pc->first + i];
                enc->type_ids[len] = pc->type_id;
                if (offsets) enc->offsets[2 * len] = enc->offsets[2 * len + 1] = 0;
            }
            continue;
        }
        const petl_tok_seq *s = &seq[pc->kind == PETL_PIECE_B];
        size_t cnt = n[pc->kind == PETL_PIECE_B];
        if (cnt == 0) continue; /* (an empty sequence has no arrays yet) */
        memcpy(enc->ids + len, s->ids, cnt * sizeof *s->ids);
        if (offsets) memcpy(enc->offsets + 2 * len, s->offs, 2 * cnt * sizeof *s->offs);
        for (size_t i = 0; i < cnt; i++)
            enc->type_ids[len++] = pc->type_id;
    }
    enc->len = len;
}

/* petl_tokenize, and petl_tokenize_offsets when `offsets` is set. */
static petl_status tokenize(const petl_tokenizer *tok, const char *text_a, size_t len_a,
                            const char *text_b, size_t len_b, int max_len, bool offsets,
                            petl_encoding *enc, petl_error *err) {
    if (!tok || !enc || (!text_a && len_a > 0))
        return petl_fail(err, PETL_ERR_ARG, "petl_tokenize: NULL argument");
    if (!text_a) text_a = "";
    /* An empty second text is no pair: transformers passes text_pair on only when it is
     * truthy, so tok("x", "") encodes "x" alone. */
    bool pair = text_b != NULL && len_b > 0;
    /* Spans are int32 byte positions. */
    if (len_a > INT32_MAX || (pair && len_b > INT32_MAX))
        return petl_fail(err, PETL_ERR_ARG, "petl_tokenize: text over 2 GiB");
    petl_status st = check_utf8(text_a, len_a, "text_a", err);
    if (st == PETL_OK && pair) st = check_utf8(text_b, len_b, "text_b", err);
    if (st != PETL_OK) return st;
    petl_tok_work w = {0};
    st = encode_seq(tok, text_a, len_a, &w, &w.seq[0], err);
    if (st == PETL_OK && pair) st = encode_seq(tok, text_b, len_b, &w, &w.seq[1], err);
    if (st != PETL_OK) goto done;
    const petl_template *tpl = pair ? &tok->pair : &tok->single;
    /* The budget is max_len minus the template's special tokens; the reference computes it in
     * unsigned arithmetic, so a max_len below their number wraps around and disables
     * truncation (max_len 1 of a BERT single text, or 2 of a pair, keeps everything). */
    size_t n[2] = {w.seq[0].n, w.seq[1].n};
    if (max_len > 0 && (size_t)max_len >= tpl->n_added)
        truncate_lengths(&n[0], &n[1], pair, (size_t)max_len - tpl->n_added);
    w.seq[0].n = n[0];
    w.seq[1].n = n[1];
    if (tok->trim_offsets && offsets) {
        trim_offsets(tok, text_a, &w.seq[0]);
        if (pair) trim_offsets(tok, text_b, &w.seq[1]);
    }
    size_t total = n[0] + n[1] + tpl->n_added;
    enc->len = 0;
    if ((st = enc_reserve(enc, total, offsets, err)) != PETL_OK) goto done;
    apply_template(tok, tpl, w.seq, n, offsets, enc);
done:
    petl_tok_work_free(&w);
    return st;
}

petl_status petl_tokenize(const petl_tokenizer *tok, const char *text_a, size_t len_a,
                          const char *text_b, size_t len_b, int max_len, petl_encoding *enc,
                          petl_error *err) {
    return tokenize(tok, text_a, len_a, text_b, len_b, max_len, false, enc, err);
}

petl_status petl_tokenize_offsets(const petl_tokenizer *tok, const char *text_a, size_t len_a,
                                  const char *text_b, size_t len_b, int max_len, petl_encoding *enc,
                                  petl_error *err) {
    return tokenize(tok, text_a, len_a, text_b, len_b, max_len, true, enc, err);
}
