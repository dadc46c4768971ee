-- Back to 0007's privileges: the operator trades again, public belongs to
-- pg_database_owner again (as PostgreSQL 15 creates it) with CREATE for incident_owner.
SET LOCAL ROLE incident_owner;
DROP FUNCTION IF EXISTS probe_new_orders();
REVOKE EXECUTE ON FUNCTION
    create_trading_account(uuid, numeric),
    execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid)
    FROM incident_engine;
GRANT EXECUTE ON FUNCTION
    create_trading_account(uuid, numeric),
    execute_order_atomic(uuid, text, text, text, numeric, numeric, text, uuid)
    TO incident_operator;
REVOKE USAGE ON SCHEMA public FROM incident_engine;
RESET ROLE;

ALTER SCHEMA public OWNER TO pg_database_owner;
GRANT USAGE, CREATE ON SCHEMA public TO incident_owner;

-- The role is shared by every database of the cluster: dropped only when nothing uses it.
DO $$
BEGIN
    BEGIN
        DROP ROLE IF EXISTS incident_engine;
    EXCEPTION WHEN dependent_objects_still_exist THEN
        RAISE NOTICE 'incident_engine is still used by another database; kept';
    END;
END
$$;
