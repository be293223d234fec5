/*
 * cmd_int.h — what the command files (cmd*.c, reply.c) share: Redis's
 * error strings, the reply builders r_*, argument parsing, store access
 * (kget/kop/commit, all through here), the per-key lock sets, the helpers
 * EXEC and the pipelined writes borrow from the command families, and the
 * c_* handlers the table in cmd.c names.  Not a public interface.
 *
 * Which file holds what:
 *   reply.c       replies (RESP2/RESP3) and argument parsing
 *   cmd_keys.c    store access, per-key locks, keyspace commands
 *   cmd_conn.c    connection and server commands
 *   cmd_string.c  strings and counters
 *   cmd_list.c    lists and blocking pops
 *   cmd_expire.c  expiry
 *   cmd_set.c     sets
 *   cmd_json.c    RedisJSON commands
 *   cmd_tx.c      MULTI / EXEC / DISCARD / WATCH
 *   cmd.c         the table, dispatch, pipelined writes
 *
 * Reads use mf_store_get (slice references, no store lock held while
 * replying); every mutation is an mf_op through mf_db_commit_notify.
 * Mapping to the store's types: Redis strings are /kv keys, lists /lists
 * keys (one element per line, so an element cannot contain '\n'), sets
 * /sets keys, RedisJSON documents /json keys (TYPE says "ReJSON-RL", as
 * RedisJSON does).  Redis replaces a key of any type on SET/RENAME; the
 * store refuses a type change in one op, so that case is a DEL then the op
 * (two WAL records).
 *
 * resp/ is linked into the same binary as fs/ and db/: every name here
 * that is not a handler (c_*) or a reply (r_*) carries the rc_ prefix.
 */
#ifndef MF_RESP_CMD_INT_H
#define MF_RESP_CMD_INT_H

#include "resp_int.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define E_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define E_SYNTAX "ERR syntax error"
#define E_NOTINT "ERR value is not an integer or out of range"
#define E_NOKEY "ERR no such key"
#define E_NEWLINE "ERR memfluxfs list elements are lines: an element cannot contain a newline"
#define E_MEMBER_NL "ERR memfluxfs set members are lines: a member cannot contain a newline"

/* ---------- replies (reply.c): appended to c->out ---------- */

void r_simple(client *c, const char *s);
void r_ok(client *c);
void r_err(client *c, const char *s);
void r_int(client *c, long long v);
void r_bulk(client *c, const void *p, size_t n);
void r_cstr(client *c, const char *s);
void r_nil(client *c);     /* RESP3 null, RESP2 nil bulk */
void r_nil_arr(client *c); /* RESP3 null, RESP2 nil array */
void r_arr(client *c, size_t n);
void r_map(client *c, size_t n);
void r_errno(client *c, int err);
void r_unknown_subcommand(client *c, const req *r, const char *cmd);
void r_ok_or_errno(client *c, int rc);
void r_int_result(client *c, int rc, long long v); /* -EEXIST: WRONGTYPE */
/* A read's reply for a missing key (rc_kget_as's `missing`). */
void r_zero(client *c);
void r_empty_bulk(client *c);
void r_empty_arr(client *c);

/* ---------- arguments (reply.c) ---------- */

bool rc_argis(const req *r, int i, const char *s);
bool rc_parse_ll(const char *p, size_t n, long long *out);
/* argv[i] as an integer, or false with E_NOTINT replied. */
bool rc_arg_ll(client *c, const req *r, int i, long long *v);

/* ---------- store access and per-key locks (cmd_keys.c) ---------- */

/* Set by EXEC around a queued read's reply: argv index -> its READ
 * sub-op's result.  NULL otherwise (rc_kget reads the store). */
extern _Thread_local const mf_op_result *const *rc_tx_view;

int rc_kget(resp_ctx *x, const req *r, int i, bool want, mf_entry_info *e);
bool rc_kget_as(resp_ctx *x, client *c, const req *r, uint8_t type, bool want,
                void (*missing)(client *), mf_entry_info *e);
mf_op rc_kop(int type, int ktype, const char *k, size_t n);
int rc_commit(resp_ctx *x, mf_op *op);
int rc_del_key(resp_ctx *x, const char *k, size_t n);
/* STRLEN / LLEN, and GETRANGE / LRANGE's arguments. */
void rc_key_len(resp_ctx *x, client *c, const req *r, uint8_t type);
bool rc_range_args(resp_ctx *x, client *c, const req *r, uint8_t type,
                   void (*missing)(client *), long long *start, long long *end,
                   mf_entry_info *e);

/* A set of stripes (bit i: x->stripes[i]), taken in index order. */
typedef uint64_t lockset;

unsigned rc_stripe_of(const char *k, size_t n);
lockset rc_lock_args(resp_ctx *x, const req *r, int first, int last, int step);   /* exclusive */
lockset rc_lock_shared(resp_ctx *x, const req *r, int first, int last, int step);
lockset rc_lock_all(resp_ctx *x);
void rc_unlock_set(resp_ctx *x, lockset m);
bool rc_keys_ok(client *c, const req *r, int first, int last, int step);

/* ---------- helpers the families lend to EXEC and pipelined writes ---------- */

int64_t rc_expire_arg(client *c, const req *r, int i, bool ms, bool at, bool positive,
                      const char *cmd);                                  /* cmd_expire.c */
void rc_incr_reply(client *c, bool is_float, int rc, uint64_t res, mf_slice out); /* cmd_string.c */
mf_op rc_push_op(const req *r, bool left);                               /* cmd_list.c */
void rc_pop_result(client *c, const mf_op *op, int rc, bool left, bool with_count);
void rc_drop_if_empty(resp_ctx *x, const req *r);
mf_slice rc_member_lines(const req *r, int from, int *skipped);          /* cmd_set.c */
char *rc_json_path(const req *r, int i, size_t *len, bool *legacy);      /* cmd_json.c */
void rc_json_update_reply(client *c, int type, int rc, bool key_absent, bool legacy,
                          const char *path, uint64_t res, mf_slice out);
mf_slice rc_arrappend_values(const req *r);
void rc_tx_queue(client *c, req *r);                                     /* cmd_tx.c */

/* ---------- handlers (the table in cmd.c) ---------- */

#define RC_HANDLER(name) void name(resp_ctx *x, client *c, req *r)

/* cmd_conn.c */
RC_HANDLER(c_ping); RC_HANDLER(c_echo); RC_HANDLER(c_auth); RC_HANDLER(c_hello);
RC_HANDLER(c_select); RC_HANDLER(c_quit); RC_HANDLER(c_client); RC_HANDLER(c_config);
RC_HANDLER(c_dbinfo); RC_HANDLER(c_save); RC_HANDLER(c_bgsave); RC_HANDLER(c_lastsave);
RC_HANDLER(c_flushdb);
/* cmd_keys.c */
RC_HANDLER(c_del); RC_HANDLER(c_exists); RC_HANDLER(c_type); RC_HANDLER(c_rename);
RC_HANDLER(c_renamenx); RC_HANDLER(c_keys); RC_HANDLER(c_scan); RC_HANDLER(c_dbsize);
/* cmd_string.c */
RC_HANDLER(c_get); RC_HANDLER(c_set); RC_HANDLER(c_mget); RC_HANDLER(c_mset);
RC_HANDLER(c_append); RC_HANDLER(c_strlen); RC_HANDLER(c_getrange); RC_HANDLER(c_setrange);
RC_HANDLER(c_incr); RC_HANDLER(c_decr); RC_HANDLER(c_incrby); RC_HANDLER(c_decrby);
RC_HANDLER(c_incrbyfloat);
/* cmd_list.c */
RC_HANDLER(c_lpush); RC_HANDLER(c_rpush); RC_HANDLER(c_lpop); RC_HANDLER(c_rpop);
RC_HANDLER(c_blpop); RC_HANDLER(c_brpop); RC_HANDLER(c_llen); RC_HANDLER(c_lrange);
RC_HANDLER(c_lindex);
/* cmd_expire.c */
RC_HANDLER(c_expire); RC_HANDLER(c_pexpire); RC_HANDLER(c_expireat); RC_HANDLER(c_pexpireat);
RC_HANDLER(c_persist); RC_HANDLER(c_ttl); RC_HANDLER(c_pttl); RC_HANDLER(c_expiretime);
RC_HANDLER(c_pexpiretime);
/* cmd_set.c */
RC_HANDLER(c_sadd); RC_HANDLER(c_srem); RC_HANDLER(c_smembers); RC_HANDLER(c_sismember);
RC_HANDLER(c_scard); RC_HANDLER(c_smove);
/* cmd_json.c */
RC_HANDLER(c_json_get); RC_HANDLER(c_json_set); RC_HANDLER(c_json_del); RC_HANDLER(c_json_type);
RC_HANDLER(c_json_numincrby); RC_HANDLER(c_json_arrappend); RC_HANDLER(c_json_strappend);
/* cmd_tx.c */
RC_HANDLER(c_multi); RC_HANDLER(c_exec); RC_HANDLER(c_discard); RC_HANDLER(c_watch);
RC_HANDLER(c_unwatch);

#undef RC_HANDLER

#endif
