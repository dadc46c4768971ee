-- Who did it, and what a caller can write.
--
-- The operator's name is bound to the database login. A session claims a name by setting
-- incident.operator; the name recorded is
--   * the login itself, when nothing (or the login's own name) is claimed;
--   * the claimed name, when the owner registered it for that login in operator_names;
--   * "claimed (via login)" otherwise, so a name nobody vouched for is never recorded
--     bare and always says which login claimed it.
-- Nothing a session can SET changes session_user, so nothing it can SET forges either.
-- Where a table keeps only a name, the login is now kept beside it.
--
-- record_rollback_failure refuses orders and users that do not exist or do not belong
-- together and keeps no terminal control characters; record_incident_events checks every
-- entry's hash against its content (the exact line text, sent with it) before it copies.
SET LOCAL ROLE incident_owner;

-- The names each login may record as. Managed by the owner (the role that migrates):
--   INSERT INTO operator_names (login, operator) VALUES ('dana_db', 'Dana Whitfield');
-- A login with no rows here records its claims as "name (via login)".
CREATE TABLE operator_names (
    login    text NOT NULL CHECK (length(login) BETWEEN 1 AND 63),
    operator text NOT NULL CHECK (
        length(operator) BETWEEN 1 AND 200 AND operator = btrim(operator)
        AND operator !~ '[\u0001-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]'
        AND position(' (via ' IN operator) = 0),
    added_at timestamptz NOT NULL DEFAULT now(),
    added_by text NOT NULL DEFAULT session_user,
    PRIMARY KEY (login, operator)
);
REVOKE ALL ON operator_names FROM PUBLIC;
GRANT SELECT ON operator_names TO incident_viewer;

-- Text with the characters a terminal acts on (C0, DEL, C1) or that hide or reorder text
-- (zero-width, bidirectional controls) replaced by U+FFFD.
CREATE FUNCTION _printable(p_text text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(p_text,
        '[\u0001-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]', U&'\FFFD', 'g')
$$;

-- The same for every key and string of a JSON value, at any depth.
CREATE FUNCTION _printable_json(p jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN CASE jsonb_typeof(p)
        WHEN 'string' THEN to_jsonb(_printable(p #>> '{}'))
        WHEN 'array' THEN (
            SELECT coalesce(jsonb_agg(_printable_json(e.v) ORDER BY e.i), '[]'::jsonb)
            FROM jsonb_array_elements(p) WITH ORDINALITY AS e(v, i))
        WHEN 'object' THEN (
            SELECT coalesce(jsonb_object_agg(_printable(e.k), _printable_json(e.v)), '{}'::jsonb)
            FROM jsonb_each(p) AS e(k, v))
        ELSE p
    END;
END
$$;

-- The name the session claims (incident.operator), printable and trimmed; NULL for none.
CREATE FUNCTION _claimed_operator()
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT nullif(btrim(_printable(left(current_setting('incident.operator', true), 200))), '')
$$;

-- The name recorded on audit rows (see the top of this file). At most 200 characters: a
-- long claim is cut, never the login.
CREATE OR REPLACE FUNCTION _operator()
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN c.claim IS NULL OR c.claim = c.login THEN c.login
        WHEN EXISTS (SELECT 1 FROM operator_names n WHERE n.login = c.login AND n.operator = c.claim) THEN c.claim
        ELSE left(c.claim, greatest(200 - length(c.login) - 7, 1)) || ' (via ' || c.login || ')'
    END
    FROM (SELECT _claimed_operator() AS claim, session_user::text AS login) c
$$;

-- What this session's rows will say: the name it claimed (as the server received it), the
-- name recorded, the login, and the names the owner registered for the login. Clients
-- call it after connecting to check that their name arrived and is what will be recorded.
CREATE FUNCTION session_operator()
RETURNS jsonb LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT jsonb_build_object(
        'claimed', current_setting('incident.operator', true),
        'operator', _operator(),
        'login', session_user::text,
        'registered_names', (
            SELECT coalesce(jsonb_agg(n.operator ORDER BY n.operator), '[]'::jsonb)
            FROM operator_names n WHERE n.login = session_user::text))
$$;

-- Who switched maintenance mode on: the name and, beside it, the login.
ALTER TABLE system_settings ADD COLUMN maintenance_by_login text;

CREATE OR REPLACE FUNCTION set_maintenance_mode(p_enabled boolean, p_reason text)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_was boolean;
    v_now system_settings;
    v_operator text := _operator();
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
        maintenance_by = CASE WHEN p_enabled THEN v_operator END,
        maintenance_by_login = CASE WHEN p_enabled THEN session_user::text END
    RETURNING * INTO v_now;

    INSERT INTO maintenance_log (enabled, reason, operator) VALUES (p_enabled, p_reason, v_operator);
    PERFORM pg_notify('maintenance_mode', CASE WHEN p_enabled THEN 'on' ELSE 'off' END);

    RETURN jsonb_build_object('success', true, 'enabled', p_enabled, 'changed', v_was <> p_enabled,
                              'since', v_now.maintenance_since, 'reason', v_now.maintenance_reason,
                              'operator', v_operator, 'login', session_user::text);
END
$$;

-- Record a rollback the client could not complete, or a post-check that failed: these
-- feed the failure count and the alerts of the metrics. The order must exist and belong
-- to the user (a post-check can only have failed on a rolled-back order), and the detail
-- is kept without terminal control characters.
CREATE OR REPLACE FUNCTION record_rollback_failure(p_order_id uuid, p_user_id uuid, p_action text, p_detail jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_status text;
    v_drill  boolean;
BEGIN
    IF p_order_id IS NULL OR p_user_id IS NULL OR p_action IS NULL
       OR p_action NOT IN ('rollback_failed', 'postcheck_failed') THEN
        RETURN _refusal('invalid_argument', 'order id, user id and an action of rollback_failed or postcheck_failed are required');
    END IF;
    IF p_detail IS NOT NULL AND jsonb_typeof(p_detail) <> 'object' THEN
        RETURN _refusal('invalid_argument', 'the detail must be a JSON object');
    END IF;
    IF octet_length(coalesce(p_detail, '{}'::jsonb)::text) > 100000 THEN
        RETURN _refusal('invalid_argument', 'the detail is larger than 100 kB');
    END IF;
    SELECT o.status, p.is_drill INTO v_status, v_drill
    FROM orders o JOIN profiles p ON p.id = o.user_id
    WHERE o.id = p_order_id AND o.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN _refusal('order_not_found', 'there is no such order of that user');
    END IF;
    IF p_action = 'postcheck_failed' AND v_status <> 'rolled_back' THEN
        RETURN _refusal('not_rolled_back', 'a post-check can only fail on an order that was rolled back');
    END IF;

    INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, batch_id, operator, is_drill, details)
    VALUES (p_order_id, p_user_id, p_action, gen_random_uuid(), _batch_id(), _operator(),
            v_drill, _printable_json(coalesce(p_detail, '{}'::jsonb)));
    RETURN jsonb_build_object('success', true);
END
$$;

-- The copy keeps each entry's line (the exact text its hash covers), so anyone can check
-- the copy without the journal file. NULL for entries copied before this migration.
ALTER TABLE incident_events ADD COLUMN IF NOT EXISTS line text;
ALTER TABLE incident_events ADD CONSTRAINT incident_events_line_matches_hash
    CHECK (line IS NULL OR encode(sha256(convert_to(line, 'UTF8')), 'hex') = hash);

-- The entries of a record_incident_events call, read from their lines: valid when the
-- line is the journal's hashed text ({"seq":…,"at":…,"operator":…,"kind":…,"data":…,
-- "prev":…}: exactly these members, in this order, each once; see core/journal) with
-- well-formed members, and its SHA-256 is the entry's hash. The values of an invalid
-- entry are NULL. A line that is not JSON at all raises a data exception.
CREATE FUNCTION _incident_entries(p_entries jsonb)
RETURNS TABLE (ord bigint, seq bigint, at timestamptz, operator text, kind text, data jsonb,
               prev text, hash text, line text, valid boolean)
LANGUAGE sql STABLE AS $$
    SELECT c.ord,
           CASE WHEN c.valid THEN (c.j ->> 'seq')::bigint END,
           CASE WHEN c.valid THEN (c.j ->> 'at')::timestamptz END,
           CASE WHEN c.valid THEN c.j ->> 'operator' END,
           CASE WHEN c.valid THEN c.j ->> 'kind' END,
           CASE WHEN c.valid THEN c.j -> 'data' END,
           CASE WHEN c.valid THEN c.j ->> 'prev' END,
           c.hash, c.line, c.valid
    FROM (
        SELECT p.ord, p.line, p.hash, p.j, coalesce(
            p.hash ~ '^[0-9a-f]{64}$'
            AND encode(sha256(convert_to(p.line, 'UTF8')), 'hex') = p.hash
            -- json, unlike jsonb, keeps the members' order and any duplicates
            AND (SELECT array_agg(k.name ORDER BY k.n)
                 FROM json_object_keys(p.line::json) WITH ORDINALITY AS k(name, n))
                = ARRAY['seq', 'at', 'operator', 'kind', 'data', 'prev']
            AND jsonb_typeof(p.j -> 'seq') = 'number' AND (p.j ->> 'seq') ~ '^[1-9][0-9]{0,17}$'
            AND jsonb_typeof(p.j -> 'at') = 'string'
            AND (p.j ->> 'at') ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$'
            AND jsonb_typeof(p.j -> 'operator') = 'string' AND length(p.j ->> 'operator') BETWEEN 1 AND 200
            AND jsonb_typeof(p.j -> 'kind') = 'string' AND (p.j ->> 'kind') ~ '^[a-z0-9_]{1,64}$'
            AND jsonb_typeof(p.j -> 'data') = 'object'
            AND jsonb_typeof(p.j -> 'prev') = 'string' AND (p.j ->> 'prev') ~ '^[0-9a-f]{64}$',
            false) AS valid
        FROM (
            SELECT e.ord, e.v ->> 'line' AS line, e.v ->> 'hash' AS hash, (e.v ->> 'line')::jsonb AS j
            FROM jsonb_array_elements(p_entries) WITH ORDINALITY AS e(v, ord)
        ) p
    ) c
$$;

-- Copies journal entries. Each entry is sent with its line (see _incident_entries) and
-- its hash; everything stored is read from the line. Nothing is copied, and the offending
-- entries are reported, when an entry is invalid (its line is not the journal's form or
-- does not hash to its hash), when two versions of one entry meet (in the call, or
-- against the stored copy), or when an entry does not chain onto the one before it: two
-- journals of one incident disagree. An entry already there with the same hash is
-- skipped. Calls for one incident are serialized, so two consoles copying at once see
-- each other's entries.
CREATE OR REPLACE FUNCTION record_incident_events(p_incident_id text, p_entries jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_inserted  integer;
    v_conflicts jsonb;
    v_invalid   jsonb;
    v_checked   bigint;
BEGIN
    IF p_incident_id IS NULL OR p_entries IS NULL OR jsonb_typeof(p_entries) <> 'array' THEN
        RETURN _refusal('invalid_argument', 'an incident id and an array of entries are required');
    END IF;
    IF p_incident_id !~ '^[A-Za-z0-9-]{1,64}$' THEN
        RETURN _refusal('invalid_argument', 'an incident id is 1 to 64 letters, digits and dashes');
    END IF;
    BEGIN
        -- count(at) makes every value be read, so a malformed one raises here.
        SELECT jsonb_agg(e.ord ORDER BY e.ord) FILTER (WHERE NOT e.valid), count(e.at)
        FROM _incident_entries(p_entries) e INTO v_invalid, v_checked;
    EXCEPTION WHEN data_exception THEN
        RETURN _refusal('invalid_entry', 'an entry''s line is not a journal line',
                        jsonb_build_object('inserted', 0, 'invalid', '[]'::jsonb, 'conflicts', '[]'::jsonb));
    END;
    IF v_invalid IS NOT NULL THEN
        RETURN _refusal('invalid_entry',
                        'entries whose line is not a journal line or does not hash to their hash',
                        jsonb_build_object('inserted', 0, 'invalid', v_invalid, 'conflicts', '[]'::jsonb));
    END IF;

    PERFORM pg_advisory_xact_lock(hashtext('incident_events'), hashtext(p_incident_id));

    -- A new snapshot after the lock: what a concurrent copy committed is visible here.
    WITH input AS (
        SELECT e.seq, e.prev, e.hash FROM _incident_entries(p_entries) e
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
        INSERT INTO incident_events (incident_id, seq, at, operator, kind, data, prev, hash, line)
        SELECT p_incident_id, e.seq, e.at, e.operator, e.kind, e.data, e.prev, e.hash, e.line
        FROM _incident_entries(p_entries) e
        ORDER BY e.ord
        ON CONFLICT (incident_id, seq) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM ins INTO v_inserted;
    RETURN jsonb_build_object('success', true, 'inserted', v_inserted, 'conflicts', '[]'::jsonb);
END
$$;

REVOKE EXECUTE ON FUNCTION _printable(text), _printable_json(jsonb), _claimed_operator(),
    _incident_entries(jsonb), session_operator() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION session_operator() TO incident_viewer;

RESET ROLE;
