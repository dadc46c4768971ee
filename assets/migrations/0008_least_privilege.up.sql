-- Least privilege, and a search path nobody can plant code in.
--
-- 1. public belongs to incident_owner. On PostgreSQL 15 public is owned by
--    pg_database_owner, so the database's owner could create objects there, and a
--    SECURITY DEFINER function whose search_path names public would run a planted overload
--    as incident_owner (public.format(text, numeric, numeric) is a better match than
--    pg_catalog.format(text, VARIADIC "any"), whatever the order of the path). From here on
--    only incident_owner creates objects in public; every other role, the database owner
--    included, loses CREATE there. (Functions are never looked up in pg_temp, which stays
--    last for tables.)
-- 2. Trading belongs to the engine: incident_engine executes orders and opens accounts; the
--    operator checks, undoes, proves, audits and switches maintenance mode. The operator
--    proves maintenance mode with probe_new_orders(), which runs the real execution path
--    and undoes whatever it did.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'incident_engine') THEN
        CREATE ROLE incident_engine NOLOGIN;
    END IF;
END
$$;

ALTER SCHEMA public OWNER TO incident_owner;

SET LOCAL ROLE incident_owner;

-- Whoever may still create in public (PUBLIC, an application role granted CREATE) may not.
DO $$
DECLARE
    v_grantee oid;
BEGIN
    FOR v_grantee IN
        SELECT DISTINCT a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a
        WHERE n.nspname = 'public' AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner
    LOOP
        IF v_grantee = 0 THEN
            REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        ELSE
            EXECUTE format('REVOKE CREATE ON SCHEMA public FROM %I', pg_get_userbyid(v_grantee));
        END IF;
    END LOOP;
END
$$;
GRANT USAGE ON SCHEMA public TO incident_engine;

REVOKE EXECUTE ON FUNCTION
    create_trading_account(uuid, numeric),
    execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid)
    FROM incident_operator;
GRANT EXECUTE ON FUNCTION
    create_trading_account(uuid, numeric),
    execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid)
    TO incident_engine;

-- Proves maintenance mode to an operator, who may not trade: calls execute_order_atomic as
-- the engine would (for an account that does not exist, with a fresh key) and undoes
-- whatever it did by leaving the block with an error of its own. Answers the refusal the
-- execution gave: maintenance_mode while new orders are refused, else why this one was not
-- taken (account_not_found). Errors of the execution itself (a serialization failure) are
-- raised to the caller, never swallowed.
CREATE FUNCTION probe_new_orders()
RETURNS jsonb LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_answer jsonb;
BEGIN
    BEGIN
        v_answer := execute_order_atomic(gen_random_uuid(), 'EURUSD', 'market', 'buy', 1, 1,
                                         'maintenance-probe-' || gen_random_uuid()::text, NULL);
        RAISE EXCEPTION USING ERRCODE = 'IC001', MESSAGE = 'maintenance probe undone';
    EXCEPTION WHEN SQLSTATE 'IC001' THEN
        NULL;
    END;
    RETURN jsonb_build_object(
        'executed', coalesce((v_answer ->> 'success')::boolean, false),
        'error_code', v_answer ->> 'error_code',
        'isolation', current_setting('transaction_isolation'));
END
$$;
REVOKE EXECUTE ON FUNCTION probe_new_orders() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION probe_new_orders() TO incident_operator;

RESET ROLE;
