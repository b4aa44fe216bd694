/* UTF-8 and the character classes of the tokenizer, as the reference's Rust crates see them.
 *
 * Character properties come from utf8proc (Unicode 15), but the Rust crates that tokenizers
 * uses have their own, mostly older, tables; every place where the two disagree was found by
 * comparing all 1,112,064 scalar values against the reference (scripts/reference/
 * check-tokenizer-unicode.sh; tests/golden/tokenizer_codepoints.tsv keeps the observable part)
 * and is special-cased below with the reason. */
#include "tok_internal.h"

#include <utf8proc.h>

/* ------------------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 when it is invalid (overlong,
 * surrogate, above U+10FFFF, truncated or a stray continuation byte). Stores the scalar. */
size_t petl_utf8_decode(const unsigned char *s, size_t n, int32_t *cp) {
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
size_t petl_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int32_t cp;
        size_t k = petl_utf8_decode(u + i, n - i, &cp);
        if (k == 0) return i;
        i += k;
    }
    return n;
}

size_t petl_utf8_encode(int32_t cp, char *out) {
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
bool petl_uc_is_whitespace(int32_t c) {
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
bool petl_uc_is_bert_punct(int32_t c) {
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
int petl_uc_combining_class(int32_t c) {
    if (c < 0x300) return 0;
    int k = utf8proc_get_property(c)->combining_class;
    return k > 1 && in_ranges(c, CCC_ZERO, N_RANGES(CCC_ZERO)) ? 0 : k;
}

/* Canonical decomposition (NFD of one scalar, not yet reordered) into out[8]; returns the
 * count. */
size_t petl_uc_decompose(int32_t c, int32_t *out) {
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
size_t petl_uc_lowercase(int32_t c, int32_t *out) {
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

/* The BertNormalizer for one scalar of the raw text. At most PETL_BERT_NORM_MAX characters
 * come out: NFD expands one scalar to at most 4 (utf8proc's longest canonical decomposition),
 * CJK spacing adds 2, and lowercase only expands U+0130, which never survives NFD. */
size_t petl_uc_bert_normalize(const petl_tokenizer_opts *o, int32_t c, int32_t *out, uint8_t *ccc) {
    if (o->clean_text) {
        if (c == 0 || c == 0xFFFD || is_control(c)) return 0;
        if (petl_uc_is_whitespace(c)) c = ' ';
    }
    bool cjk = o->handle_chinese_chars && is_chinese_char(c);
    size_t n = 0;
    if (cjk) out[n] = ' ', ccc[n++] = 0;
    int32_t d[8];
    size_t nd = 1;
    d[0] = c;
    if (o->strip_accents) nd = petl_uc_decompose(c, d);
    for (size_t i = 0; i < nd; i++) {
        if (o->strip_accents && is_nonspacing_mark(d[i])) continue;
        int k = o->strip_accents ? petl_uc_combining_class(d[i]) : 0;
        int32_t low[2];
        size_t nl = 1;
        low[0] = d[i];
        if (o->lowercase) nl = petl_uc_lowercase(d[i], low);
        for (size_t j = 0; j < nl && n < PETL_BERT_NORM_MAX - 1; j++)
            out[n] = low[j], ccc[n++] = (uint8_t)k;
    }
    if (cjk) out[n] = ' ', ccc[n++] = 0;
    return n;
}

/* Word characters of Unicode 16 (the regex crate's tables) that utf8proc (Unicode 15) does not
 * know: found by running every scalar value through the reference's Whitespace pre-tokenizer
 * (its \w+|[^\w\s]+ split) against petl_uc_is_word; no other value differs. */
static const cp_range WORD_16[] = {
    {0x897, 0x897},     {0x1C89, 0x1C8A},   {0xA7CB, 0xA7CD},   {0xA7DA, 0xA7DC},
    {0x105C0, 0x105F3}, {0x10D40, 0x10D65}, {0x10D69, 0x10D6D}, {0x10D6F, 0x10D85},
    {0x10EC2, 0x10EC4}, {0x10EFC, 0x10EFC}, {0x11380, 0x11389}, {0x1138B, 0x1138B},
    {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113C0}, {0x113C2, 0x113C2},
    {0x113C5, 0x113C5}, {0x113C7, 0x113CA}, {0x113CC, 0x113D3}, {0x113E1, 0x113E2},
    {0x116D0, 0x116E3}, {0x11BC0, 0x11BE0}, {0x11BF0, 0x11BF9}, {0x11F5A, 0x11F5A},
    {0x13460, 0x143FA}, {0x16100, 0x16139}, {0x16D40, 0x16D6C}, {0x16D70, 0x16D79},
    {0x18CFF, 0x18CFF}, {0x1CCF0, 0x1CCF9}, {0x1E5D0, 0x1E5FA}, {0x2EBF0, 0x2EE5D},
};

/* Regex \w as the reference's regex crate has it: Alphabetic, M*, Nd, Pc and the join
 * controls. Alphabetic is taken as L*, Nl and the circled letters (So with Other_Alphabetic);
 * its other Other_Alphabetic characters are marks already. */
bool petl_uc_is_word(int32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
               c == '_';
    if (c == 0x200C || c == 0x200D || (c >= 0x24B6 && c <= 0x24E9) ||
        (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) ||
        (c >= 0x1F170 && c <= 0x1F189) || in_ranges(c, WORD_16, N_RANGES(WORD_16)))
        return true;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC: return true;
    default: return false;
    }
}

/* Where unicode-normalization-alignments' is_combining_mark (its own Unicode 9 era tables)
 * differs from the rule below: found by running every scalar value through the reference's
 * StripAccents normalizer. Marks there: */
static const cp_range MARK_YES[] = {
    {0x8D4, 0x8E1},     {0x1885, 0x1886},   {0x1CF2, 0x1CF3},   {0x1DFB, 0x1DFB},
    {0xA8C5, 0xA8C5},   {0xA9BD, 0xA9BD},   {0x1123E, 0x1123E}, {0x11438, 0x1143F},
    {0x11442, 0x11444}, {0x11446, 0x11446}, {0x11C30, 0x11C36}, {0x11C38, 0x11C3D},
    {0x11C3F, 0x11C3F}, {0x11C92, 0x11CA7}, {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3},
    {0x11CB5, 0x11CB6}, {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021},
    {0x1E023, 0x1E024}, {0x1E026, 0x1E02A}, {0x1E944, 0x1E94A},
};
/* ... and not marks there (Mc / Mn assigned since, or reclassified): */
static const cp_range MARK_NO[] = {
    {0xCF3, 0xCF3},     {0x1715, 0x1715},   {0x1CF7, 0x1CF7},   {0x11145, 0x11146},
    {0x111CE, 0x111CE}, {0x1182C, 0x1182E}, {0x11838, 0x11838}, {0x11930, 0x11935},
    {0x11937, 0x11938}, {0x1193D, 0x1193D}, {0x11940, 0x11940}, {0x11942, 0x11942},
    {0x119D1, 0x119D3}, {0x119DC, 0x119DF}, {0x119E4, 0x119E4}, {0x11A39, 0x11A39},
    {0x11A57, 0x11A58}, {0x11A97, 0x11A97}, {0x11D8A, 0x11D8E}, {0x11D93, 0x11D94},
    {0x11D96, 0x11D96}, {0x11EF5, 0x11EF6}, {0x11F03, 0x11F03}, {0x11F34, 0x11F35},
    {0x11F3E, 0x11F3F}, {0x11F41, 0x11F41}, {0x16F7F, 0x16F87}, {0x16FF0, 0x16FF1},
};

/* is_combining_mark, which the StripAccents normalizer drops: M* with the tables above. */
bool petl_uc_is_mark(int32_t c) {
    if (c < 0x300) return false;
    if (in_ranges(c, MARK_YES, N_RANGES(MARK_YES))) return true;
    if (in_ranges(c, MARK_NO, N_RANGES(MARK_NO))) return false;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_MN: return !in_ranges(c, MN_KEPT, N_RANGES(MN_KEPT));
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME: return true;
    default: return false;
    }
}

/* Numbers that Rust's tables have and utf8proc's (Unicode 15) lack: every scalar value was
 * checked against the reference's Digits pre-tokenizer. */
static const cp_range NUMERIC_16[] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9},
    {0x11DE0, 0x11DE9}, {0x16130, 0x16139}, {0x16D70, 0x16D79},
    {0x16FF4, 0x16FF6}, {0x1CCF0, 0x1CCF9}, {0x1E5F1, 0x1E5FA},
};

/* Rust's char::is_numeric: Nd, Nl and No. */
bool petl_uc_is_numeric(int32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return true;
    default: return in_ranges(c, NUMERIC_16, N_RANGES(NUMERIC_16));
    }
}

/* Compatibility decompositions that Unicode added after the reference's tables (Unicode 9):
 * it keeps these characters as they are. Every scalar value was checked against its NFKD. */
static const cp_range COMPAT_KEPT[] = {
    {0x32FF, 0x32FF},   {0xA7F2, 0xA7F4},   {0xAB69, 0xAB69},
    {0x10781, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA},
    {0x1E030, 0x1E06D}, {0x1F16C, 0x1F16C}, {0x1FBF0, 0x1FBF9},
};

size_t petl_uc_decompose_compat(int32_t c, int32_t *out) {
    /* (as petl_uc_decompose: U+11938 stays composed) */
    if (c < 0xA0 || c == 0x11938 || in_ranges(c, COMPAT_KEPT, N_RANGES(COMPAT_KEPT))) {
        out[0] = c;
        return 1;
    }
    int bound = 0;
    utf8proc_ssize_t n =
        utf8proc_decompose_char(c, out, 32, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, &bound);
    if (n < 1 || n > 32) {
        out[0] = c;
        return 1;
    }
    return (size_t)n;
}

size_t petl_uc_bert_prepare(const petl_tokenizer_opts *o, int32_t c, int32_t *out) {
    if (o->clean_text) {
        if (c == 0 || c == 0xFFFD || is_control(c)) return 0;
        if (petl_uc_is_whitespace(c)) c = ' ';
    }
    if (!(o->handle_chinese_chars && is_chinese_char(c))) {
        out[0] = c;
        return 1;
    }
    out[0] = ' ', out[1] = c, out[2] = ' ';
    return 3;
}

bool petl_uc_is_bert_mark(int32_t c) {
    return is_nonspacing_mark(c);
}
