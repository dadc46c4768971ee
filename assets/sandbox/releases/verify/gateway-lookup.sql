-- The lookup answers, and a repeated idempotency key executes once.
SELECT order_by_idempotency_key(gen_random_uuid(), 'verify');
DO $$
BEGIN
    IF (release_probe_idempotency() ->> 'executions')::int IS DISTINCT FROM 1 THEN
        RAISE EXCEPTION 'a repeated idempotency key executed more than once';
    END IF;
END
$$;
