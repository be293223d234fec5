/*
 * json.h — strict JSON validation and path-addressed partial updates.
 *
 * Owns: nothing but code.  Every function here is a pure function of its
 * arguments: no global state, no locks, safe to call from any thread at any
 * time.  Inputs are never modified; documents are (pointer, length) pairs and
 * are NOT required to be NUL-terminated — no function reads past p[n-1].
 *
 * Why this exists: /json/<key> files must only ever hold valid JSON, and
 * tokenizers such as jsmn are not validators — jsmn accepts `tru`, `01`,
 * `{"a":1,}`, several top-level values and more (measured against
 * JSONTestSuite).  So every document is checked by mf_json_validate() (our
 * own strict checker), and the path functions only ever scan text that has
 * passed it, where skipping values by brackets and quotes gives exact byte
 * offsets for splicing.
 *
 * Errors: negative errno, 0 on success.
 *   -EINVAL  invalid JSON (document or value), or malformed path
 *   -ENOENT  the path does not exist in the document
 *   -ENOMEM  allocation failed
 *   -E2BIG   document (or result) larger than INT_MAX bytes — only from the
 *            path functions
 *
 * Decisions (the RFC leaves these to the implementation):
 *   - Lone surrogate escapes (\uD800 without a low surrogate, or a lone
 *     \uDC00) are ACCEPTED: RFC 8259 §8.2 allows them syntactically and
 *     JSONTestSuite marks them "implementation defined".  Raw UTF-8-encoded
 *     surrogates (ED A0..BF xx) are REJECTED: that is invalid UTF-8.
 *   - A UTF-8 byte order mark is REJECTED (RFC 8259 §8.1: implementations
 *     MUST NOT add one; we store exactly what is valid JSON text, and a
 *     file beginning with EF BB BF would not round-trip through strict
 *     parsers elsewhere).
 *   - Nesting depth is limited to MF_JSON_MAX_DEPTH containers: 512 nested
 *     arrays/objects are accepted, 513 are rejected ("nesting too deep").
 *     Scalars do not count.  The checker is iterative (a fixed 512-entry
 *     stack), so no input can overflow the C stack.
 *   - Empty and whitespace-only documents are invalid ("empty document").
 */
#ifndef MF_JSON_H
#define MF_JSON_H

#include <stddef.h>
#include <stdint.h>

#define MF_JSON_MAX_DEPTH 512

/*
 * Strict RFC 8259 validation of a whole document: exactly one JSON value of
 * any type (top-level scalars allowed) surrounded by optional whitespace
 * (space, \t, \n, \r).  Strings must be valid UTF-8 (no overlongs, no
 * encoded surrogates, nothing above U+10FFFF, no truncated sequences).
 * O(n) time, O(1) extra space.
 *
 * Returns 0 if valid.  Otherwise -EINVAL, with *err_off set to the byte
 * offset of the problem (n for "unexpected end of input") and *why to a
 * static, human-readable string such as "trailing comma" or "leading zero".
 * err_off and why may be NULL.  On success they are left untouched.
 *
 * Offsets point at: the offending byte; the comma for a trailing comma; the
 * first byte of a bad bare word (`tru`, `thanx`); the backslash of a bad
 * escape; the lead byte of a bad UTF-8 sequence; the opening bracket that
 * exceeds the depth limit; the '0' of a leading zero.
 */
int mf_json_validate(const char *p, size_t n, size_t *err_off, const char **why);

/*
 * Paths (RedisJSON style, subset):
 *   $                  the whole document
 *   $.name             member; name is 1+ chars of [A-Za-z0-9_-]
 *   $['any name']      member with any name; also $["any name"].  Inside the
 *                      quotes a backslash escapes the next byte (\' \" \\),
 *                      every other byte is literal.  The name must be UTF-8.
 *   $[N]               array element, N a decimal index without leading zeros
 * Steps chain freely: $.a[2].c, $['x.y'][0].
 *
 * Member names are compared AFTER unescaping the JSON key: $.a matches both
 * "a" and "\u0061" in the document (byte-wise comparison of the decoded
 * UTF-8).  With duplicate member names the last one wins (as in Python's
 * json, jq and RedisJSON): get reads it and set replaces it, every other
 * byte (the earlier duplicates included) stays as it was.
 *
 * A step that does not fit the value it is applied to (a member of an
 * array, an index of an object, anything inside a scalar) is -ENOENT, like
 * an absent member or an out-of-range index.
 */

/*
 * Get: *out_off and *out_len = byte span of the value at path within doc (for a
 * string, including its quotes; for "$", the root value without surrounding
 * whitespace).  Returns 0, -ENOENT (absent), -EINVAL (bad path, or doc is
 * not valid JSON — doc is checked, not trusted), -ENOMEM, -E2BIG.
 */
int mf_json_get_path(const char *doc, size_t n, const char *path, size_t pathlen,
		     size_t *out_off, size_t *out_len);

/*
 * Set: build a new document in *out (malloc'd, NUL-terminated for
 * convenience; *outlen excludes the NUL; caller frees) where the value at
 * path is replaced by val.  val must be valid JSON (-EINVAL otherwise); its
 * surrounding whitespace is trimmed before splicing.
 *
 * The document text is spliced, never re-serialized: every byte outside the
 * replaced span is preserved, so formatting, key order and duplicates stay.
 *
 *   - "$": *out is exactly val (whole document replaced, val's own
 *     whitespace kept); doc is not inspected at all, so a corrupt document
 *     can always be overwritten this way.
 *   - Last step is a member missing from an object that exists: the member
 *     is added.  Non-empty object: `,"name":val` is inserted right after the
 *     last member's value (so whitespace before the '}' stays where it was);
 *     empty object: `"name":val` is inserted right after the '{'.  The name
 *     is written JSON-escaped (" \ and control chars).
 *   - Array index out of range, missing intermediate, type mismatch: -ENOENT
 *     (nothing is created except that one final member).
 *   - If the result would break a rule (e.g. nesting beyond
 *     MF_JSON_MAX_DEPTH once val is placed deep inside doc): -EINVAL.
 * On error *out is untouched.
 */
int mf_json_set_path(const char *doc, size_t n, const char *path, size_t pathlen,
		     const char *val, size_t vallen, char **out, size_t *outlen);

/*
 * Delete: build a new document in *out (malloc'd as for set) without the
 * member or array element at path; the comma that separated it goes too
 * (with the blanks after it when it followed the member), every other byte
 * stays: {"a": 1, "b": 2} minus $.a is {"b": 2}.  "$" is -EINVAL (deleting the whole document is
 * deleting the key: the caller's business).  -ENOENT if absent.
 */
int mf_json_del_path(const char *doc, size_t n, const char *path, size_t pathlen,
		     char **out, size_t *outlen);

/*
 * The same three on a document already known valid — one the store holds
 * (every stored document passed mf_json_validate; the empty "no document
 * yet" value gives -EINVAL): no validation of doc, one forward scan over
 * the containers on the path, and set checks the result's nesting depth
 * instead of validating the result.  A member read or update then costs
 * one pass at most, not three to eight (issue 12).  Passing text that is
 * not valid JSON gives a wrong span or -EINVAL, never a read out of bounds.
 */
typedef char *(*mf_json_alloc)(void *ctx, size_t n); /* n bytes, or NULL */
int mf_json_get_path_doc(const char *doc, size_t n, const char *path, size_t pathlen,
                         size_t *out_off, size_t *out_len);
/* *out comes from alloc(actx, *outlen + 1) if alloc is given (else malloc):
 * the store builds the new value in its own buffer. */
int mf_json_set_path_doc(const char *doc, size_t n, const char *path, size_t pathlen,
                         const char *val, size_t vallen, char **out, size_t *outlen,
                         mf_json_alloc alloc, void *actx);
int mf_json_del_path_doc(const char *doc, size_t n, const char *path, size_t pathlen,
                         char **out, size_t *outlen, mf_json_alloc alloc, void *actx);

/* Check path syntax only: 0 or -EINVAL.  Lets callers reject a bad path
 * before they fetch a document. */
int mf_json_path_check(const char *path, size_t pathlen);

/*
 * Paths with several matches (reads only), as RedisJSON's "$" paths:
 *   $[-N]              the N-th element from the end ([-1]: the last); also
 *                      in single-match paths, for get, set and delete
 *   $.*  $[*]          every member value / every element
 *   $..name  $..[N]  $..*   the step at any depth below (recursive descent,
 *                      the container itself included), in document order
 * get/set/del (and the updates below) take single-match paths: a path with
 * [*], .* or .. is -EINVAL there.
 */
/* 1 if path has a [*], .* or .. step, 0 if not, -EINVAL if bad. */
int mf_json_path_multi(const char *path, size_t pathlen);
/* Every match of path in doc as one JSON array text "[m1,m2,...]"
 * (malloc'd, NUL-terminated; "[]" when nothing matches).  0 or -errno. */
int mf_json_query(const char *doc, size_t n, const char *path, size_t pathlen, char **out,
                  size_t *outlen);

/*
 * Atomic updates (one WAL record each; the store applies them), each
 * building the new document in *out as set does, the rest of the text
 * untouched.  -ENOENT: no such member; -EDOM: the member has another JSON
 * type; -EINVAL: bad path or argument.
 *   numincrby: add the JSON number inc to the number at path; integers
 *     stay integers while the sum fits int64, else the sum is a double
 *     written shortest-round-trip with ".0" if integral (RedisJSON's 2.5,
 *     3.0); -ERANGE if it would be infinite.  num (MF_JSON_NUM_MAX bytes)
 *     receives the new number's text.
 *   arrappend: vals is a JSON array of the values to append to the array
 *     at path; *newlen = its new length.
 *   strappend: str is a JSON string whose content is appended to the
 *     string at path; *newlen = its new length in bytes (decoded).
 */
#define MF_JSON_NUM_MAX 64
int mf_json_numincrby(const char *doc, size_t n, const char *path, size_t pathlen,
                      const char *inc, size_t inclen, char **out, size_t *outlen, char *num,
                      size_t *numlen);
int mf_json_arrappend(const char *doc, size_t n, const char *path, size_t pathlen,
                      const char *vals, size_t vlen, char **out, size_t *outlen,
                      uint64_t *newlen);
int mf_json_strappend(const char *doc, size_t n, const char *path, size_t pathlen,
                      const char *str, size_t slen, char **out, size_t *outlen,
                      uint64_t *newlen);

#endif /* MF_JSON_H */
