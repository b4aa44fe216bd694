/* BERT WordPiece tokenizer, reproducing HuggingFace's BertTokenizerFast (the Rust `tokenizers`
 * library) exactly:
 *
 *   raw text --split out literal special tokens ("[SEP]", ...; matched on the raw text)-->
 *   segments --BertNormalizer (clean text, CJK spacing, NFD + drop Mn, lowercase)-->
 *   --BertPreTokenizer (split on whitespace, isolate punctuation)--> words
 *   --WordPiece (greedy longest match, "##" continuation, > 100 chars -> [UNK])--> ids
 *   --truncation (longest_first) + template [CLS] A [SEP] (B [SEP])--> encoding
 *
 * The whole pipeline streams: every step of the normalizer is a per-character map (except the
 * canonical reordering of NFD, handled when a character is appended to the current word), so
 * the text is never copied; only the current word (at most 101 code points are kept: longer
 * words are [UNK] anyway) lives in a fixed buffer. No allocation happens per token: the output
 * arrays grow geometrically inside the caller's petl_encoding.
 *
 * Character properties come from utf8proc (Unicode 15), but the Rust crates that tokenizers
 * uses have their own, mostly older, tables; every place where the two disagree was found by
 * comparing all 1,112,064 scalar values against the reference (scripts/reference/
 * check-tokenizer-unicode.sh; tests/golden/tokenizer_codepoints.tsv keeps the observable part)
 * and is special-cased below with the reason. */
#include "internal.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

/* WordPiece's max_input_chars_per_word: longer words become one [UNK]. */
#define WORD_MAX_CHARS 100
/* Vocab files larger than this are refused (bert-base's is 232 kB). */
#define VOCAB_MAX_BYTES (64u << 20)
#define CONFIG_MAX_BYTES (1u << 20)

enum { SP_UNK, SP_CLS, SP_SEP, SP_PAD, SP_MASK, SP_COUNT };

typedef struct {
    char name[64]; /* the literal text, e.g. "[SEP]" */
    size_t len;    /* strlen(name) */
    int32_t id;    /* vocab id, -1 when the token is not in the vocab (only [MASK] may miss) */
} special_token;

struct petl_tokenizer {
    petl_tokenizer_opts opts; /* strip_accents resolved to 0 / 1 */
    char *buf;                /* owned copy of the vocab text; tokens are NUL-terminated in it */
    const char **tokens;      /* [n_vocab] id -> token, pointing into buf */
    uint32_t *token_len;      /* [n_vocab] byte length of tokens[id] */
    int32_t n_vocab;
    int32_t *slots;         /* [n_slots] open addressing: id, or -1 for an empty slot */
    size_t n_slots;         /* power of two, at least 2 * n_vocab */
    size_t max_token_bytes; /* longest token: bounds the WordPiece search */
    special_token special[SP_COUNT];
    bool special_first[256]; /* bytes that start some special token: a quick pre-check */
};

/* ------------------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when it is invalid (overlong,
 * surrogate, above U+10FFFF, truncated or a stray continuation byte). Stores the scalar. */
static size_t utf8_decode(const unsigned char *s, size_t n, int32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = (int32_t)v;
    return len;
}

/* Offset of the first invalid byte of s[0..n), or n when all of it is valid UTF-8. */
static size_t utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int32_t cp;
        size_t k = utf8_decode(u + i, n - i, &cp);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

static size_t utf8_encode(int32_t cp, char *out) {
    uint32_t c = (uint32_t)cp;
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ------------------------------------------------------------------ character classes */

typedef struct {
    int32_t lo, hi;
} cp_range;

static bool in_ranges(int32_t cp, const cp_range *r, size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

#define N_RANGES(a) (sizeof(a) / sizeof((a)[0]))

/* Where the reference's tables differ from utf8proc's (Unicode 15.0). Found by running every
 * scalar value through both (the reference: tokenizers 0.22.2); see the comments of the
 * functions that use them. scripts/reference/check-tokenizer-unicode.sh re-checks them all:
 * run it when utf8proc or the reference changes. */

/* P* in Unicode 15 but not punctuation for unicode_categories (its tables predate Unicode 9):
 * punctuation added in Unicode 9..15. */
static const cp_range NOT_PUNCT[] = {
    {0x61D, 0x61D},     {0x9FD, 0x9FD},     {0xA76, 0xA76},     {0xC77, 0xC77},
    {0xC84, 0xC84},     {0x1B7D, 0x1B7E},   {0x2E43, 0x2E4F},   {0x2E52, 0x2E5D},
    {0x10EAD, 0x10EAD}, {0x10F55, 0x10F59}, {0x10F86, 0x10F89}, {0x1144B, 0x1144F},
    {0x1145A, 0x1145B}, {0x1145D, 0x1145D}, {0x11660, 0x1166C}, {0x116B9, 0x116B9},
    {0x1183B, 0x1183B}, {0x11944, 0x11946}, {0x119E2, 0x119E2}, {0x11A3F, 0x11A46},
    {0x11A9A, 0x11A9C}, {0x11A9E, 0x11AA2}, {0x11B00, 0x11B09}, {0x11C41, 0x11C45},
    {0x11C70, 0x11C71}, {0x11EF7, 0x11EF8}, {0x11F43, 0x11F4F}, {0x11FFF, 0x11FFF},
    {0x12FF1, 0x12FF2}, {0x16E97, 0x16E9A}, {0x16FE2, 0x16FE2}, {0x1E95E, 0x1E95F},
};

/* Mn in Unicode 15 but not for unicode_categories (marks added in Unicode 9..15), so
 * strip_accents keeps them. */
static const cp_range MN_KEPT[] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8E1},     {0x9FE, 0x9FE},
    {0xAFA, 0xAFF},     {0xB55, 0xB55},     {0xC04, 0xC04},     {0xC3C, 0xC3C},
    {0xD00, 0xD00},     {0xD3B, 0xD3C},     {0xD81, 0xD81},     {0xEBA, 0xEBA},
    {0xECE, 0xECE},     {0x180F, 0x180F},   {0x1885, 0x1886},   {0x1ABF, 0x1ACE},
    {0x1DF6, 0x1DFB},   {0xA82C, 0xA82C},   {0xA8C5, 0xA8C5},   {0xA8FF, 0xA8FF},
    {0xA9BD, 0xA9BD},   {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x11073, 0x11074},
    {0x110C2, 0x110C2}, {0x111C9, 0x111C9}, {0x111CF, 0x111CF}, {0x1123E, 0x1123E},
    {0x11241, 0x11241}, {0x1133B, 0x1133B}, {0x11438, 0x1143F}, {0x11442, 0x11444},
    {0x11446, 0x11446}, {0x1145E, 0x1145E}, {0x1182F, 0x11837}, {0x11839, 0x1183A},
    {0x1193B, 0x1193C}, {0x1193E, 0x1193E}, {0x11943, 0x11943}, {0x119D4, 0x119D7},
    {0x119DA, 0x119DB}, {0x119E0, 0x119E0}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A38},
    {0x11A3B, 0x11A3E}, {0x11A47, 0x11A47}, {0x11A51, 0x11A56}, {0x11A59, 0x11A5B},
    {0x11A8A, 0x11A96}, {0x11A98, 0x11A99}, {0x11C30, 0x11C36}, {0x11C38, 0x11C3D},
    {0x11C3F, 0x11C3F}, {0x11C92, 0x11CA7}, {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3},
    {0x11CB5, 0x11CB6}, {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D},
    {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D90, 0x11D91}, {0x11D95, 0x11D95},
    {0x11D97, 0x11D97}, {0x11EF3, 0x11EF4}, {0x11F00, 0x11F01}, {0x11F36, 0x11F3A},
    {0x11F40, 0x11F40}, {0x11F42, 0x11F42}, {0x13440, 0x13440}, {0x13447, 0x13455},
    {0x16F4F, 0x16F4F}, {0x16FE4, 0x16FE4}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46},
    {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021}, {0x1E023, 0x1E024},
    {0x1E026, 0x1E02A}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF}, {0x1E944, 0x1E94A},
};

/* Cf in Unicode 15 but unknown to unicode_categories, so clean_text keeps them. */
static const cp_range CF_KEPT[] = {
    {0x890, 0x891},
    {0x8E2, 0x8E2},
    {0x110CD, 0x110CD},
    {0x13430, 0x1343F},
};

/* Non-zero canonical combining class in Unicode 15, but the reference's NFD (the crate
 * unicode-normalization-alignments, Unicode 9 tables) does not know these marks: class 0,
 * so they are never reordered. Only matters for the marks strip_accents keeps. */
static const cp_range CCC_ZERO[] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8D3},     {0x9FE, 0x9FE},
    {0xC3C, 0xC3C},     {0xD3B, 0xD3C},     {0xEBA, 0xEBA},     {0x1715, 0x1715},
    {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},   {0xA82C, 0xA82C},   {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50}, {0x10F82, 0x10F85},
    {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45},
    {0x11D97, 0x11D97}, {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

/* Lowercase mappings that Rust's std (Unicode 16) has and utf8proc (Unicode 15) lacks:
 * the case pairs added in Unicode 16 (Latin, Garay, Kirat Rai). */
static const struct {
    int32_t lo, hi, delta;
} LOWER_EXTRA[] = {
    {0x1C89, 0x1C89, 1},      {0xA7CB, 0xA7CB, 0x264 - 0xA7CB},
    {0xA7CC, 0xA7CC, 1},      {0xA7CE, 0xA7CE, 1},
    {0xA7D2, 0xA7D2, 1},      {0xA7D4, 0xA7D4, 1},
    {0xA7DA, 0xA7DA, 1},      {0xA7DC, 0xA7DC, 0x19B - 0xA7DC},
    {0x10D50, 0x10D65, 0x20}, {0x16EA0, 0x16EB8, 0x1B},
};

/* Rust's char::is_whitespace (the White_Space property; stable since Unicode 6). The BERT
 * normalizer and pre-tokenizer add \t \n \r, which are in it already. */
static bool is_whitespace(int32_t c) {
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return true;
    if (c < 0x85) return false;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* BertNormalizer's is_control: unicode_categories' is_other() except \t \n \r. In practice
 * that is Cc, Cf and Co of its old tables: unassigned code points (Cn) are kept (the crate's
 * Cn test does not fire for them), and so are the format characters added since (CF_KEPT).
 * Marks and letters assigned after its tables are kept too, being neither. */
static bool is_control(int32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CO: return true;
    case UTF8PROC_CATEGORY_CF: return !in_ranges(c, CF_KEPT, N_RANGES(CF_KEPT));
    default: return false;
    }
}

/* The pre-tokenizer's is_bert_punc: ASCII punctuation (all printable non-alphanumeric ASCII,
 * so $ + < = > ^ ` | ~ too) or unicode_categories' is_punctuation() (Pc Pd Ps Pe Pi Pf Po). */
static bool is_punct(int32_t c) {
    if (c < 0x80)
        return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
               (c >= 0x7B && c <= 0x7E);
    /* U+166D CANADIAN SYLLABICS CHI SIGN (Po until Unicode 12, So since) and U+111C9 SHARADA
     * SANDHI MARK (Po until Unicode 11, Mn since) still count as punctuation there. */
    if (c == 0x166D || c == 0x111C9) return true;
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO &&
           !in_ranges(c, NOT_PUNCT, N_RANGES(NOT_PUNCT));
}

/* unicode_categories' is_mark_nonspacing(): the marks strip_accents drops. */
static bool is_nonspacing_mark(int32_t c) {
    if (c < 0x300) return false;
    /* U+1734 HANUNOO SIGN PAMUDPOD was Mn until Unicode 14 made it Mc. */
    if (c == 0x1734) return true;
    return utf8proc_category(c) == UTF8PROC_CATEGORY_MN &&
           !in_ranges(c, MN_KEPT, N_RANGES(MN_KEPT));
}

/* BertNormalizer's is_chinese_char: the CJK ideograph blocks as listed there (not every CJK
 * block: Hangul, kana and the newer extensions are handled like other letters). */
static bool is_chinese_char(int32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Canonical combining class used by the reference's NFD for the reordering of marks. */
static int combining_class(int32_t c) {
    if (c < 0x300) return 0;
    int k = utf8proc_get_property(c)->combining_class;
    return k > 1 && in_ranges(c, CCC_ZERO, N_RANGES(CCC_ZERO)) ? 0 : k;
}

/* Canonical decomposition (NFD of one scalar, not yet reordered) into out[8]; returns the
 * count. */
static size_t decompose(int32_t c, int32_t *out) {
    if (c < 0xC0) {
        out[0] = c;
        return 1;
    }
    /* U+11938 DIVES AKURU VOWEL SIGN O (Unicode 13) is not in the reference's Unicode 9
     * decomposition tables: it stays composed. */
    if (c == 0x11938) {
        out[0] = c;
        return 1;
    }
    int bound = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char(c, out, 8, UTF8PROC_DECOMPOSE, &bound);
    if (n < 1 || n > 8) { /* cannot happen with canonical decompositions; keep c as is */
        out[0] = c;
        return 1;
    }
    return (size_t)n;
}

/* Rust's char::to_lowercase: the full mapping, but applied without context, so final sigma is
 * always σ. The only unconditional multi-character lowercase mapping is U+0130. */
static size_t lowercase(int32_t c, int32_t *out) {
    if (c < 0x80) {
        out[0] = (c >= 'A' && c <= 'Z') ? c + 32 : c;
        return 1;
    }
    if (c == 0x130) {
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    for (size_t i = 0; i < N_RANGES(LOWER_EXTRA); i++) {
        if (c >= LOWER_EXTRA[i].lo && c <= LOWER_EXTRA[i].hi) {
            out[0] = c + LOWER_EXTRA[i].delta;
            return 1;
        }
    }
    out[0] = utf8proc_tolower(c);
    return 1;
}

/* --------------------------------------------------------------------- vocab lookups */

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Id of the token s[0..n), or -1. */
static int32_t vocab_find(const petl_tokenizer *tok, const char *s, size_t n) {
    size_t mask = tok->n_slots - 1;
    for (size_t i = (size_t)fnv1a(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = tok->slots[i];
        if (id < 0) return -1;
        if (tok->token_len[id] == n && memcmp(tok->tokens[id], s, n) == 0) return id;
    }
}

/* Inserts id; a later duplicate of a token replaces the earlier one, as the reference's
 * HashMap::insert does. */
static void vocab_insert(petl_tokenizer *tok, int32_t id) {
    size_t mask = tok->n_slots - 1, n = tok->token_len[id];
    const char *s = tok->tokens[id];
    for (size_t i = (size_t)fnv1a(s, n) & mask;; i = (i + 1) & mask) {
        int32_t o = tok->slots[i];
        if (o < 0 || (tok->token_len[o] == n && memcmp(tok->tokens[o], s, n) == 0)) {
            tok->slots[i] = id;
            return;
        }
    }
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
 * tokens, 232 kB, hash once per process), the value must be stable across petl versions, and
 * it only has to tell vocabularies apart, so the simplest well-known 64-bit hash will do. */
uint64_t petl_tokenizer_vocab_hash(const petl_tokenizer *tok) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int32_t id = 0; tok && id < tok->n_vocab; id++) {
        const unsigned char *t = (const unsigned char *)tok->tokens[id];
        for (uint32_t i = 0; i <= tok->token_len[id]; i++) {
            h ^= i < tok->token_len[id] ? t[i] : (unsigned char)'\n';
            h *= 0x100000001b3ULL;
        }
    }
    return h;
}

int32_t petl_tokenizer_token_to_id(const petl_tokenizer *tok, const char *token) {
    if (!tok || !token) return -1;
    return vocab_find(tok, token, strlen(token));
}

const char *petl_tokenizer_id_to_token(const petl_tokenizer *tok, int32_t id) {
    if (!tok || id < 0 || id >= tok->n_vocab) return NULL;
    return tok->tokens[id];
}

int32_t petl_tokenizer_pad_id(const petl_tokenizer *tok) {
    return tok ? tok->special[SP_PAD].id : -1;
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
    free(tok);
}

/* Length of s[0..n) without trailing whitespace, as Rust's str::trim_end (Unicode
 * White_Space) does. */
static size_t trim_end(const char *s, size_t n) {
    while (n > 0) {
        size_t k = 1;
        while (k < n && k < 4 && ((unsigned char)s[n - k] & 0xC0) == 0x80)
            k++;
        int32_t cp;
        if (utf8_decode((const unsigned char *)s + n - k, k, &cp) != k || !is_whitespace(cp)) break;
        n -= k;
    }
    return n;
}

/* Splits buf (owned by tok, NUL-terminated) into lines: the reference reads vocab.txt with
 * BufRead::lines (split on \n, a final \n ends the last line rather than starting an empty
 * one) and trims trailing whitespace of each line. */
static petl_status split_vocab(petl_tokenizer *tok, size_t len, const char *what, petl_error *err) {
    size_t n_lines = 0;
    for (size_t i = 0; i < len; i++)
        n_lines += tok->buf[i] == '\n';
    if (len > 0 && tok->buf[len - 1] != '\n') n_lines++;
    if (n_lines == 0) return petl_fail(err, PETL_ERR_FORMAT, "%s: empty vocabulary", what);
    if (n_lines > (size_t)INT32_MAX / 4)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: too many lines", what);
    tok->tokens = malloc(n_lines * sizeof *tok->tokens);
    tok->token_len = malloc(n_lines * sizeof *tok->token_len);
    if (!tok->tokens || !tok->token_len)
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    size_t start = 0, id = 0;
    while (start < len) {
        char *nl = memchr(tok->buf + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - tok->buf) : len;
        size_t bad = utf8_check(tok->buf + start, end - start);
        if (bad != end - start)
            return petl_fail(err, PETL_ERR_FORMAT, "%s: line %zu: invalid UTF-8 at byte %zu", what,
                             id + 1, bad);
        size_t n = trim_end(tok->buf + start, end - start);
        tok->buf[start + n] = '\0';
        tok->tokens[id] = tok->buf + start;
        tok->token_len[id] = (uint32_t)n;
        if (n > tok->max_token_bytes) tok->max_token_bytes = n;
        id++;
        start = end + 1;
    }
    tok->n_vocab = (int32_t)id;
    return PETL_OK;
}

static petl_status build_index(petl_tokenizer *tok, const char *what, petl_error *err) {
    size_t n = 16;
    while (n < 2 * (size_t)tok->n_vocab)
        n *= 2;
    tok->slots = malloc(n * sizeof *tok->slots);
    if (!tok->slots) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    memset(tok->slots, 0xFF, n * sizeof *tok->slots);
    tok->n_slots = n;
    for (int32_t id = 0; id < tok->n_vocab; id++)
        vocab_insert(tok, id);
    return PETL_OK;
}

/* Looks the special tokens up; [UNK] [CLS] [SEP] [PAD] are required. The names were set by
 * the caller (defaults or tokenizer_config.json). */
static petl_status find_specials(petl_tokenizer *tok, const char *what, petl_error *err) {
    for (int i = 0; i < SP_COUNT; i++) {
        special_token *sp = &tok->special[i];
        sp->len = strlen(sp->name);
        sp->id = sp->len ? vocab_find(tok, sp->name, sp->len) : -1;
        if (sp->id < 0 && i != SP_MASK)
            return petl_fail(err, PETL_ERR_FORMAT, "%s: special token %s is not in the vocabulary",
                             what, sp->name[0] ? sp->name : "(empty)");
        if (sp->id >= 0) tok->special_first[(unsigned char)sp->name[0]] = true;
    }
    return PETL_OK;
}

static void default_specials(special_token *sp) {
    static const char *const names[SP_COUNT] = {"[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"};
    memset(sp, 0, SP_COUNT * sizeof *sp);
    for (int i = 0; i < SP_COUNT; i++)
        snprintf(sp[i].name, sizeof sp[i].name, "%s", names[i]);
}

static petl_status from_vocab(const char *vocab, size_t len, const char *what,
                              const petl_tokenizer_opts *opts, const special_token *names,
                              petl_tokenizer **out, petl_error *err) {
    *out = NULL;
    if (len > VOCAB_MAX_BYTES)
        return petl_fail(err, PETL_ERR_FORMAT, "%s: vocabulary of %zu bytes is too large", what,
                         len);
    petl_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    petl_tokenizer_opts_default(&tok->opts);
    if (opts) tok->opts = *opts;
    if (tok->opts.strip_accents < 0) tok->opts.strip_accents = tok->opts.lowercase ? 1 : 0;
    if (names)
        memcpy(tok->special, names, sizeof tok->special);
    else
        default_specials(tok->special);
    petl_status st = PETL_ERR_NOMEM;
    tok->buf = malloc(len + 1);
    if (!tok->buf) {
        petl_fail(err, st, "%s: out of memory", what);
        goto fail;
    }
    memcpy(tok->buf, vocab, len);
    tok->buf[len] = '\0';
    if ((st = split_vocab(tok, len, what, err)) != PETL_OK) goto fail;
    if ((st = build_index(tok, what, err)) != PETL_OK) goto fail;
    if ((st = find_specials(tok, what, err)) != PETL_OK) goto fail;
    *out = tok;
    return PETL_OK;
fail:
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

petl_status petl_tokenizer_load(const char *model_dir, petl_tokenizer **out, petl_error *err) {
    if (!out || !model_dir) return petl_fail(err, PETL_ERR_ARG, "petl_tokenizer_load: NULL");
    *out = NULL;
    char *vpath = petl_path_join(model_dir, "vocab.txt");
    char *cpath = petl_path_join(model_dir, "tokenizer_config.json");
    char *text = NULL;
    size_t len = 0;
    petl_status st = PETL_ERR_NOMEM;
    if (!vpath || !cpath) {
        petl_fail(err, st, "%s: out of memory", model_dir);
        goto done;
    }
    petl_tokenizer_opts opts;
    petl_tokenizer_opts_default(&opts);
    special_token names[SP_COUNT];
    default_specials(names);
    /* tokenizer_config.json is optional: BERT defaults without it. */
    if (access(cpath, F_OK) == 0 && (st = read_config(cpath, &opts, names, err)) != PETL_OK)
        goto done;
    if ((st = petl_read_file(vpath, VOCAB_MAX_BYTES, &text, &len, err)) != PETL_OK) goto done;
    st = from_vocab(text, len, vpath, &opts, names, out, err);
done:
    free(text);
    free(vpath);
    free(cpath);
    return st;
}

/* ------------------------------------------------------------------------ encoding */

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

/* State of one streaming pass over a text: the current word of the pre-tokenizer. */
typedef struct {
    const petl_tokenizer *tok;
    petl_encoding *enc;
    petl_error *err;
    petl_status st;                   /* first failure; later work is skipped */
    bool offsets;                     /* fill enc->offsets too */
    int32_t word[WORD_MAX_CHARS + 1]; /* code points of the current word (first 101) */
    uint8_t ccc[WORD_MAX_CHARS + 1];  /* their combining classes (0 without NFD) */
    /* Byte span in the raw text of the character each word[i] was normalized from: every
     * character that NFD or lowercasing makes out of one raw character maps to all of it, as
     * the reference's alignments do. */
    int32_t wbeg[WORD_MAX_CHARS + 1], wend[WORD_MAX_CHARS + 1];
    int32_t word_beg, word_end; /* span of the whole word (all of it, also past 101) */
    int32_t cur_beg, cur_end;   /* span of the raw character being fed */
    size_t n_word;              /* length of the word in code points, may exceed 101 */
} tok_state;

/* Appends id, and its raw-text span [beg, end) when offsets are asked for. */
static void emit(tok_state *s, int32_t id, int32_t beg, int32_t end) {
    if (s->st != PETL_OK) return;
    if (s->enc->len >= s->enc->cap &&
        (s->st = enc_reserve(s->enc, 1, s->offsets, s->err)) != PETL_OK)
        return;
    if (s->offsets) {
        s->enc->offsets[2 * s->enc->len] = beg;
        s->enc->offsets[2 * s->enc->len + 1] = end;
    }
    s->enc->ids[s->enc->len++] = id;
}

/* WordPiece on the current word (1..100 code points): greedy longest-match-first from the
 * left, pieces after the first prefixed with "##"; when some position has no match the whole
 * word is one [UNK]. Candidates longer than the longest vocab token are skipped, which keeps
 * the work per position bounded. */
static void wordpiece(tok_state *s) {
    const petl_tokenizer *tok = s->tok;
    char bytes[(WORD_MAX_CHARS + 1) * 4];
    size_t off[WORD_MAX_CHARS + 2];
    size_t n = s->n_word;
    off[0] = 0;
    for (size_t i = 0; i < n; i++)
        off[i + 1] = off[i] + utf8_encode(s->word[i], bytes + off[i]);
    char cand[2 + sizeof bytes];
    int start_len = s->enc->len;
    for (size_t start = 0; start < n && s->st == PETL_OK;) {
        size_t pre = start > 0 ? 2 : 0, end = n;
        int32_t id = -1;
        while (end > start && off[end] - off[start] + pre > tok->max_token_bytes)
            end--;
        for (; end > start; end--) {
            size_t blen = off[end] - off[start];
            memcpy(cand, "##", 2);
            memcpy(cand + pre, bytes + off[start], blen);
            if ((id = vocab_find(tok, cand, pre + blen)) >= 0) break;
        }
        if (id < 0) {
            s->enc->len = start_len;
            emit(s, tok->special[SP_UNK].id, s->word_beg, s->word_end);
            return;
        }
        /* A piece's span runs from its first character's start to its last one's end. Marks
         * reordered by NFD can make that span cover other pieces' characters too; the
         * reference computes it the same way. */
        emit(s, id, s->wbeg[start], s->wend[end - 1]);
        start = end;
    }
}

static void end_word(tok_state *s) {
    if (s->n_word == 0) return;
    if (s->n_word > WORD_MAX_CHARS)
        emit(s, s->tok->special[SP_UNK].id, s->word_beg, s->word_end);
    else
        wordpiece(s);
    s->n_word = 0;
}

/* Appends c (combining class k) to the current word. NFD puts each run of marks in canonical
 * order (a stable sort by combining class); the marks strip_accents drops never reach here,
 * and sorting the kept ones alone gives the same relative order, so an insertion step over
 * the tail of the word is enough. */
static void word_push(tok_state *s, int32_t c, int k) {
    if (s->n_word == 0) s->word_beg = s->cur_beg;
    s->word_end = s->cur_end;
    if (s->n_word <= WORD_MAX_CHARS) {
        size_t i = s->n_word;
        while (k > 0 && i > 0 && s->ccc[i - 1] > k) {
            s->word[i] = s->word[i - 1];
            s->ccc[i] = s->ccc[i - 1];
            s->wbeg[i] = s->wbeg[i - 1];
            s->wend[i] = s->wend[i - 1];
            i--;
        }
        s->word[i] = c;
        s->ccc[i] = (uint8_t)k;
        s->wbeg[i] = s->cur_beg;
        s->wend[i] = s->cur_end;
    }
    s->n_word++;
}

/* The pre-tokenizer step for one normalized character. */
static void pretokenize(tok_state *s, int32_t c, int k) {
    if (is_whitespace(c)) {
        end_word(s);
    } else if (is_punct(c)) {
        end_word(s);
        word_push(s, c, 0);
        end_word(s);
    } else {
        word_push(s, c, k);
    }
}

/* Maximum output of normalize_char: NFD expands one scalar to at most 4 (utf8proc's longest
 * canonical decomposition), CJK spacing adds 2, and lowercase only expands U+0130, which never
 * survives NFD. */
#define NORM_MAX 8

/* The BertNormalizer for one scalar of the raw text: every step is a per-character map, so
 * the text can be normalized one scalar at a time. Writes the output characters to out and
 * their canonical combining classes (for NFD's reordering; 0 without NFD) to ccc; returns
 * the count (0 when the character is dropped). */
static size_t normalize_char(const petl_tokenizer_opts *o, int32_t c, int32_t *out, uint8_t *ccc) {
    if (o->clean_text) {
        if (c == 0 || c == 0xFFFD || is_control(c)) return 0;
        if (is_whitespace(c)) c = ' ';
    }
    bool cjk = o->handle_chinese_chars && is_chinese_char(c);
    size_t n = 0;
    if (cjk) out[n] = ' ', ccc[n++] = 0;
    int32_t d[8];
    size_t nd = 1;
    d[0] = c;
    if (o->strip_accents) nd = decompose(c, d);
    for (size_t i = 0; i < nd; i++) {
        if (o->strip_accents && is_nonspacing_mark(d[i])) continue;
        int k = o->strip_accents ? combining_class(d[i]) : 0;
        int32_t low[2];
        size_t nl = 1;
        low[0] = d[i];
        if (o->lowercase) nl = lowercase(d[i], low);
        for (size_t j = 0; j < nl && n < NORM_MAX - 1; j++)
            out[n] = low[j], ccc[n++] = (uint8_t)k;
    }
    if (cjk) out[n] = ' ', ccc[n++] = 0;
    return n;
}

/* Normalizes one scalar of the raw text and runs the pre-tokenizer on the result. */
static void feed(tok_state *s, int32_t c) {
    int32_t out[NORM_MAX];
    uint8_t ccc[NORM_MAX];
    size_t n = normalize_char(&s->tok->opts, c, out, ccc);
    for (size_t i = 0; i < n; i++)
        pretokenize(s, out[i], ccc[i]);
}

/* Length of the special token starting at p[0..n) (leftmost-longest, as the reference's
 * Aho-Corasick matcher), 0 when none; its id in *id. */
static size_t match_special(const petl_tokenizer *tok, const char *p, size_t n, int32_t *id) {
    size_t best = 0;
    for (int i = 0; i < SP_COUNT; i++) {
        const special_token *sp = &tok->special[i];
        if (sp->id >= 0 && sp->len > best && sp->len <= n && memcmp(p, sp->name, sp->len) == 0) {
            best = sp->len;
            *id = sp->id;
        }
    }
    return best;
}

/* Tokenizes one (valid UTF-8) text, appending its ids to s->enc. The special tokens are split
 * off the raw text first; each piece between them is normalized on its own. */
static void encode_text(tok_state *s, const char *text, size_t len) {
    const unsigned char *u = (const unsigned char *)text;
    s->n_word = 0;
    for (size_t i = 0; i < len && s->st == PETL_OK;) {
        int32_t id, c;
        size_t k = s->tok->special_first[u[i]] ? match_special(s->tok, text + i, len - i, &id) : 0;
        if (k > 0) {
            end_word(s);
            emit(s, id, (int32_t)i, (int32_t)(i + k));
            i += k;
            continue;
        }
        k = utf8_decode(u + i, len - i, &c);
        s->cur_beg = (int32_t)i;
        s->cur_end = (int32_t)(i + k);
        feed(s, c);
        i += k;
    }
    end_word(s);
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
    size_t bad = utf8_check(text, len);
    if (bad == len) return PETL_OK;
    return petl_fail(err, PETL_ERR_UTF8, "%s: invalid UTF-8 at byte offset %zu (byte 0x%02X)",
                     which, bad, (unsigned char)text[bad]);
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
    /* Offsets are int32 byte positions. */
    if (offsets && (len_a > INT32_MAX || (pair && len_b > INT32_MAX)))
        return petl_fail(err, PETL_ERR_ARG, "petl_tokenize_offsets: text over 2 GiB");
    petl_status st = check_utf8(text_a, len_a, "text_a", err);
    if (st == PETL_OK && pair) st = check_utf8(text_b, len_b, "text_b", err);
    if (st != PETL_OK) return st;
    enc->len = 0;
    if ((st = enc_reserve(enc, 3, offsets, err)) != PETL_OK) return st;
    tok_state s = {.tok = tok, .enc = enc, .err = err, .st = PETL_OK, .offsets = offsets};
    /* Layout while encoding: [CLS] A (gap) B, so that A and B need no copy when nothing is
     * cut; the gap receives the first [SEP]. Added tokens have the span (0, 0). */
    emit(&s, tok->special[SP_CLS].id, 0, 0);
    encode_text(&s, text_a, len_a);
    size_t n1 = (size_t)enc->len - 1, n2 = 0;
    emit(&s, tok->special[SP_SEP].id, 0, 0);
    if (pair && s.st == PETL_OK) {
        encode_text(&s, text_b, len_b);
        n2 = (size_t)enc->len - n1 - 2;
    }
    /* Room for the final [SEP] of a pair: the result is never longer than this. */
    if (s.st == PETL_OK && pair) s.st = enc_reserve(enc, 1, offsets, err);
    if (s.st != PETL_OK) return s.st;
    /* The budget is max_len minus the added tokens; the reference computes it in unsigned
     * arithmetic, so a max_len below the number of special tokens wraps around and disables
     * truncation (max_len 1 of a single text, or 2 of a pair, keeps everything). */
    size_t added = pair ? 3 : 2;
    size_t a = n1, b = n2;
    if (max_len > 0 && (size_t)max_len >= added) truncate_lengths(&a, &b, pair, max_len - added);
    if (pair) memmove(enc->ids + 2 + a, enc->ids + 2 + n1, b * sizeof *enc->ids);
    if (pair && offsets)
        memmove(enc->offsets + 2 * (2 + a), enc->offsets + 2 * (2 + n1),
                2 * b * sizeof *enc->offsets);
    enc->ids[1 + a] = tok->special[SP_SEP].id;
    enc->len = (int)(2 + a);
    for (int i = 0; i < enc->len; i++)
        enc->type_ids[i] = 0;
    if (offsets) enc->offsets[2 * (1 + a)] = enc->offsets[2 * (1 + a) + 1] = 0;
    if (pair) {
        for (size_t i = 0; i < b; i++)
            enc->type_ids[enc->len++] = 1;
        if (offsets) enc->offsets[2 * enc->len] = enc->offsets[2 * enc->len + 1] = 0;
        enc->ids[enc->len] = tok->special[SP_SEP].id;
        enc->type_ids[enc->len++] = 1;
    }
    return PETL_OK;
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
