/*
 * scripts.c — the Lua scripts every commit and read runs on the server.
 *
 * Why scripts: a key's type check, its one whole-value command and its meta
 * field (kind + mtime, see remote.h) must change together, with nothing of
 * another client in between; a script runs atomically on the key's node.
 * Every key a script touches is passed in KEYS (the key, its slot's meta
 * hash, for RENAME the target and its meta hash), as the cluster requires;
 * the key and its meta hash always share a slot.  Refusals are error
 * replies "MF <ERRNO NAME>", mapped back to the embedded store's errors by
 * kv.c.  Loaded with SCRIPT LOAD on every new connection, run by EVALSHA.
 */
#include "remote_int.h"

/* KEYS: key, meta.  ARGV: want ("1": with the value).
 * -> {type, meta|nil, value|length [, list count]} */
static const char get_script[] =
	"local t = redis.call('TYPE', KEYS[1]).ok\n"
	"local m = redis.call('HGET', KEYS[2], KEYS[1])\n"
	"if t == 'string' then\n"
	"  if ARGV[1] == '1' then return {t, m, redis.call('GET', KEYS[1])} end\n"
	"  return {t, m, redis.call('STRLEN', KEYS[1])}\n"
	"elseif t == 'list' then\n"
	"  local v = redis.call('LRANGE', KEYS[1], 0, -1)\n"
	"  if ARGV[1] == '1' then return {t, m, v} end\n"
	"  local n = 0\n"
	"  for i = 1, #v do n = n + #v[i] + 1 end\n"
	"  return {t, m, n, #v}\n"
	"end\n"
	"return {t, m}\n";

/* KEYS: key, meta [, key2, meta2].  ARGV: op, kind (s/j/l), now_ns, arg,
 * values...  The checks are the embedded store's (store.c validate):
 * ops that create refuse a key of another kind (EEXIST); the others need
 * the key with this kind (ENOENT). */
static const char apply_script[] =
	"local op, kt, now, arg = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
	"local k, meta = KEYS[1], KEYS[2]\n"
	"local function fail(e) return redis.error_reply('MF ' .. e) end\n"
	"local function kind(key, mh)\n"
	"  local t = redis.call('TYPE', key).ok\n"
	"  local m = redis.call('HGET', mh, key)\n"
	"  local mk = m and string.sub(m, 1, 1)\n"
	"  if t == 'string' then\n"
	"    if mk == 'j' then return 'j', m end\n"
	"    return 's', m\n"
	"  elseif t == 'list' then return 'l', m\n"
	"  elseif t == 'none' then\n"
	"    if mk == 'l' then return 'l', m end\n"
	"    return nil, nil\n"
	"  end\n"
	"  return 'x', m\n"
	"end\n"
	"local cur, m = kind(k, meta)\n"
	"local function stamp() redis.call('HSET', meta, k, kt .. now) end\n"
	"local function push(cmd, from)\n"
	"  local n = 0\n"
	"  for i = from, #ARGV, 1000 do\n"
	"    n = redis.call(cmd, k, unpack(ARGV, i, math.min(i + 999, #ARGV)))\n"
	"  end\n"
	"  return n\n"
	"end\n"
	"local creates = {CREATE=1, SET=1, APPEND=1, SETRANGE=1, RPUSH=1, LPUSH=1}\n"
	"if creates[op] then\n"
	"  if cur and cur ~= kt then return fail('EEXIST') end\n"
	"elseif cur ~= kt then return fail('ENOENT') end\n"
	"if op == 'CREATE' then\n"
	"  if not cur then\n"
	"    if kt ~= 'l' then redis.call('SET', k, '') end\n"
	"    stamp()\n"
	"  end\n"
	"  return 0\n"
	"elseif op == 'SET' then\n"
	"  if kt == 'l' then\n"
	"    redis.call('DEL', k)\n"
	"    push('RPUSH', 5)\n"
	"  else redis.call('SET', k, ARGV[5]) end\n"
	"  stamp()\n"
	"  return 0\n"
	"elseif op == 'APPEND' or op == 'SETRANGE' then\n"
	"  local n\n"
	"  if op == 'APPEND' then n = redis.call('APPEND', k, ARGV[5])\n"
	"  else n = redis.call('SETRANGE', k, arg, ARGV[5]) end\n"
	"  stamp()\n"
	"  return n\n"
	"elseif op == 'RPUSH' or op == 'LPUSH' then\n"
	"  local n = push(op, 5)\n"
	"  stamp()\n"
	"  return n\n"
	"elseif op == 'TRUNCATE' then\n"
	"  local size = tonumber(arg)\n"
	"  if kt == 'l' then\n"
	"    if size ~= 0 then return fail('EINVAL') end\n"
	"    redis.call('DEL', k)\n"
	"  else\n"
	"    local len = redis.call('STRLEN', k)\n"
	"    if kt == 'j' and size ~= len then return fail('EINVAL') end\n"
	"    if size == 0 then redis.call('SET', k, '')\n"
	"    elseif size < len then\n"
	"      redis.call('SET', k, redis.call('GETRANGE', k, 0, size - 1))\n"
	"    elseif size > len then redis.call('SETRANGE', k, size - 1, '\\0') end\n"
	"  end\n"
	"  stamp()\n"
	"  return 0\n"
	"elseif op == 'DEL' then\n"
	"  if arg == '1' then\n"
	"    local len\n"
	"    if kt == 'l' then len = redis.call('LLEN', k) else len = redis.call('STRLEN', k) end\n"
	"    if len > 0 then return fail('ENOTEMPTY') end\n"
	"  end\n"
	"  redis.call('DEL', k)\n"
	"  redis.call('HDEL', meta, k)\n"
	"  return 0\n"
	"elseif op == 'SETTIME' then\n"
	"  redis.call('HSET', meta, k, kt .. arg)\n"
	"  return 0\n"
	"elseif op == 'LPOP' or op == 'RPOP' then\n"
	"  if redis.call('LLEN', k) == 0 then return fail('ENODATA') end\n"
	"  local v = redis.call(op, k, arg)\n"
	"  stamp()\n"
	"  return v\n"
	"elseif op == 'RENAME' then\n"
	"  local k2, meta2 = KEYS[3], KEYS[4]\n"
	"  local c2 = kind(k2, meta2)\n"
	"  if c2 and c2 ~= kt then return fail('EEXIST') end\n"
	"  if k2 == k then return 0 end\n"
	"  if redis.call('EXISTS', k) == 1 then redis.call('RENAME', k, k2)\n"
	"  else redis.call('DEL', k2) end\n"
	"  redis.call('HDEL', meta, k)\n"
	"  if m then redis.call('HSET', meta2, k2, m) else redis.call('HDEL', meta2, k2) end\n"
	"  return 0\n"
	"end\n"
	"return fail('EINVAL')\n";

/* KEYS: key, meta.  ARGV: old document, new document, now_ns, "set"|"del".
 * JSON path edits are computed here (store/json.c) from the document read
 * before: applied only if the document is still that one (1), else 0 and
 * the caller reads again. */
static const char cas_script[] =
	"local m = redis.call('HGET', KEYS[2], KEYS[1])\n"
	"if redis.call('TYPE', KEYS[1]).ok ~= 'string' or not m or string.sub(m, 1, 1) ~= 'j' then\n"
	"  return redis.error_reply('MF ENOENT')\n"
	"end\n"
	"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
	"if ARGV[4] == 'del' then\n"
	"  redis.call('DEL', KEYS[1])\n"
	"  redis.call('HDEL', KEYS[2], KEYS[1])\n"
	"else\n"
	"  redis.call('SET', KEYS[1], ARGV[2])\n"
	"  redis.call('HSET', KEYS[2], KEYS[1], 'j' .. ARGV[3])\n"
	"end\n"
	"return 1\n";

const char *const rm_scripts[RM_NSCRIPTS] = {
	[RM_SCRIPT_GET] = get_script,
	[RM_SCRIPT_APPLY] = apply_script,
	[RM_SCRIPT_CAS] = cas_script,
};
