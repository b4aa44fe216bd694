/* The patterns of tokenizer.json (Replace's and Split's "Regex", and their "String"s): the
 * reference compiles them with Oniguruma in its default syntax; petl runs them on PCRE2. A Regex
 * is translated first, and only the part of the syntax that means the same on both engines
 * passes: the escapes for classes are spelled out (\s; \d and \p{..} as ranges from the
 * reference's own Unicode tables, tok_uprops.c, since PCRE2's are older), the constructs that
 * differ or that the two parse differently are refused naming the component (never a silently
 * different split). Matches are then found as the reference's find_iter finds them (leftmost,
 * non-overlapping, an empty match right after a match skipped by one character). */
#include "tok_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Oniguruma's \s on UTF-8 text: Unicode White_Space (PCRE2's \s differs by U+180E on some
 * tables, and without UCP it is ASCII), as class items. */
#define WS_ITEMS                                                                                   \
    "\\t-\\r "                                                                                     \
    "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* The translation: the pattern p[0..n), the PCRE2 pattern built in out, why when refused. */
typedef struct {
    const char *p;
    size_t n, i;
    char *out;
    size_t len, cap;
    bool oom;
    char why[128];
} xlat;

static void emit(xlat *x, const char *s, size_t n) {
    if (x->oom) return;
    if (x->len + n + 1 > x->cap) {
        size_t cap = 2 * x->cap + n + 64;
        char *o = realloc(x->out, cap);
        if (!o) {
            x->oom = true;
            return;
        }
        x->out = o;
        x->cap = cap;
    }
    memcpy(x->out + x->len, s, n);
    x->len += n;
    x->out[x->len] = '\0';
}

static void emits(xlat *x, const char *s) {
    emit(x, s, strlen(s));
}

static void emit_cp(xlat *x, int32_t c) {
    char b[16];
    snprintf(b, sizeof b, "\\x{%X}", (unsigned)c);
    emits(x, b);
}

static bool refuse(xlat *x, const char *why, size_t at) {
    snprintf(x->why, sizeof x->why, "%s (at byte %zu)", why, at);
    return false;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* \xHH, \x{H..H} or \uHHHH after the backslash and letter: the code point, or -1. */
static int32_t hex_escape(xlat *x, char kind) {
    size_t max = kind == 'u' ? 4 : 2, got = 0;
    bool brace = kind == 'x' && x->i < x->n && x->p[x->i] == '{';
    if (brace) x->i++, max = 8;
    int32_t v = 0;
    while (got < max && x->i < x->n && hexval(x->p[x->i]) >= 0)
        v = v * 16 + hexval(x->p[x->i++]), got++;
    if (brace && (x->i >= x->n || x->p[x->i++] != '}')) return -1;
    if (got == 0 || (kind == 'u' && got != 4)) return -1;
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return -1;
    return v;
}

/* The categories that \p{name} may name, as a mask of bits 1 << k for petl_uprop_names[k]: a
 * two-letter category or a one-letter group of them (L, M, N, P, S, Z, C); 0 for other names
 * (scripts and other properties, long names). */
static uint32_t category_mask(const char *name, size_t len) {
    uint32_t mask = 0;
    if (len != 1 && len != 2) return 0;
    for (size_t k = 0; k < PETL_UPROP_N; k++)
        if (petl_uprop_names[k][0] == name[0] && (len == 1 || petl_uprop_names[k][1] == name[1]))
            mask |= 1u << k;
    return mask;
}

/* The scalar values of the categories in mask (when neg: of all the others) as class items,
 * each a range lo-hi from the reference's tables, never one of PCRE2's \p (older tables). */
static void emit_categories(xlat *x, uint32_t mask, bool neg) {
    const petl_uprop_run *r = petl_uprop_runs;
    size_t n = petl_uprop_n_runs;
    for (size_t k = 0; k < n;) {
        if (((mask >> r[k].cat) & 1) == neg) {
            k++;
            continue;
        }
        uint32_t lo = r[k].lo, hi = r[k].hi;
        while (++k < n && r[k].lo == hi + 1 && ((mask >> r[k].cat) & 1) != neg)
            hi = r[k].hi;
        emit_cp(x, (int32_t)lo);
        if (hi > lo) {
            emits(x, "-");
            emit_cp(x, (int32_t)hi);
        }
    }
}

/* A class of categories: its items inside [...], else a class of its own. */
static void emit_class(xlat *x, uint32_t mask, bool neg, bool in_class) {
    if (in_class) {
        emit_categories(x, mask, neg);
        return;
    }
    emits(x, neg ? "[^" : "[");
    emit_categories(x, mask, false);
    emits(x, "]");
}

/* \p{..}, \P{..} or \p{^..} (x->i past the letter): a general category, written to out. */
static bool property(xlat *x, bool neg, bool in_class, size_t at) {
    if (x->i >= x->n || x->p[x->i] != '{') return refuse(x, "\\p without {name}", at);
    x->i++;
    if (x->i < x->n && x->p[x->i] == '^') neg = !neg, x->i++;
    size_t s = x->i;
    while (x->i < x->n && x->p[x->i] != '}')
        x->i++;
    if (x->i >= x->n) return refuse(x, "\\p{ is not closed", at);
    uint32_t mask = category_mask(x->p + s, x->i++ - s);
    if (mask == 0) return refuse(x, "only general categories are supported in \\p{...}", at);
    emit_class(x, mask, neg, in_class);
    return true;
}

/* What one item of the pattern was (for quantifiers, class ranges and case folding). */
typedef enum {
    ITEM_NONE,  /* nothing to repeat: the start, after ( or |, an anchor */
    ITEM_CHAR,  /* one literal character (code point in *c) */
    ITEM_CLASS, /* a set of characters (a class, an escape for one, .) */
    ITEM_GROUP  /* a group */
} item;

/* One escape (x->i at the backslash). In a class, \s becomes its items and \S is refused. */
static bool escape(xlat *x, bool in_class, bool icase, item *it, int32_t *c) {
    size_t at = x->i++;
    if (x->i >= x->n) return refuse(x, "a pattern ending in \\", at);
    unsigned char e = (unsigned char)x->p[x->i++];
    *it = ITEM_CHAR;
    switch (e) {
    case 't': *c = '\t'; break;
    case 'n': *c = '\n'; break;
    case 'r': *c = '\r'; break;
    case 'f': *c = '\f'; break;
    case 'v': *c = '\v'; break;
    case 'a': *c = 7; break;
    case 'e': *c = 27; break;
    case 'x':
    case 'u':
        if ((*c = hex_escape(x, (char)e)) < 0) return refuse(x, "a malformed \\x or \\u", at);
        break;
    case 's':
        *it = ITEM_CLASS;
        emits(x, in_class ? WS_ITEMS : "[" WS_ITEMS "]");
        return true;
    case 'S':
        if (in_class) return refuse(x, "\\S inside [...] is not supported", at);
        *it = ITEM_CLASS;
        emits(x, "[^" WS_ITEMS "]");
        return true;
    case 'd':
    case 'D':
    case 'p':
    case 'P':
        /* the case folding of a class by property differs between the engines */
        if (icase) return refuse(x, "\\d or \\p under (?i) is not supported", at);
        *it = ITEM_CLASS;
        if (e == 'd' || e == 'D') { /* Oniguruma's \d on UTF-8: Unicode Nd */
            emit_class(x, category_mask("Nd", 2), e == 'D', in_class);
            return true;
        }
        return property(x, e == 'P', in_class, at);
    case 'A':
    case 'z':
    case 'Z':
        if (in_class) return refuse(x, "an anchor inside [...]", at);
        *it = ITEM_NONE;
        emit(x, x->p + at, 2);
        return true;
    default:
        if (e >= 0x80) { /* an escaped non-ASCII character is itself */
            int32_t cp;
            size_t len =
                petl_utf8_decode((const unsigned char *)x->p + x->i - 1, x->n - x->i + 1, &cp);
            if (len == 0) return refuse(x, "invalid UTF-8", at);
            x->i += len - 1;
            *c = cp;
            break;
        }
        /* letters and digits name classes, anchors, back-references, options the two engines
         * do not share (\w \b \h \R \K \G \1 ...); \' \` \< \> are anchors in some syntaxes */
        if ((e >= '0' && e <= '9') || (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') ||
            e == '\'' || e == '`' || e == '<' || e == '>') {
            char msg[48];
            snprintf(msg, sizeof msg, "the escape \\%c is not supported", e);
            return refuse(x, msg, at);
        }
        *c = e; /* an escaped punctuation character is itself */
        break;
    }
    return true;
}

/* One item at x->i, inside [...] or not: an escape (escape()) or one UTF-8 character (*it
 * ITEM_CHAR, *c its code point). at: where the construct began, for messages. */
static bool read_item(xlat *x, bool in_class, bool icase, size_t at, item *it, int32_t *c) {
    *it = ITEM_CHAR;
    *c = -1;
    if (x->p[x->i] == '\\') return escape(x, in_class, icase, it, c);
    size_t len = petl_utf8_decode((const unsigned char *)x->p + x->i, x->n - x->i, c);
    if (len == 0) return refuse(x, "invalid UTF-8", at);
    x->i += len;
    return true;
}

/* Case-insensitive matching is the same on both engines only for ASCII characters outside
 * the pairs that a ligature or sharp s folds to as a whole (Oniguruma matches "st" with U+FB06,
 * "ss" with U+00DF); and only single characters in classes. */
static bool fold_safe(int32_t prev, int32_t c) {
    static const char *const pairs[] = {"ss", "ff", "fi", "fl", "st"};
    if (prev < 0) return true;
    char a = (char)(prev | 0x20), b = (char)(c | 0x20);
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
        if (pairs[k][0] == a && pairs[k][1] == b) return false;
    return true;
}

static bool is_letter(int32_t c) {
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

/* A class [...] (x->i at the '['). Every character goes out as \x{..}; a '-' is a range only
 * between two characters (first or last it is itself; after a range or next to a class escape
 * the engines differ). */
static bool char_class(xlat *x, bool icase) {
    size_t at = x->i++;
    emits(x, "[");
    if (x->i < x->n && x->p[x->i] == '^') emits(x, "^"), x->i++;
    if (x->i < x->n && x->p[x->i] == ']') return refuse(x, "a class starting with ]", at);
    item last = ITEM_NONE; /* ITEM_NONE: nothing yet or a range just ended */
    bool empty = true, range = false;
    int32_t last_c = -1;
    for (;;) {
        if (x->i >= x->n) return refuse(x, "a class [...] that is not closed", at);
        size_t here = x->i;
        char ch = x->p[x->i];
        if (ch == ']' && !range) {
            x->i++;
            emits(x, "]");
            return true;
        }
        if (ch == '[') return refuse(x, "a nested class or [:name:] is not supported", here);
        if (ch == '&' && x->i + 1 < x->n && x->p[x->i + 1] == '&')
            return refuse(x, "a class intersection && is not supported", here);
        if (ch == '-' && !range) {
            x->i++;
            if (empty || (x->i < x->n && x->p[x->i] == ']')) {
                emits(x, "\\-");
                last = ITEM_CHAR, last_c = '-', empty = false;
                continue;
            }
            if (last != ITEM_CHAR)
                return refuse(x, "a '-' after a range or a class escape is not supported", here);
            range = true;
            continue;
        }
        item it;
        int32_t c;
        if (!read_item(x, true, icase, here, &it, &c)) return false;
        if (it == ITEM_NONE) return refuse(x, "an anchor inside [...]", here);
        if (it == ITEM_CHAR) {
            if (icase && c >= 0x80)
                return refuse(x, "a non-ASCII character under (?i) is not supported", here);
            if (range && c < last_c) return refuse(x, "a range out of order", here);
            if (range) emits(x, "-");
            emit_cp(x, c);
        } else if (range) {
            return refuse(x, "a range to a class escape is not supported", here);
        }
        last = range ? ITEM_NONE : it;
        last_c = c;
        range = false;
        empty = false;
    }
}

/* Oniguruma's intervals (x->i at the '{'): {n}, {n,}, {n,m} and {,m} (= {0,m}) with their
 * bounds (hi -1: none) and whether a '?' after it would mean something else on PCRE2 ({n}? is
 * lazy there, optional on Oniguruma); false when it is not one (then '{' is itself on both). */
static bool interval(xlat *x, long *lo, long *hi, bool *exact) {
    size_t k = x->i + 1;
    long v[2] = {-1, -1};
    int part = 0;
    for (; k < x->n; k++) {
        char c = x->p[k];
        if (c >= '0' && c <= '9') {
            v[part] = (v[part] < 0 ? 0 : v[part]) * 10 + (c - '0');
            if (v[part] > 1000000) v[part] = 1000000;
        } else if (c == ',' && part == 0) {
            part = 1;
        } else {
            break;
        }
    }
    if (k >= x->n || x->p[k] != '}' || (v[0] < 0 && v[1] < 0)) return false;
    *lo = v[0] < 0 ? 0 : v[0];
    *hi = part == 0 ? v[0] : v[1];
    *exact = part == 0 || v[0] < 0;
    x->i = k + 1;
    return true;
}

/* The whole pattern. Groups may nest 64 deep; (?i) is taken only at the start of a group
 * (Oniguruma makes it a group to the next ')', across '|', where PCRE2 does not). */
static bool translate(xlat *x) {
    bool icase[65] = {false};
    size_t depth = 0;
    item last = ITEM_NONE;
    int quant = 0;     /* after a quantifier: 1 simple, 2 {n,m}, 3 {n} or {,m}, 4 modified */
    int32_t prev = -1; /* the literal ASCII letter before, under (?i) */
    bool fresh = true; /* at the start of the pattern or of a group */
    while (x->i < x->n) {
        size_t at = x->i;
        bool was_fresh = fresh;
        fresh = false;
        char ch = x->p[x->i];
        bool ic = icase[depth];
        if (ch == '*' || ch == '+' || ch == '?') {
            x->i++;
            if (quant == 1 && ch != '*') {
                quant = 4; /* lazy or possessive: the same on both */
            } else if (quant == 2 && ch == '?') {
                quant = 4;
            } else if (quant == 3 && ch == '?') {
                /* lazy on PCRE2, an optional repeat on Oniguruma */
                return refuse(x, "{n}? and {,n}? mean other things on the two engines", at);
            } else if ((quant == 2 || quant == 3) && ch == '+') {
                /* possessive on PCRE2, a repeat of the repeat on Oniguruma */
                return refuse(x, "{n,m}+ means other things on the two engines", at);
            } else if (quant || last == ITEM_NONE) {
                return refuse(x, "a quantifier with nothing it may repeat", at);
            } else {
                quant = 1;
            }
            emit(x, &ch, 1);
            continue;
        }
        long lo, hi;
        bool exact;
        if (ch == '{' && interval(x, &lo, &hi, &exact)) {
            if (quant || last == ITEM_NONE)
                return refuse(x, "a quantifier with nothing it may repeat", at);
            if (lo > 65535 || hi > 65535 || (hi >= 0 && hi < lo))
                return refuse(x, "a repeat count over 65535 or out of order", at);
            char b[48];
            if (hi < 0)
                snprintf(b, sizeof b, "{%ld,}", lo);
            else
                snprintf(b, sizeof b, "{%ld,%ld}", lo, hi);
            quant = exact ? 3 : 2;
            emits(x, b);
            continue;
        }
        quant = 0;
        if (ch == '(') {
            x->i++;
            if (depth == 64) return refuse(x, "groups nested over 64 deep", at);
            const char *rest = x->p + x->i;
            size_t left = x->n - x->i;
            bool on = ic;
            if (left >= 1 && rest[0] == '*') return refuse(x, "(* is not supported", at);
            if (left >= 1 && rest[0] == '?') {
                static const char *const ok[] = {"?:",  "?=",  "?!",  "?>",
                                                 "?<=", "?<!", "?i:", "?-i:"};
                size_t k = 0, len = 0;
                for (; k < sizeof ok / sizeof ok[0]; k++) {
                    len = strlen(ok[k]);
                    if (left >= len && memcmp(rest, ok[k], len) == 0) break;
                }
                if (k == sizeof ok / sizeof ok[0]) {
                    /* (?i) / (?-i) alone: only where a group (or the pattern) starts */
                    bool set = left >= 3 && !memcmp(rest, "?i)", 3);
                    bool unset = left >= 4 && !memcmp(rest, "?-i)", 4);
                    if (!set && !unset)
                        return refuse(x, "this kind of group (?...) is not supported", at);
                    if (!was_fresh)
                        return refuse(x, "(?i) is only supported where a group starts", at);
                    icase[depth] = set;
                    emits(x, set ? "(?i)" : "(?-i)");
                    x->i += set ? 3 : 4;
                    prev = -1;
                    continue;
                }
                if (k == 6) on = true;
                if (k == 7) on = false;
                emit(x, "(", 1);
                emit(x, rest, len);
                x->i += len;
            } else {
                emit(x, "(", 1);
            }
            icase[++depth] = on;
            last = ITEM_NONE;
            fresh = true;
            continue;
        }
        if (ch == ')') {
            if (depth == 0) return refuse(x, "an unmatched )", at);
            depth--;
            x->i++;
            emit(x, ")", 1);
            last = ITEM_GROUP;
            continue;
        }
        if (ch == '|' || ch == '^' || ch == '$') {
            x->i++;
            emit(x, &ch, 1);
            last = ITEM_NONE;
            prev = -1;
            continue;
        }
        if (ch == '[') {
            if (!char_class(x, ic)) return false;
            last = ITEM_CLASS;
            prev = -1;
            continue;
        }
        if (ch == '.') {
            x->i++;
            emit(x, ".", 1);
            last = ITEM_CLASS;
            prev = -1;
            continue;
        }
        item it;
        int32_t c;
        if (!read_item(x, false, ic, at, &it, &c)) return false;
        last = it;
        if (it != ITEM_CHAR) {
            prev = -1;
            continue;
        }
        if (ic && c >= 0x80)
            return refuse(x, "a non-ASCII character under (?i) is not supported", at);
        if (ic && is_letter(c) && !fold_safe(prev, c))
            return refuse(x, "letters under (?i) that a ligature folds to are not supported", at);
        prev = ic && is_letter(c) ? c : -1;
        emit_cp(x, c);
    }
    if (depth != 0) return refuse(x, "an unclosed (", x->n);
    return true;
}

petl_status petl_tok_regex_compile(const char *pattern, bool literal, const char *what,
                                   const char *comp, void **out, petl_error *err) {
    *out = NULL;
    xlat x = {.p = pattern, .n = strlen(pattern)};
    const char *src = pattern;
    size_t len = x.n;
    uint32_t opts = PCRE2_UTF;
    if (literal) {
        opts |= PCRE2_LITERAL; /* the reference escapes a String: it matches as it is */
    } else {
        emits(&x, "");
        if (!x.oom && !translate(&x)) {
            free(x.out);
            return petl_fail(err, PETL_ERR_FORMAT, "%s: %s: the pattern \"%.64s\": %s", what, comp,
                             pattern, x.why);
        }
        if (x.oom) {
            free(x.out);
            return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
        }
        src = x.out, len = x.len;
        /* Oniguruma's ^ and $ are line anchors, its lines end at \n only */
        opts |= PCRE2_MULTILINE | PCRE2_NEVER_BACKSLASH_C;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(NULL);
    if (!cc) {
        free(x.out);
        return petl_fail(err, PETL_ERR_NOMEM, "%s: out of memory", what);
    }
    pcre2_set_newline(cc, PCRE2_NEWLINE_LF);
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)src, len, opts, &code, &at, cc);
    pcre2_compile_context_free(cc);
    free(x.out);
    if (!re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(code, msg, sizeof msg);
        return petl_fail(err, PETL_ERR_FORMAT, "%s: %s: the pattern \"%.64s\" does not compile: %s",
                         what, comp, pattern, (const char *)msg);
    }
    /* the classes of \p{..} are long lists of ranges, which the interpreter scans one by one
     * for every character past U+00FF; the JIT's code does that about 8 times faster. Where
     * there is no JIT (or no memory for it) the interpreter matches the same. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return PETL_OK;
}

int petl_tok_regex_match(const void *re, const char *s, size_t len, size_t at, void *md) {
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK, md, NULL);
    /* the JIT's stack (32 KiB) may run out where the interpreter's heap does not */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)s, len, at, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    return rc;
}

void petl_tok_regex_free(void *re) {
    pcre2_code_free(re);
}

void petl_tok_regex_scratch_free(petl_tok_regex_scratch *s) {
    free(s->bytes);
    free(s->boff);
    free(s->m);
    pcre2_match_data_free(s->md);
    memset(s, 0, sizeof *s);
}

static petl_status push_match(petl_tok_regex_scratch *s, size_t a, size_t b, petl_error *err) {
    if (s->n_m == s->cap_m) {
        size_t cap = s->cap_m ? 2 * s->cap_m : 16;
        size_t *m = realloc(s->m, 2 * cap * sizeof *m);
        if (!m) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu matches", cap);
        s->m = m;
        s->cap_m = cap;
    }
    s->m[2 * s->n_m] = a;
    s->m[2 * s->n_m + 1] = b;
    s->n_m++;
    return PETL_OK;
}

/* Oniguruma's find_iter as the reference's onig crate runs it: search from the end of the last
 * match; an empty match where the last match ended is not taken, the search moves on by one
 * character instead. An empty text has no matches (the reference's find_matches). */
petl_status petl_tok_regex_find(const void *re, const int32_t *cp, size_t n,
                                petl_tok_regex_scratch *s, petl_error *err) {
    s->n_m = 0;
    if (n == 0) return PETL_OK;
    if (n > (SIZE_MAX - 1) / 4) return petl_fail(err, PETL_ERR_NOMEM, "text too long");
    size_t cap = 4 * n + 1;
    if (cap > s->cap_bytes) {
        char *b = realloc(s->bytes, cap);
        if (b) s->bytes = b;
        size_t *o = b ? realloc(s->boff, cap * sizeof *o) : NULL;
        if (o) s->boff = o;
        if (!b || !o) return petl_fail(err, PETL_ERR_NOMEM, "out of memory for %zu characters", n);
        s->cap_bytes = cap;
    }
    if (!s->md && !(s->md = pcre2_match_data_create(1, NULL)))
        return petl_fail(err, PETL_ERR_NOMEM, "out of memory");
    size_t len = 0;
    for (size_t k = 0; k < n; k++) {
        size_t m = petl_utf8_encode(cp[k], s->bytes + len);
        for (size_t q = 0; q < m; q++)
            s->boff[len + q] = k;
        len += m;
    }
    s->boff[len] = n;
    size_t last_end = 0, last_match_end = SIZE_MAX;
    while (last_end <= len) {
        int rc = petl_tok_regex_match(re, s->bytes, len, last_end, s->md);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return petl_fail(err, PETL_ERR_UNSUPPORTED, "a tokenizer pattern failed: %s",
                             (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t a = ov[0], b = ov[1];
        if (a == b && b == last_match_end) {
            /* the next character's length (1 at the end: past it, the loop stops) */
            size_t step = 1;
            while (last_end + step < len &&
                   ((unsigned char)s->bytes[last_end + step] & 0xC0) == 0x80)
                step++;
            last_end += step;
            continue;
        }
        last_end = last_match_end = b;
        petl_status st = push_match(s, s->boff[a], s->boff[b], err);
        if (st != PETL_OK) return st;
    }
    return PETL_OK;
}
