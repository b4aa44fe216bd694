/* tokenizer.json: every stage of the pipeline read from the file HuggingFace's `tokenizers`
 * writes. A component petl does not implement, or an option of one that would change the
 * output, is refused at load naming it (never a silently different tokenization); sections
 * that do not change ids or spans (decoder, truncation: petl's max_len decides) are ignored.
 * Every field is type-checked: a wrong type is an error naming the component and the key. */
#include "tok_internal.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* What the reader passes around: the file's name for messages and the error. */
typedef struct {
    const char *what;
    petl_error *err;
} reader;

#define FAIL(r, ...) petl_fail((r)->err, PETL_ERR_FORMAT, __VA_ARGS__)

/* An optional boolean `key` of component `comp` (absent: def). */
static petl_status get_bool(const reader *r, json_t *o, const char *comp, const char *key, bool def,
                            bool *out) {
    json_t *v = json_object_get(o, key);
    *out = def;
    if (!v) return PETL_OK;
    if (!json_is_boolean(v))
        return FAIL(r, "%s: %s: \"%s\" must be true or false", r->what, comp, key);
    *out = json_is_true(v);
    return PETL_OK;
}

/* A required boolean. */
static petl_status need_bool(const reader *r, json_t *o, const char *comp, const char *key,
                             bool *out) {
    if (!json_object_get(o, key)) return FAIL(r, "%s: %s: \"%s\" is missing", r->what, comp, key);
    return get_bool(r, o, comp, key, false, out);
}

/* An optional string (absent: def; the result points into o or def). */
static petl_status get_string(const reader *r, json_t *o, const char *comp, const char *key,
                              const char *def, const char **out) {
    json_t *v = json_object_get(o, key);
    *out = def;
    if (!v) return PETL_OK;
    if (!json_is_string(v)) return FAIL(r, "%s: %s: \"%s\" must be a string", r->what, comp, key);
    *out = json_string_value(v);
    if (strlen(*out) != json_string_length(v))
        return FAIL(r, "%s: %s: \"%s\" contains a NUL character", r->what, comp, key);
    return PETL_OK;
}

/* An integer in [0, max] (absent: def when def >= 0, else an error). */
static petl_status get_index(const reader *r, json_t *o, const char *comp, const char *key,
                             long long def, long long max, long long *out) {
    json_t *v = json_object_get(o, key);
    *out = def;
    if (!v && def >= 0) return PETL_OK;
    if (!v) return FAIL(r, "%s: %s: \"%s\" is missing", r->what, comp, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return FAIL(r, "%s: %s: \"%s\" must be an integer from 0 to %lld", r->what, comp, key, max);
    *out = json_integer_value(v);
    return PETL_OK;
}

/* The "type" of a component object. */
static petl_status get_type(const reader *r, json_t *o, const char *comp, const char **type) {
    if (!json_is_object(o)) return FAIL(r, "%s: \"%s\" must be an object or null", r->what, comp);
    json_t *t = json_object_get(o, "type");
    if (!json_is_string(t)) return FAIL(r, "%s: %s has no \"type\" string", r->what, comp);
    *type = json_string_value(t);
    return PETL_OK;
}

/* The "pattern" of Replace and Split: {"String": literal} or {"Regex": Oniguruma syntax}. */
static petl_status get_pattern(const reader *r, json_t *o, const char *comp, const char **pat,
                               bool *literal) {
    json_t *pt = json_object_get(o, "pattern");
    const char *str = NULL, *rx = NULL;
    petl_status st;
    if (json_is_object(pt) && json_object_size(pt) == 1 &&
        ((st = get_string(r, pt, comp, "String", NULL, &str)) != PETL_OK ||
         (st = get_string(r, pt, comp, "Regex", NULL, &rx)) != PETL_OK))
        return st;
    if (!str && !rx)
        return FAIL(r, "%s: %s: \"pattern\" must be {\"String\": ...} or {\"Regex\": ...}", r->what,
                    comp);
    *pat = str ? str : rx;
    *literal = str != NULL;
    return PETL_OK;
}

/* A split "behavior" (absent: def, or an error when def is NULL). */
static petl_status get_behavior(const reader *r, json_t *o, const char *comp, const char *def,
                                petl_tok_split_behavior *out) {
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const char *b;
    petl_status st = get_string(r, o, comp, "behavior", def, &b);
    if (st != PETL_OK) return st;
    if (!b) return FAIL(r, "%s: %s: \"behavior\" is missing", r->what, comp);
    size_t k = 0;
    while (k < 5 && strcmp(b, names[k]) != 0)
        k++;
    if (k == 5) return FAIL(r, "%s: %s: behavior \"%.32s\" is unknown", r->what, comp, b);
    *out = (petl_tok_split_behavior)k;
    return PETL_OK;
}

/* -------------------------------------------------------------------------- normalizer */

/* Standard base64 with canonical padding, as the reference's decoder takes it (no spaces, no
 * missing "=", no stray bits). Returns the decoded bytes (*n of them; malloc'd) or NULL. */
static unsigned char *base64_decode(const char *s, size_t len, size_t *n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len % 4 != 0) return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            const char *p = s[i + k] ? strchr(abc, s[i + k]) : NULL;
            if (s[i + k] == '=' && i + 4 == len && k >= 2 && (k == 3 || s[i + 3] == '=')) {
                pad++;
                v <<= 6;
                continue;
            }
            if (!p || pad) {
                free(out);
                return NULL;
            }
            v = v << 6 | (uint32_t)(p - abc);
        }
        if ((pad == 1 && (v & 0xFF)) || (pad == 2 && (v & 0xFFFF))) { /* stray bits */
            free(out);
            return NULL;
        }
        out[o++] = (unsigned char)(v >> 16);
        if (pad < 2) out[o++] = (unsigned char)(v >> 8);
        if (pad < 1) out[o++] = (unsigned char)v;
    }
    *n = o;
    return out;
}

/* Precompiled: "precompiled_charsmap", SentencePiece's normalization rules in base64: a
 * little-endian u32 byte size of the trie, the trie (u32 units, size / 4 of them), then the
 * replacement strings (UTF-8, each ending at a NUL). */
static petl_status read_precompiled(const reader *r, json_t *o, petl_norm_step *s) {
    const char *c = "normalizer \"Precompiled\"";
    json_t *b = json_object_get(o, "precompiled_charsmap");
    if (!json_is_string(b))
        return FAIL(r, "%s: %s: \"precompiled_charsmap\" must be a string", r->what, c);
    size_t n = 0;
    unsigned char *raw = base64_decode(json_string_value(b), json_string_length(b), &n);
    if (!raw) return FAIL(r, "%s: %s: \"precompiled_charsmap\" is not valid base64", r->what, c);
    uint32_t size = n >= 4 ? (uint32_t)raw[0] | (uint32_t)raw[1] << 8 | (uint32_t)raw[2] << 16 |
                                 (uint32_t)raw[3] << 24
                           : 0;
    size_t units = size / 4;
    petl_status st = PETL_OK;
    if (n < 4 || units > (n - 4) / 4) {
        st = FAIL(r, "%s: %s: the charsmap is cut short (%zu bytes)", r->what, c, n);
    } else if (units == 0) {
        st = FAIL(r, "%s: %s: the charsmap's trie is empty", r->what, c);
    } else if (petl_utf8_check((const char *)raw + 4 + 4 * units, n - 4 - 4 * units) !=
               n - 4 - 4 * units) {
        st = FAIL(r, "%s: %s: the charsmap's strings are not valid UTF-8", r->what, c);
    } else if (!(s->trie = malloc(units * sizeof *s->trie)) ||
               !(s->blob = malloc(n - 4 - 4 * units + 1))) {
        st = petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
    } else {
        for (size_t k = 0; k < units; k++) {
            const unsigned char *p = raw + 4 + 4 * k;
            s->trie[k] =
                (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        }
        s->n_trie = units;
        s->n_blob = n - 4 - 4 * units;
        memcpy(s->blob, raw + 4 + 4 * units, s->n_blob);
    }
    free(raw);
    return st;
}

/* One step of a normalizer Sequence (or a normalizer alone). */
static petl_status read_norm_step(const reader *r, petl_tokenizer *tok, json_t *o,
                                  const char *comp) {
    const char *type;
    petl_status st = get_type(r, o, comp, &type);
    if (st != PETL_OK) return st;
    if (tok->n_norm_steps == sizeof tok->norm_steps / sizeof tok->norm_steps[0])
        return FAIL(r, "%s: %s: more than 8 normalizers is not supported", r->what, comp);
    petl_norm_step *s = &tok->norm_steps[tok->n_norm_steps];
    petl_tokenizer_opts *op = &tok->opts;
    if (strcmp(type, "Lowercase") == 0) {
        s->kind = PETL_NORM_LOWERCASE;
        op->lowercase = true;
    } else if (strcmp(type, "StripAccents") == 0) {
        s->kind = PETL_NORM_STRIP_ACCENTS;
        op->strip_accents = 1;
    } else if (strcmp(type, "NFD") == 0 || strcmp(type, "NFKD") == 0) {
        s->kind = type[2] == 'K' ? PETL_NORM_NFKD : PETL_NORM_NFD;
    } else if (strcmp(type, "NFC") == 0 || strcmp(type, "NFKC") == 0) {
        s->kind = type[2] == 'K' ? PETL_NORM_NFKC : PETL_NORM_NFC;
    } else if (strcmp(type, "Precompiled") == 0) {
        s->kind = PETL_NORM_PRECOMPILED;
        tok->n_norm_steps++; /* (what it holds is freed with the tokenizer) */
        return read_precompiled(r, o, s);
    } else if (strcmp(type, "Strip") == 0) {
        s->kind = PETL_NORM_STRIP;
        if ((st = get_bool(r, o, "normalizer \"Strip\"", "strip_left", true, &s->left)) !=
                PETL_OK ||
            (st = get_bool(r, o, "normalizer \"Strip\"", "strip_right", true, &s->right)) !=
                PETL_OK)
            return st;
    } else if (strcmp(type, "Replace") == 0) {
        const char *c = "normalizer \"Replace\"", *pat, *content;
        bool literal;
        if ((st = get_pattern(r, o, c, &pat, &literal)) != PETL_OK ||
            (st = get_string(r, o, c, "content", NULL, &content)) != PETL_OK)
            return st;
        if (!content) return FAIL(r, "%s: %s: \"content\" is missing", r->what, c);
        s->kind = PETL_NORM_REPLACE;
        tok->n_norm_steps++; /* what it holds is freed with the tokenizer from here on */
        s->prepend = malloc((strlen(content) + 1) * sizeof *s->prepend);
        if (!s->prepend) return petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
        for (size_t i = 0, len = strlen(content); i < len;)
            i += petl_utf8_decode((const unsigned char *)content + i, len - i,
                                  &s->prepend[s->n_prepend++]);
        return petl_tok_regex_compile(pat, literal, r->what, c, &s->re, r->err);
    } else if (strcmp(type, "Prepend") == 0) {
        const char *pre;
        if ((st = get_string(r, o, "normalizer \"Prepend\"", "prepend", NULL, &pre)) != PETL_OK)
            return st;
        if (!pre) return FAIL(r, "%s: normalizer \"Prepend\": \"prepend\" is missing", r->what);
        s->kind = PETL_NORM_PREPEND;
        s->prepend = malloc((strlen(pre) + 1) * sizeof *s->prepend);
        if (!s->prepend) return petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
        for (size_t i = 0, len = strlen(pre); i < len;)
            i += petl_utf8_decode((const unsigned char *)pre + i, len - i,
                                  &s->prepend[s->n_prepend++]);
    } else {
        return FAIL(r, "%s: normalizer \"%s\" is not supported", r->what, type);
    }
    tok->n_norm_steps++;
    return PETL_OK;
}

static petl_status read_normalizer(const reader *r, petl_tokenizer *tok, json_t *o,
                                   const petl_tokenizer_opts *bert) {
    petl_tokenizer_opts *op = &tok->opts;
    /* what petl_tokenizer_get_opts reports without a BertNormalizer: nothing of it applies */
    op->clean_text = op->handle_chinese_chars = op->lowercase = false;
    op->strip_accents = 0;
    tok->normalizer = PETL_NORM_NONE;
    if (!o || json_is_null(o)) return PETL_OK;
    const char *type;
    petl_status st = get_type(r, o, "normalizer", &type);
    if (st != PETL_OK) return st;
    if (strcmp(type, "BertNormalizer") != 0) {
        /* anything else runs as a Sequence of steps */
        if (strcmp(type, "Sequence") != 0) return read_norm_step(r, tok, o, "normalizer");
        json_t *list = json_object_get(o, "normalizers");
        if (!json_is_array(list))
            return FAIL(r, "%s: normalizer \"Sequence\": \"normalizers\" must be an array",
                        r->what);
        for (size_t k = 0; k < json_array_size(list) && st == PETL_OK; k++) {
            char comp[64];
            snprintf(comp, sizeof comp, "normalizer \"Sequence\"[%zu]", k);
            st = read_norm_step(r, tok, json_array_get(list, k), comp);
        }
        return st;
    }
    const char *c = "normalizer \"BertNormalizer\"";
    if ((st = need_bool(r, o, c, "clean_text", &op->clean_text)) != PETL_OK ||
        (st = need_bool(r, o, c, "handle_chinese_chars", &op->handle_chinese_chars)) != PETL_OK ||
        (st = need_bool(r, o, c, "lowercase", &op->lowercase)) != PETL_OK)
        return st;
    /* strip_accents: null follows lowercase */
    json_t *sa = json_object_get(o, "strip_accents");
    if (!sa) return FAIL(r, "%s: %s: \"strip_accents\" is missing", r->what, c);
    if (!json_is_null(sa) && !json_is_boolean(sa))
        return FAIL(r, "%s: %s: \"strip_accents\" must be true, false or null", r->what, c);
    op->strip_accents = json_is_null(sa) ? -1 : json_is_true(sa);
    if (bert) {
        op->lowercase = bert->lowercase;
        op->handle_chinese_chars = bert->handle_chinese_chars;
        op->strip_accents = bert->strip_accents;
    }
    if (op->strip_accents < 0) op->strip_accents = op->lowercase; /* null follows lowercase */
    tok->normalizer = PETL_NORM_BERT;
    return PETL_OK;
}

/* ----------------------------------------------------------------------- pre-tokenizer */

/* One pre-tokenizer (not a Sequence) into *kind and its settings in tok. */
static petl_status read_pre_one(const reader *r, petl_tokenizer *tok, json_t *o, const char *comp,
                                petl_tok_pre_tokenizer *kind) {
    const char *type;
    petl_status st = get_type(r, o, comp, &type);
    if (st != PETL_OK) return st;
    if (strcmp(type, "BertPreTokenizer") == 0) {
        *kind = PETL_PRE_BERT;
        return PETL_OK;
    }
    if (strcmp(type, "Whitespace") == 0 || strcmp(type, "WhitespaceSplit") == 0) {
        *kind = type[10] ? PETL_PRE_WHITESPACE_SPLIT : PETL_PRE_WHITESPACE;
        return PETL_OK;
    }
    if (strcmp(type, "Digits") == 0) {
        *kind = PETL_PRE_DIGITS;
        return get_bool(r, o, "pre_tokenizer \"Digits\"", "individual_digits", false,
                        &tok->individual_digits);
    }
    if (strcmp(type, "Punctuation") == 0) {
        *kind = PETL_PRE_PUNCTUATION;
        return get_behavior(r, o, "pre_tokenizer \"Punctuation\"", "Isolated",
                            &tok->punct_behavior);
    }
    if (strcmp(type, "Split") == 0) {
        /* the reference requires all three keys */
        const char *c = "pre_tokenizer \"Split\"", *pat;
        bool literal;
        petl_tok_split *sp = &tok->splits[tok->n_splits];
        if (tok->n_splits == sizeof tok->splits / sizeof tok->splits[0])
            return FAIL(r, "%s: %s: more than 9 Splits is not supported", r->what, comp);
        if ((st = get_pattern(r, o, c, &pat, &literal)) != PETL_OK ||
            (st = get_behavior(r, o, c, NULL, &sp->behavior)) != PETL_OK ||
            (st = need_bool(r, o, c, "invert", &sp->invert)) != PETL_OK ||
            (st = petl_tok_regex_compile(pat, literal, r->what, c, &sp->re, r->err)) != PETL_OK)
            return st;
        tok->n_splits++;
        *kind = PETL_PRE_SPLIT;
        return PETL_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        const char *c = "pre_tokenizer \"ByteLevel\"";
        bool use_regex, trim;
        if ((st = get_bool(r, o, c, "add_prefix_space", true, &tok->prefix_space)) != PETL_OK ||
            (st = get_bool(r, o, c, "trim_offsets", true, &trim)) != PETL_OK ||
            (st = get_bool(r, o, c, "use_regex", true, &use_regex)) != PETL_OK)
            return st;
        *kind = PETL_PRE_BYTELEVEL;
        return tok->split_regex ? FAIL(r, "%s: ByteLevel twice is not supported", r->what)
                                : petl_tok_bytelevel_init(tok, use_regex, r->what, r->err);
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *c = "pre_tokenizer \"Metaspace\"", *rep, *scheme;
        bool split;
        json_t *aps = json_object_get(o, "add_prefix_space");
        if ((st = get_string(r, o, c, "replacement", NULL, &rep)) != PETL_OK ||
            (st = get_string(r, o, c, "prepend_scheme", "always", &scheme)) != PETL_OK ||
            (st = get_bool(r, o, c, "split", true, &split)) != PETL_OK)
            return st;
        int32_t cp;
        if (!rep || !*rep ||
            petl_utf8_decode((const unsigned char *)rep, strlen(rep), &cp) != strlen(rep))
            return FAIL(r, "%s: %s: \"replacement\" must be one character", r->what, c);
        if (aps && !json_is_null(aps) && !json_is_boolean(aps))
            return FAIL(r, "%s: %s: \"add_prefix_space\" must be true, false or null", r->what, c);
        petl_tok_prepend p = !strcmp(scheme, "always")  ? PETL_PREPEND_ALWAYS
                             : !strcmp(scheme, "first") ? PETL_PREPEND_FIRST
                             : !strcmp(scheme, "never") ? PETL_PREPEND_NEVER
                                                        : (petl_tok_prepend)-1;
        if ((int)p < 0)
            return FAIL(r, "%s: %s: \"prepend_scheme\" must be always, first or never", r->what, c);
        if (json_is_false(aps) && p != PETL_PREPEND_NEVER)
            return FAIL(r, "%s: %s: add_prefix_space does not match prepend_scheme", r->what, c);
        tok->ms_replacement = cp;
        tok->ms_scheme = p;
        tok->ms_split = split;
        *kind = PETL_PRE_METASPACE;
        return PETL_OK;
    }
    return FAIL(r, "%s: pre_tokenizer \"%s\" is not supported", r->what, type);
}

static petl_status read_pre_tokenizer(const reader *r, petl_tokenizer *tok, json_t *o) {
    tok->pre_tokenizer = PETL_PRE_NONE;
    if (!o || json_is_null(o)) return PETL_OK;
    const char *type;
    petl_status st = get_type(r, o, "pre_tokenizer", &type);
    if (st != PETL_OK) return st;
    if (strcmp(type, "Sequence") != 0)
        return read_pre_one(r, tok, o, "pre_tokenizer", &tok->pre_tokenizer);
    /* a Sequence: splitting stages, then any one (petl runs a stage that rewrites the
     * characters, ByteLevel or Metaspace, only last) */
    json_t *list = json_object_get(o, "pretokenizers");
    size_t n = json_array_size(list);
    if (!json_is_array(list) || n == 0 || n > 9)
        return FAIL(r,
                    "%s: pre_tokenizer \"Sequence\": \"pretokenizers\" must be an array of 1 "
                    "to 9",
                    r->what);
    for (size_t k = 0; k < n; k++) {
        char comp[64];
        snprintf(comp, sizeof comp, "pre_tokenizer \"Sequence\"[%zu]", k);
        petl_tok_pre_tokenizer kind;
        if ((st = read_pre_one(r, tok, json_array_get(list, k), comp, &kind)) != PETL_OK) return st;
        if (k + 1 < n && (kind == PETL_PRE_BYTELEVEL || kind == PETL_PRE_METASPACE))
            return FAIL(r,
                        "%s: %s: ByteLevel or Metaspace before another pre-tokenizer is not "
                        "supported",
                        r->what, comp);
        if (k + 1 < n)
            tok->pre_split[tok->n_pre_split++] = kind;
        else
            tok->pre_tokenizer = kind;
    }
    return PETL_OK;
}

/* ------------------------------------------------------------------------------- model */

/* A vocabulary object (token -> id): ids must be 0 .. n-1, each once. */
static petl_status read_vocab(const reader *r, petl_tokenizer *tok, json_t *v, const char *comp) {
    if (!json_is_object(v))
        return FAIL(r, "%s: %s: \"vocab\" must be an object of token -> id", r->what, comp);
    size_t n = json_object_size(v);
    if (n >= (size_t)INT32_MAX / 4) return FAIL(r, "%s: %s: vocabulary too large", r->what, comp);
    const char **toks = calloc(n + 1, sizeof *toks);
    uint32_t *lens = calloc(n + 1, sizeof *lens);
    petl_status st = PETL_OK;
    if (!toks || !lens) st = petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        if (st != PETL_OK) break;
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= (json_int_t)n) {
            st = FAIL(r,
                      "%s: %s: the id of \"%.64s\" must be an integer from 0 to %zu (ids "
                      "without gaps)",
                      r->what, comp, key, n ? n - 1 : 0);
            break;
        }
        size_t id = (size_t)json_integer_value(val);
        if (toks[id]) {
            st = FAIL(r, "%s: %s: id %zu is given to \"%.64s\" and \"%.64s\"", r->what, comp, id,
                      toks[id], key);
            break;
        }
        toks[id] = key;
        lens[id] = (uint32_t)strlen(key);
    }
    if (st == PETL_OK) st = petl_tok_vocab_set(tok, toks, lens, (int32_t)n, r->what, r->err);
    free(toks);
    free(lens);
    if (st != PETL_OK) return st;
    tok->n_model = tok->n_vocab;
    tok->max_token_len = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++)
        if (tok->token_len[id] > tok->max_token_len) tok->max_token_len = tok->token_len[id];
    return PETL_OK;
}

static petl_status read_wordpiece(const reader *r, petl_tokenizer *tok, json_t *o) {
    const char *c = "model \"WordPiece\"", *unk, *prefix;
    long long max_chars;
    petl_status st;
    if ((st = get_string(r, o, c, "unk_token", "[UNK]", &unk)) != PETL_OK ||
        (st = get_string(r, o, c, "continuing_subword_prefix", "##", &prefix)) != PETL_OK ||
        (st = get_index(r, o, c, "max_input_chars_per_word", 100, INT32_MAX, &max_chars)) !=
            PETL_OK)
        return st;
    json_t *v = json_object_get(o, "vocab");
    if (!v) return FAIL(r, "%s: %s: \"vocab\" is missing", r->what, c);
    if ((st = read_vocab(r, tok, v, c)) != PETL_OK) return st;
    tok->model = PETL_MODEL_WORDPIECE;
    tok->max_word_chars = (size_t)max_chars;
    tok->prefix = strdup(prefix);
    if (!tok->prefix) return petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
    tok->prefix_len = strlen(prefix);
    /* The reference fails at the first word it cannot match; refuse such a file at once. */
    tok->unk_id = petl_tokenizer_token_to_id(tok, unk);
    if (tok->unk_id < 0)
        return FAIL(r, "%s: %s: unk_token \"%.64s\" is not in the vocabulary", r->what, c, unk);
    return PETL_OK;
}

/* An optional string that may be null (absent or null: NULL). */
static petl_status get_opt_string(const reader *r, json_t *o, const char *comp, const char *key,
                                  const char **out) {
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v)) return PETL_OK;
    return get_string(r, o, comp, key, NULL, out);
}

/* One merge: "a b" (the legacy form: exactly one space) or ["a", "b"]. */
static petl_status merge_pair(const reader *r, json_t *m, size_t k, char *buf, size_t cap,
                              const char **a, const char **b) {
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        return PETL_OK;
    }
    const char *s = json_string_value(m), *sp = s ? strchr(s, ' ') : NULL;
    if (!s || !sp || strchr(sp + 1, ' ') || strlen(s) >= cap)
        return FAIL(r, "%s: model \"BPE\": merges[%zu] must be \"a b\" or [\"a\", \"b\"]", r->what,
                    k);
    memcpy(buf, s, strlen(s) + 1);
    buf[sp - s] = '\0';
    *a = buf;
    *b = buf + (sp - s) + 1;
    return PETL_OK;
}

/* BPE's merges: each pair and what it makes must be in the vocabulary. */
static petl_status read_merges(const reader *r, petl_tokenizer *tok, json_t *ms) {
    const char *c = "model \"BPE\"";
    if (!json_is_array(ms)) return FAIL(r, "%s: %s: \"merges\" must be an array", r->what, c);
    size_t n = json_array_size(ms), kept = 0;
    int32_t *pairs = malloc((2 * n + 1) * sizeof *pairs),
            *merged = malloc((n + 1) * sizeof *merged);
    char *buf = malloc(2 * tok->max_token_len + 2), *cat = malloc(2 * tok->max_token_len + 2);
    petl_status st = PETL_OK;
    if (!pairs || !merged || !buf || !cat)
        st = petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory for %zu merges", r->what, n);
    for (size_t k = 0; k < n && st == PETL_OK; k++) {
        json_t *m = json_array_get(ms, k);
        /* the legacy form skips "#version" lines */
        if (json_is_string(m) && strncmp(json_string_value(m), "#version", 8) == 0) continue;
        const char *a = NULL, *b = NULL;
        if ((st = merge_pair(r, m, k, buf, 2 * tok->max_token_len + 2, &a, &b)) != PETL_OK) break;
        size_t la = strlen(a), lb = strlen(b);
        int32_t ia = petl_tokenizer_token_to_id(tok, a), ib = petl_tokenizer_token_to_id(tok, b);
        if (ia < 0 || ib < 0) {
            st = FAIL(r, "%s: %s: merges[%zu]: \"%.64s\" is not in the vocabulary", r->what, c, k,
                      ia < 0 ? a : b);
            break;
        }
        /* the merged token: a, then b without its continuing-subword prefix */
        if (lb < tok->prefix_len || memcmp(b, tok->prefix ? tok->prefix : "", tok->prefix_len)) {
            st = FAIL(r, "%s: %s: merges[%zu]: \"%.64s\" lacks the continuing_subword_prefix",
                      r->what, c, k, b);
            break;
        }
        memcpy(cat, a, la);
        memcpy(cat + la, b + tok->prefix_len, lb - tok->prefix_len);
        int32_t id = petl_tok_vocab_find(tok, "", 0, cat, la + lb - tok->prefix_len);
        if (id < 0) {
            st = FAIL(r, "%s: %s: merges[%zu]: \"%.*s\" is not in the vocabulary", r->what, c, k,
                      (int)(la + lb - tok->prefix_len < 64 ? la + lb - tok->prefix_len : 64), cat);
            break;
        }
        pairs[2 * kept] = ia;
        pairs[2 * kept + 1] = ib;
        merged[kept++] = id;
    }
    if (st == PETL_OK) st = petl_tok_bpe_set_merges(tok, pairs, merged, kept, r->what, r->err);
    free(pairs), free(merged), free(buf), free(cat);
    return st;
}

static petl_status read_bpe(const reader *r, petl_tokenizer *tok, json_t *o) {
    const char *c = "model \"BPE\"", *unk, *prefix, *suffix;
    petl_status st;
    json_t *drop = json_object_get(o, "dropout");
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0))
        return FAIL(r, "%s: %s: \"dropout\" is not supported (it makes tokenization random)",
                    r->what, c);
    if ((st = get_opt_string(r, o, c, "unk_token", &unk)) != PETL_OK ||
        (st = get_opt_string(r, o, c, "continuing_subword_prefix", &prefix)) != PETL_OK ||
        (st = get_opt_string(r, o, c, "end_of_word_suffix", &suffix)) != PETL_OK ||
        (st = get_bool(r, o, c, "fuse_unk", false, &tok->fuse_unk)) != PETL_OK ||
        (st = get_bool(r, o, c, "byte_fallback", false, &tok->byte_fallback)) != PETL_OK ||
        (st = get_bool(r, o, c, "ignore_merges", false, &tok->ignore_merges)) != PETL_OK)
        return st;
    if ((prefix && strlen(prefix) > 256) || (suffix && strlen(suffix) > 256))
        return FAIL(r, "%s: %s: a prefix or suffix over 256 bytes is not supported", r->what, c);
    if (tok->byte_fallback && ((prefix && *prefix) || (suffix && *suffix)))
        return FAIL(r, "%s: %s: byte_fallback with a prefix or suffix is not supported", r->what,
                    c);
    json_t *v = json_object_get(o, "vocab"), *ms = json_object_get(o, "merges");
    if (!v || !ms) return FAIL(r, "%s: %s: \"vocab\" and \"merges\" are required", r->what, c);
    if ((st = read_vocab(r, tok, v, c)) != PETL_OK) return st;
    tok->model = PETL_MODEL_BPE;
    tok->prefix = prefix ? strdup(prefix) : NULL;
    tok->suffix = suffix ? strdup(suffix) : NULL;
    if ((prefix && !tok->prefix) || (suffix && !tok->suffix))
        return petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
    tok->prefix_len = prefix ? strlen(prefix) : 0;
    tok->suffix_len = suffix ? strlen(suffix) : 0;
    tok->unk_id = -1;
    if (unk && (tok->unk_id = petl_tokenizer_token_to_id(tok, unk)) < 0)
        return FAIL(r, "%s: %s: unk_token \"%.64s\" is not in the vocabulary", r->what, c, unk);
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_ids[b] = petl_tokenizer_token_to_id(tok, name);
    }
    return read_merges(r, tok, ms);
}

/* Unigram: "vocab" a list of [piece, score], "unk_id" its index (required: petl refuses the
 * reference's failure at the first unknown character at load instead), "byte_fallback". */
static petl_status read_unigram(const reader *r, petl_tokenizer *tok, json_t *o) {
    const char *c = "model \"Unigram\"";
    json_t *v = json_object_get(o, "vocab");
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n == 0)
        return FAIL(r, "%s: %s: \"vocab\" must be a non-empty array of [piece, score]", r->what, c);
    if (n >= (size_t)INT32_MAX / 4) return FAIL(r, "%s: %s: vocabulary too large", r->what, c);
    long long unk;
    petl_status st = get_index(r, o, c, "unk_id", -1, (long long)n - 1, &unk);
    if (st != PETL_OK) return st;
    if ((st = get_bool(r, o, c, "byte_fallback", false, &tok->byte_fallback)) != PETL_OK) return st;
    const char **toks = calloc(n, sizeof *toks);
    uint32_t *lens = calloc(n, sizeof *lens);
    tok->scores = malloc(n * sizeof *tok->scores);
    if (!toks || !lens || !tok->scores)
        st = petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
    double min_score = 0;
    for (size_t k = 0; k < n && st == PETL_OK; k++) {
        json_t *e = json_array_get(v, k), *p = json_array_get(e, 0), *sc = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(p) ||
            !json_is_number(sc) || strlen(json_string_value(p)) != json_string_length(p)) {
            st = FAIL(r, "%s: %s: vocab[%zu] must be [piece, score]", r->what, c, k);
            break;
        }
        toks[k] = json_string_value(p);
        lens[k] = (uint32_t)json_string_length(p);
        tok->scores[k] = json_number_value(sc);
        if (k == 0 || tok->scores[k] < min_score) min_score = tok->scores[k];
    }
    if (st == PETL_OK) st = petl_tok_vocab_set(tok, toks, lens, (int32_t)n, r->what, r->err);
    free(toks);
    free(lens);
    if (st != PETL_OK) return st;
    tok->model = PETL_MODEL_UNIGRAM;
    tok->n_model = tok->n_vocab;
    tok->unk_id = (int32_t)unk;
    tok->unk_score = min_score - 10.0;
    tok->max_token_len = 0;
    for (int32_t id = 0; id < tok->n_vocab; id++)
        if (tok->token_len[id] > tok->max_token_len) tok->max_token_len = tok->token_len[id];
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        tok->byte_ids[b] = petl_tokenizer_token_to_id(tok, name);
    }
    return PETL_OK;
}

static petl_status read_model(const reader *r, petl_tokenizer *tok, json_t *o) {
    if (!o || json_is_null(o)) return FAIL(r, "%s: \"model\" is missing", r->what);
    const char *type;
    petl_status st = get_type(r, o, "model", &type);
    if (st != PETL_OK) return st;
    if (strcmp(type, "WordPiece") == 0) return read_wordpiece(r, tok, o);
    if (strcmp(type, "BPE") == 0) return read_bpe(r, tok, o);
    if (strcmp(type, "Unigram") == 0) return read_unigram(r, tok, o);
    return FAIL(r, "%s: model \"%s\" is not supported", r->what, type);
}

/* ------------------------------------------------------------------------ added tokens */

static petl_status read_added(const reader *r, petl_tokenizer *tok, json_t *a) {
    if (!a || json_is_null(a)) return petl_tok_set_added(tok, NULL, 0, r->what, r->err);
    if (!json_is_array(a)) return FAIL(r, "%s: \"added_tokens\" must be an array", r->what);
    size_t n = json_array_size(a);
    petl_added_spec *specs = calloc(n + 1, sizeof *specs);
    if (!specs) return petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
    petl_status st = PETL_OK;
    for (size_t i = 0; i < n && st == PETL_OK; i++) {
        json_t *t = json_array_get(a, i);
        char comp[48];
        snprintf(comp, sizeof comp, "added_tokens[%zu]", i);
        if (!json_is_object(t)) {
            st = FAIL(r, "%s: %s must be an object", r->what, comp);
            break;
        }
        petl_added_spec *s = &specs[i];
        long long id;
        bool special;
        if ((st = get_index(r, t, comp, "id", -1, UINT32_MAX, &id)) != PETL_OK ||
            (st = get_string(r, t, comp, "content", NULL, &s->content)) != PETL_OK ||
            (st = get_bool(r, t, comp, "special", false, &special)) != PETL_OK ||
            (st = get_bool(r, t, comp, "normalized", !special, &s->normalized)) != PETL_OK ||
            (st = get_bool(r, t, comp, "single_word", false, &s->single_word)) != PETL_OK ||
            (st = get_bool(r, t, comp, "lstrip", false, &s->lstrip)) != PETL_OK ||
            (st = get_bool(r, t, comp, "rstrip", false, &s->rstrip)) != PETL_OK)
            break;
        if (!s->content) st = FAIL(r, "%s: %s: \"content\" is missing", r->what, comp);
    }
    if (st == PETL_OK) st = petl_tok_set_added(tok, specs, n, r->what, r->err);
    free(specs);
    return st;
}

/* ---------------------------------------------------------------------- post-processor */

/* A [token, id] pair of BertProcessing / RobertaProcessing. */
static petl_status special_pair(const reader *r, const petl_tokenizer *tok, json_t *o,
                                const char *comp, const char *key, int32_t *id) {
    json_t *v = json_object_get(o, key);
    json_t *s = json_array_get(v, 0), *i = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_string(s) || !json_is_integer(i))
        return FAIL(r, "%s: %s: \"%s\" must be [token, id]", r->what, comp, key);
    if (json_integer_value(i) < 0 || json_integer_value(i) >= tok->n_vocab)
        return FAIL(r, "%s: %s: \"%s\": id %lld is outside the vocabulary", r->what, comp, key,
                    (long long)json_integer_value(i));
    *id = (int32_t)json_integer_value(i);
    return PETL_OK;
}

/* One template ("single" or "pair") of TemplateProcessing. */
static petl_status read_template(const reader *r, petl_tokenizer *tok, json_t *o, json_t *specials,
                                 const char *key, petl_template *tpl) {
    json_t *a = json_object_get(o, key);
    char comp[64];
    snprintf(comp, sizeof comp, "post_processor \"TemplateProcessing\": \"%s\"", key);
    if (!json_is_array(a)) return FAIL(r, "%s: %s must be an array", r->what, comp);
    size_t n = json_array_size(a), n_a = 0, n_b = 0;
    tpl->pieces = calloc(n + 1, sizeof *tpl->pieces);
    if (!tpl->pieces) return petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(a, i), *seq = json_object_get(p, "Sequence");
        json_t *sp = json_object_get(p, "SpecialToken"), *body = seq ? seq : sp;
        if (!json_is_object(p) || json_object_size(p) != 1 || !json_is_object(body))
            return FAIL(r, "%s: %s[%zu] must be {\"Sequence\": {...}} or {\"SpecialToken\": {...}}",
                        r->what, comp, i);
        long long type_id;
        const char *id;
        petl_status st;
        if ((st = get_index(r, body, comp, "type_id", 0, INT32_MAX, &type_id)) != PETL_OK ||
            (st = get_string(r, body, comp, "id", NULL, &id)) != PETL_OK)
            return st;
        if (!id) return FAIL(r, "%s: %s[%zu] has no \"id\"", r->what, comp, i);
        petl_tpl_piece *pc = &tpl->pieces[tpl->n++];
        pc->type_id = (int32_t)type_id;
        if (seq) {
            if (strcmp(id, "A") != 0 && strcmp(id, "B") != 0)
                return FAIL(r, "%s: %s[%zu]: sequence \"%s\" must be A or B", r->what, comp, i, id);
            pc->kind = id[0] == 'A' ? PETL_PIECE_A : PETL_PIECE_B;
            if (id[0] == 'A')
                n_a++;
            else
                n_b++;
            continue;
        }
        json_t *def = json_object_get(specials, id), *ids = json_object_get(def, "ids");
        if (!json_is_array(ids))
            return FAIL(r, "%s: %s[%zu]: special token \"%.64s\" has no \"ids\" in special_tokens",
                        r->what, comp, i, id);
        pc->kind = PETL_PIECE_SPECIAL;
        pc->first = tok->n_tpl_ids;
        pc->n = json_array_size(ids);
        int32_t *grown = realloc(tok->tpl_ids, (tok->n_tpl_ids + pc->n + 1) * sizeof *grown);
        if (!grown) return petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
        tok->tpl_ids = grown;
        for (size_t k = 0; k < pc->n; k++) {
            json_t *x = json_array_get(ids, k);
            if (!json_is_integer(x) || json_integer_value(x) < 0 ||
                json_integer_value(x) >= tok->n_vocab)
                return FAIL(r, "%s: %s: special token \"%.64s\": ids must be in the vocabulary",
                            r->what, comp, id);
            tok->tpl_ids[tok->n_tpl_ids++] = (int32_t)json_integer_value(x);
        }
        tpl->n_added += pc->n;
    }
    bool pair = strcmp(key, "pair") == 0;
    if (n_a != 1 || n_b != (pair ? 1u : 0u))
        return FAIL(r, "%s: %s must hold sequence A%s once each (other layouts are not supported)",
                    r->what, comp, pair ? " and B" : "");
    return PETL_OK;
}

static petl_status read_post_processor(const reader *r, petl_tokenizer *tok, json_t *o) {
    petl_status st;
    const char *type = NULL;
    if (o && !json_is_null(o) && (st = get_type(r, o, "post_processor", &type)) != PETL_OK)
        return st;
    if (type && strcmp(type, "ByteLevel") == 0) {
        /* the sequences as they are (as without a post-processor), offsets trimmed */
        const char *c = "post_processor \"ByteLevel\"";
        if ((st = get_bool(r, o, c, "trim_offsets", true, &tok->trim_offsets)) != PETL_OK ||
            (st = get_bool(r, o, c, "add_prefix_space", true, &tok->add_prefix_space)) != PETL_OK)
            return st;
        type = NULL;
        o = NULL;
    }
    if (!type) {
        /* none: the sequences as they are, the second of type 1 */
        tok->single.pieces = calloc(1, sizeof *tok->single.pieces);
        tok->pair.pieces = calloc(2, sizeof *tok->pair.pieces);
        if (!tok->single.pieces || !tok->pair.pieces)
            return petl_fail(r->err, PETL_ERR_NOMEM, "%s: out of memory", r->what);
        tok->single.pieces[0] = (petl_tpl_piece){PETL_PIECE_A, 0, 0, 0};
        tok->pair.pieces[0] = (petl_tpl_piece){PETL_PIECE_A, 0, 0, 0};
        tok->pair.pieces[1] = (petl_tpl_piece){PETL_PIECE_B, 1, 0, 0};
        tok->single.n = 1;
        tok->pair.n = 2;
        return PETL_OK;
    }
    bool bert = strcmp(type, "BertProcessing") == 0, roberta = !strcmp(type, "RobertaProcessing");
    if (bert || roberta) {
        char comp[64];
        snprintf(comp, sizeof comp, "post_processor \"%s\"", type);
        int32_t cls, sep;
        if ((st = special_pair(r, tok, o, comp, "cls", &cls)) != PETL_OK ||
            (st = special_pair(r, tok, o, comp, "sep", &sep)) != PETL_OK)
            return st;
        if (roberta &&
            ((st = get_bool(r, o, comp, "trim_offsets", true, &tok->trim_offsets)) != PETL_OK ||
             (st = get_bool(r, o, comp, "add_prefix_space", true, &tok->add_prefix_space)) !=
                 PETL_OK))
            return st;
        return petl_tok_set_bert_template(tok, cls, sep, roberta, r->err);
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return FAIL(r, "%s: post_processor \"%s\" is not supported", r->what, type);
    json_t *specials = json_object_get(o, "special_tokens");
    if (!json_is_object(specials))
        return FAIL(r,
                    "%s: post_processor \"TemplateProcessing\": \"special_tokens\" must be an "
                    "object",
                    r->what);
    if ((st = read_template(r, tok, o, specials, "single", &tok->single)) != PETL_OK) return st;
    return read_template(r, tok, o, specials, "pair", &tok->pair);
}

/* ---------------------------------------------------------------------------- the file */

static petl_status read_padding(const reader *r, petl_tokenizer *tok, json_t *o) {
    if (!o || json_is_null(o)) return PETL_OK;
    if (!json_is_object(o)) return FAIL(r, "%s: \"padding\" must be an object or null", r->what);
    long long id;
    petl_status st = get_index(r, o, "padding", "pad_id", 0, tok->n_vocab - 1, &id);
    if (st == PETL_OK && json_object_get(o, "pad_id")) tok->pad_id = (int32_t)id;
    return st;
}

petl_status petl_tok_json_parse(petl_tokenizer *tok, const char *text, size_t len, const char *what,
                                const petl_tokenizer_opts *bert, petl_error *err) {
    reader r = {what, err};
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: line %d: invalid JSON: %s", what, je.line,
                         je.text);
    petl_status st = PETL_OK;
    json_t *version = json_object_get(root, "version");
    if (!json_is_object(root))
        st = FAIL(&r, "%s: expected a JSON object", what);
    else if (version && (!json_is_string(version) || strcmp(json_string_value(version), "1.0")))
        st = FAIL(&r, "%s: \"version\" must be \"1.0\"", what);
    /* the order matters: the vocabulary and normalizer before the added tokens (their ids and
     * normalized forms), all tokens before the post-processor and padding (id checks) */
    if (st == PETL_OK) st = read_model(&r, tok, json_object_get(root, "model"));
    if (st == PETL_OK) st = read_normalizer(&r, tok, json_object_get(root, "normalizer"), bert);
    if (st == PETL_OK) petl_tok_normalizer_init(tok);
    if (st == PETL_OK) st = read_pre_tokenizer(&r, tok, json_object_get(root, "pre_tokenizer"));
    if (st == PETL_OK) st = read_added(&r, tok, json_object_get(root, "added_tokens"));
    if (st == PETL_OK) st = read_post_processor(&r, tok, json_object_get(root, "post_processor"));
    if (st == PETL_OK) st = read_padding(&r, tok, json_object_get(root, "padding"));
    json_decref(root);
    return st;
}
