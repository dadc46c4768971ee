-- Back to 0021: _audit_figures as 0005 defined it.
SET LOCAL ROLE incident_owner;

CREATE OR REPLACE FUNCTION _audit_figures(p_user_ids uuid[], p_ledger_max bigint, p_audit_max bigint)
RETURNS SETOF audit_figures
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    RETURN QUERY
    WITH l AS (
        SELECT t.user_id,
               sum(CASE WHEN t.credit_account = 'user_cash' THEN t.amount
                        WHEN t.debit_account = 'user_cash' THEN -t.amount ELSE 0 END) AS cash,
               sum(CASE WHEN t.credit_account = 'user_margin' THEN t.amount
                        WHEN t.debit_account = 'user_margin' THEN -t.amount ELSE 0 END) AS margin,
               sum(CASE WHEN t.credit_account IN ('house_clearing', 'house_commission') THEN t.amount
                        WHEN t.debit_account IN ('house_clearing', 'house_commission') THEN -t.amount
                        ELSE 0 END) AS house,
               sum(t.amount) FILTER (WHERE t.kind IN ('margin_lock', 'commission')) AS taken,
               sum(t.amount) FILTER (WHERE t.kind = 'reversal') AS given_back
        FROM ledger_transfers t
        WHERE (p_user_ids IS NULL OR t.user_id = ANY (p_user_ids))
          AND (p_ledger_max IS NULL OR t.id <= p_ledger_max)
        GROUP BY t.user_id
    ), o AS (
        SELECT o.user_id,
               sum(o.total_cost) FILTER (WHERE o.status IN ('executed', 'rolled_back')) AS cost_executed,
               sum(o.total_cost) FILTER (WHERE o.status = 'rolled_back') AS cost_rolled_back,
               count(*) FILTER (WHERE o.status = 'executed') AS n_executed,
               count(*) FILTER (WHERE o.status = 'rolled_back') AS n_rolled_back
        FROM orders o
        WHERE p_user_ids IS NULL OR o.user_id = ANY (p_user_ids)
        GROUP BY o.user_id
    ), p AS (
        SELECT p.user_id,
               sum(p.margin_used) FILTER (WHERE p.status = 'open') AS open_margin,
               count(*) FILTER (WHERE p.status <> 'rolled_back') AS n_live,
               count(*) FILTER (WHERE p.status = 'rolled_back') AS n_rolled_back
        FROM positions p
        WHERE p_user_ids IS NULL OR p.user_id = ANY (p_user_ids)
        GROUP BY p.user_id
    ), a AS (
        SELECT a.user_id, count(*) AS n_rollback_rows
        FROM order_audit_log a
        WHERE a.action = 'order_rolled_back'
          AND (p_audit_max IS NULL OR a.id <= p_audit_max)
          -- per user through the orders, so the audit log needs no index on user_id
          AND (p_user_ids IS NULL
               OR a.order_id IN (SELECT o.id FROM orders o
                                 WHERE o.user_id = ANY (p_user_ids) AND o.status = 'rolled_back'))
        GROUP BY a.user_id
    )
    SELECT coalesce(l.user_id, o.user_id, p.user_id, a.user_id),
           coalesce(l.cash, 0), coalesce(l.margin, 0), coalesce(l.house, 0),
           coalesce(l.taken, 0), coalesce(l.given_back, 0),
           coalesce(o.cost_executed, 0), coalesce(o.cost_rolled_back, 0),
           coalesce(o.n_executed, 0), coalesce(o.n_rolled_back, 0),
           coalesce(p.open_margin, 0), coalesce(p.n_live, 0), coalesce(p.n_rolled_back, 0),
           coalesce(a.n_rollback_rows, 0)
    FROM l
    FULL JOIN o ON o.user_id = l.user_id
    FULL JOIN p ON p.user_id = coalesce(l.user_id, o.user_id)
    FULL JOIN a ON a.user_id = coalesce(l.user_id, o.user_id, p.user_id);
END
$$;

RESET ROLE;
