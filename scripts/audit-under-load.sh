#!/usr/bin/env bash
# Execution failures caused by the audit under load, before and after migration 10
# (issue 8, finding 3). One throwaway cluster; the same pgbench workload (6 clients
# executing orders) runs twice while the console's audit loops: first on the schema as it
# was (undone to version 9: audit_horizon() + ledger_audit_checkpoint(ids…)), then on the
# current one (ledger_audit_checkpoint(full)), and once more with the real CLI's `audit`.
# Usage: scripts/audit-under-load.sh [seconds per run, default 20]
set -euo pipefail
secs=${1:-20}
bin=${BIN:-target/debug/incident-console}
pgbin=$(dirname "$(readlink -f "$(command -v pg_ctl || echo /usr/lib/postgresql/15/bin/pg_ctl)")")
pgbench=$pgbin/pgbench; [ -x "$pgbench" ] || pgbench=/usr/lib/postgresql/15/bin/pgbench
dir=$(mktemp -d /tmp/ic-audit-load.XXXXXX); chmod 755 "$dir"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
trap 'as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
as_pg "$pgbin/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/log" -o "-k $dir -c listen_addresses='' -c max_connections=50" -w start >/dev/null
export PGHOST=$dir PGUSER=postgres PGDATABASE=postgres
url="postgres://postgres@localhost/postgres?host=$dir"
"$bin" migrate --database-url "$url" >/dev/null
psql -qAt -c "SELECT count(*) FROM generate_series(1, 30) g, create_trading_account(md5(g::text)::uuid, 1e9) r WHERE (r->>'success')::boolean" >/dev/null
printf '\\set u random(1, 30)\nSELECT execute_order_atomic(md5(:u::text)::uuid, '"'EURUSD'"', '"'market'"', '"'buy'"', 1000, 1.1, gen_random_uuid()::text);\n' >"$dir/execute.sql"

run() { # $1: label; rest: the audit command, looped while pgbench runs
    local label=$1; shift
    "$pgbench" -n -c 6 -j 2 -T "$secs" --failures-detailed -f "$dir/execute.sql" >"$dir/bench.out" 2>&1 &
    local pid=$! audits=0 audit_failures=0
    while kill -0 $pid 2>/dev/null; do
        if "$@" >/dev/null 2>>"$dir/audit.err"; then audits=$((audits + 1)); else audit_failures=$((audit_failures + 1)); fi
    done
    wait $pid || true
    local processed failed deadlocks
    processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$dir/bench.out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$dir/bench.out"); failed=${failed:-0}
    deadlocks=$(sed -n 's/^number of deadlock failures: \([0-9]*\).*/\1/p' "$dir/bench.out"); deadlocks=${deadlocks:-0}
    local total=$((processed + failed))
    printf '%-34s executions %6d, failed %4d (deadlocks %d) = %s%%; audits %d (%d failed)\n' "$label" "$total" "$failed" \
        "$deadlocks" "$(awk -v f="$failed" -v t="$total" 'BEGIN { printf "%.2f", t ? 100 * f / t : 0 }')" "$audits" "$audit_failures"
}

"$bin" migrate --database-url "$url" --undo-to 9 >/dev/null
psql -qAt -c "SELECT ledger_audit_checkpoint(h.ledger_max, h.audit_max, h.changes_max, true) FROM audit_horizon() h" >/dev/null
run "before (migration 9, horizon locks)" psql -qAt -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM ledger_audit()" \
    -c "SELECT ledger_audit_checkpoint(h.ledger_max, h.audit_max, h.changes_max, false) FROM audit_horizon() h"
"$bin" migrate --database-url "$url" >/dev/null
psql -qAt -c "SELECT ledger_audit_checkpoint(true)" >/dev/null
run "after (latest schema, snapshots)" psql -qAt -v ON_ERROR_STOP=1 -c "SELECT count(*) FROM ledger_audit()" \
    -c "SELECT ledger_audit_checkpoint(false)"
run "after, the CLI's audit" "$bin" audit --database-url "$url"
