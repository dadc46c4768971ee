-- Back to names as claimed. Nothing recorded is lost: the login of whoever switched
-- maintenance mode on is folded into maintenance_by, and the copied journal lines stay
-- (a column the older functions leave empty). The names registered for logins are
-- configuration only the owner can recreate: the undo refuses while there are any.
SET LOCAL ROLE incident_owner;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM operator_names) THEN
        RAISE EXCEPTION 'operator_names holds % registered name(s); the undo would lose them',
            (SELECT count(*) FROM operator_names)
            USING ERRCODE = 'object_in_use',
                  HINT = 'keep a copy of the table and empty it, then undo again';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION _operator()
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT left(coalesce(nullif(btrim(current_setting('incident.operator', true)), ''), session_user::text), 200)
$$;

CREATE OR REPLACE FUNCTION set_maintenance_mode(p_enabled boolean, p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_was boolean;
    v_now system_settings;
BEGIN
    IF p_enabled IS NULL THEN
        RETURN _refusal('invalid_argument', 'say whether maintenance mode is to be on or off');
    END IF;
    IF p_reason IS NULL OR p_reason !~ '[^[:space:]]' OR length(p_reason) > 1000 THEN
        RETURN _refusal('invalid_reason', 'a reason of 1 to 1000 characters is required');
    END IF;

    PERFORM pg_advisory_xact_lock(4242001);
    SELECT maintenance_mode INTO v_was FROM system_settings FOR UPDATE;

    UPDATE system_settings SET
        maintenance_mode = p_enabled,
        maintenance_reason = CASE WHEN p_enabled THEN p_reason END,
        maintenance_since = CASE WHEN p_enabled THEN coalesce(CASE WHEN v_was THEN maintenance_since END, now()) END,
        maintenance_by = CASE WHEN p_enabled THEN _operator() END
    RETURNING * INTO v_now;

    INSERT INTO maintenance_log (enabled, reason, operator) VALUES (p_enabled, p_reason, _operator());
    PERFORM pg_notify('maintenance_mode', CASE WHEN p_enabled THEN 'on' ELSE 'off' END);

    RETURN jsonb_build_object('success', true, 'enabled', p_enabled, 'changed', v_was <> p_enabled,
                              'since', v_now.maintenance_since, 'reason', v_now.maintenance_reason,
                              'operator', _operator());
END
$$;

CREATE OR REPLACE FUNCTION record_rollback_failure(p_order_id uuid, p_user_id uuid, p_action text, p_detail jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_drill boolean;
BEGIN
    IF p_order_id IS NULL OR p_user_id IS NULL OR p_action IS NULL
       OR p_action NOT IN ('rollback_failed', 'postcheck_failed') THEN
        RETURN _refusal('invalid_argument', 'order id, user id and an action of rollback_failed or postcheck_failed are required');
    END IF;
    IF octet_length(coalesce(p_detail, '{}'::jsonb)::text) > 100000 THEN
        RETURN _refusal('invalid_argument', 'the detail is larger than 100 kB');
    END IF;
    SELECT is_drill INTO v_drill FROM profiles WHERE id = p_user_id;

    INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, batch_id, operator, is_drill, details)
    VALUES (p_order_id, p_user_id, p_action, gen_random_uuid(), _batch_id(), _operator(),
            coalesce(v_drill, false), coalesce(p_detail, '{}'::jsonb));
    RETURN jsonb_build_object('success', true);
END
$$;

CREATE OR REPLACE FUNCTION record_incident_events(p_incident_id text, p_entries jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_inserted integer;
    v_conflicts jsonb;
BEGIN
    IF p_incident_id IS NULL OR p_entries IS NULL OR jsonb_typeof(p_entries) <> 'array' THEN
        RETURN _refusal('invalid_argument', 'an incident id and an array of entries are required');
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('incident_events'), hashtext(p_incident_id));

    -- A new snapshot after the lock: what a concurrent copy committed is visible here.
    WITH input AS (
        SELECT (e ->> 'seq')::bigint AS seq, e ->> 'prev' AS prev, e ->> 'hash' AS hash
        FROM jsonb_array_elements(p_entries) AS e
    ), known AS (
        SELECT seq, hash FROM input
        UNION ALL
        SELECT x.seq, x.hash FROM incident_events x
        WHERE x.incident_id = p_incident_id AND x.seq IN (SELECT seq FROM input UNION SELECT seq - 1 FROM input)
    ), settled AS (
        -- The version of each entry that counts: the stored one, else the one sent.
        SELECT DISTINCT ON (seq) seq, hash FROM (
            SELECT x.seq, x.hash, 0 AS rank FROM incident_events x
            WHERE x.incident_id = p_incident_id AND x.seq IN (SELECT seq - 1 FROM input)
            UNION ALL
            SELECT seq, hash, 1 FROM input
        ) v ORDER BY seq, rank
    ), bad AS (
        -- two versions of one entry
        SELECT seq FROM known GROUP BY seq HAVING count(DISTINCT hash) > 1
        UNION
        -- an entry that does not follow the one before it
        SELECT i.seq FROM input i
        WHERE (i.seq = 1 AND i.prev <> repeat('0', 64))
           OR (i.seq > 1 AND EXISTS (SELECT 1 FROM settled k WHERE k.seq = i.seq - 1 AND k.hash <> i.prev))
    )
    SELECT jsonb_agg(seq ORDER BY seq) FROM bad INTO v_conflicts;
    IF v_conflicts IS NOT NULL THEN
        RETURN jsonb_build_object('success', false, 'inserted', 0, 'conflicts', v_conflicts);
    END IF;

    WITH ins AS (
        INSERT INTO incident_events (incident_id, seq, at, operator, kind, data, prev, hash)
        SELECT p_incident_id, (e ->> 'seq')::bigint, (e ->> 'at')::timestamptz, e ->> 'operator',
               e ->> 'kind', e -> 'data', e ->> 'prev', e ->> 'hash'
        FROM jsonb_array_elements(p_entries) AS e
        ON CONFLICT (incident_id, seq) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM ins INTO v_inserted;
    RETURN jsonb_build_object('success', true, 'inserted', v_inserted, 'conflicts', '[]'::jsonb);
END
$$;

UPDATE system_settings
SET maintenance_by = maintenance_by || ' (login ' || maintenance_by_login || ')'
WHERE maintenance_by_login IS NOT NULL AND maintenance_by IS DISTINCT FROM maintenance_by_login
  AND position(' (via ' || maintenance_by_login || ')' IN maintenance_by) = 0;
ALTER TABLE system_settings DROP COLUMN maintenance_by_login;
ALTER TABLE incident_events DROP CONSTRAINT incident_events_line_matches_hash;

DROP FUNCTION session_operator();
DROP FUNCTION _incident_entries(jsonb);
DROP FUNCTION _claimed_operator();
DROP FUNCTION _printable_json(jsonb);
DROP FUNCTION _printable(text);
DROP TABLE operator_names;

RESET ROLE;
