// Oniguruma from Debian's libonig-dev: the regex engine the `tokenizers` library uses for
// pre-tokenizer patterns, so `\p{L}`, `\s`, `(?i:...)` and lookahead mean exactly the same here.
#include <oniguruma.h>

// The encoding and syntax objects are extern structs in C; Swift cannot take their address
// through the macros, so these helpers hand out the pointers.
static inline OnigEncoding plm_onig_utf8(void) { return ONIG_ENCODING_UTF8; }
static inline OnigSyntaxType *plm_onig_syntax_default(void) { return ONIG_SYNTAX_DEFAULT; }

// onig_error_code_to_str is variadic in C (it takes the error info only for some codes), which
// Swift cannot call; this fixed-arity wrapper always passes it.
static inline int plm_onig_error_code_to_str(OnigUChar *buffer, int code, OnigErrorInfo *info) {
    return onig_error_code_to_str(buffer, code, info);
}
