#!/usr/bin/env bash
# json_config.sh — keep an application's JSON config in memfluxfs, from the shell.
#
#   usage: examples/json_config.sh MOUNTPOINT
#
# Shows the three ways to change a document under MOUNT/json/:
#   1. whole document: `cp file.json MOUNT/json/KEY` (checked when the file is closed);
#   2. read-modify-write with jq: jq into a temp file, then cp (or `cat tmp > KEY`);
#   3. partial update of one field through the path view:
#        echo 9000 > 'MOUNT/.ctl/json/KEY/$.server.port'
#        cat 'MOUNT/.ctl/json/KEY/$.server.port'
# and that an invalid document is refused (cp fails with "Invalid argument")
# while the stored config stays as it was.
#
# Needs: jq.
set -euo pipefail

M=${1:?usage: $0 MOUNTPOINT}
[ -d "$M/json" ] || { echo "$M does not look like a memfluxfs mount" >&2; exit 2; }

CFG="$M/json/app-config"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# 1. Write a whole document.  Reading it back gives exactly the bytes written.
cat > "$TMP/config.json" <<'EOF'
{
  "service": "billing",
  "server": {"host": "0.0.0.0", "port": 8080},
  "features": ["invoices"],
  "debug": false
}
EOF
cp "$TMP/config.json" "$CFG"
cmp "$TMP/config.json" "$CFG"
echo "stored $(stat -c %s "$CFG") bytes in $CFG"

# Read fields with jq (cat | jq, or jq FILE directly).
echo "service: $(cat "$CFG" | jq -r .service)"
echo "port:    $(jq -r .server.port "$CFG")"

# 2. Read-modify-write with jq.  Never `jq ... "$CFG" > "$CFG"`: the shell
#    truncates the file before jq reads it.  Write to a temp file, then copy.
jq '.features += ["metrics"] | .debug = true' "$CFG" > "$TMP/new.json"
cp "$TMP/new.json" "$CFG"
# `>` works too (bash does not report close errors of redirections, so only
# redirect output that is known to be valid, like jq's).
jq '.server.host = "127.0.0.1"' "$CFG" > "$TMP/new2.json"
cat "$TMP/new2.json" > "$CFG"
echo "features: $(jq -c .features "$CFG")"
echo "host:     $(jq -r .server.host "$CFG")"

# 3. Partial update through the path view: MOUNT/.ctl/json/KEY/<JSON path> is
#    one member of the document; reading gives its JSON text, writing sets it
#    when the file is closed.  Only that member's bytes change in the document.
V="$M/.ctl/json/app-config"
echo 9000 > "$V/\$.server.port"
echo "port:     $(cat "$V/\$.server.port")"
echo '"ops"' > "$V/\$.owner"                      # adds a new member
echo "owner:    $(cat "$V/\$.owner")"
echo '"invoicing"' > "$V/\$.features[0]"
echo "features: $(jq -c . "$V/\$.features")"

# An invalid document is refused at close and the stored one is untouched.
before=$(cat "$CFG")
printf '{"service": "billing",}\n' > "$TMP/bad.json"     # trailing comma
if cp "$TMP/bad.json" "$CFG" 2>/dev/null; then
    echo "unexpected: invalid JSON was accepted" >&2
    exit 1
fi
[ "$(cat "$CFG")" = "$before" ] || { echo "config changed by a refused write" >&2; exit 1; }
echo "invalid document refused; config unchanged"

# An invalid value for a path is refused the same way (here: a bare word).
# (cp, unlike a bash redirection, reports the failed close.)
echo yes > "$TMP/yes.txt"
if cp "$TMP/yes.txt" "$V/\$.debug" 2>/dev/null; then
    echo "unexpected: invalid value was accepted" >&2
    exit 1
fi
echo "invalid value refused; debug is still $(jq .debug "$CFG")"

echo "final config:"
jq -c . "$CFG"
