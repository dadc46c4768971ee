-- A copy of each incident's journal, for people and tools that read the database. The
-- journal file stays the source of truth (it keeps working when the database does not);
-- entries are copied here when the database is reachable. Insert-only.
SET LOCAL ROLE incident_owner;

CREATE TABLE incident_events (
    incident_id text NOT NULL CHECK (incident_id ~ '^[A-Za-z0-9-]{1,64}$'),
    seq         bigint NOT NULL CHECK (seq >= 1),
    at          timestamptz NOT NULL,
    operator    text NOT NULL,
    kind        text NOT NULL CHECK (kind ~ '^[a-z0-9_]{1,64}$'),
    data        jsonb NOT NULL,
    prev        text NOT NULL CHECK (prev ~ '^[0-9a-f]{64}$'),
    hash        text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
    copied_by   text NOT NULL DEFAULT session_user,
    copied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (incident_id, seq)
);

CREATE TRIGGER incident_events_append_only
    BEFORE UPDATE OR DELETE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER incident_events_no_truncate
    BEFORE TRUNCATE ON incident_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Copies journal entries. An entry already there with the same hash is skipped. Nothing is
-- copied, and the offending entries are reported, when two versions of one entry meet (in
-- the call, or against the stored copy) or an entry does not chain onto the one before it:
-- two journals of one incident disagree. Calls for one incident are serialized, so two
-- consoles copying at once see each other's entries.
CREATE FUNCTION record_incident_events(p_incident_id text, p_entries jsonb)
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

CREATE FUNCTION incident_events_max_seq(p_incident_id text)
RETURNS bigint LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT coalesce(max(seq), 0) FROM incident_events WHERE incident_id = p_incident_id
$$;

REVOKE ALL ON incident_events FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION record_incident_events(text, jsonb), incident_events_max_seq(text) FROM PUBLIC;
GRANT SELECT ON incident_events TO incident_viewer;
GRANT EXECUTE ON FUNCTION incident_events_max_seq(text) TO incident_viewer;
GRANT EXECUTE ON FUNCTION record_incident_events(text, jsonb) TO incident_operator;

RESET ROLE;
