-- The second adversarial pass (issue 8).
--
--   * A login in no group could queue an ACCESS EXCLUSIVE lock on the book's tables
--     (CREATE RULE and CREATE TABLE … PARTITION OF lock before they check ownership)
--     behind any open reader, and every execution and the maintenance switch queued
--     behind it. Without USAGE on public such a login cannot even name the tables: USAGE
--     is the four groups' only. (A member of a group still can; see docs/SECURITY.md.)
--   * A journal entry that chains onto nothing (seq 1000000 of a live incident) was
--     copied, and every real copy then looked truncated: refused now.
--   * An incident's copy belongs to the login that copied its first entry; another login
--     cannot append (its entries would make the commander's next ones conflict).
--   * A journal copy's operator name is vouched for as _operator() vouches (the login, a
--     name registered for it, else "name (via login)"); the line keeps what was written.
--   * Reasons (rollback, maintenance), a journal copy's name and data, and claimed names
--     are stored as text a terminal cannot act on; _printable also replaces U+061C and
--     U+180E. A claimed name is cut at " (via ", so a recorded name names one login.
SET LOCAL ROLE incident_owner;

REVOKE USAGE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO incident_viewer, incident_operator, incident_engine;

CREATE OR REPLACE FUNCTION _printable(p_text text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(p_text,
        '[\u0001-\u001f\u007f-\u009f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]', U&'\FFFD', 'g')
$$;

CREATE OR REPLACE FUNCTION _claimed_operator()
RETURNS text LANGUAGE sql STABLE AS $$
    -- 0014: cut at ' (via ': the recorded name names exactly one login, the real one.
    SELECT nullif(btrim(split_part(_printable(left(current_setting('incident.operator', true), 200)),
                                   ' (via ', 1)), '')
$$;

CREATE OR REPLACE FUNCTION _rollback_locked_orders(
    p_user_id uuid, p_order_ids uuid[], p_reason text, p_mode text,
    p_transaction_id uuid, p_started timestamptz, p_extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_n           integer := cardinality(p_order_ids);
    v_rollback_id uuid := gen_random_uuid();
    v_cash        numeric;
    v_margin      numeric;
    v_transfers   integer;
    v_profiles    integer;
    v_positions   integer;
    v_orders      integer;
    v_duration    bigint;
    v_now         timestamptz := clock_timestamp();
BEGIN
    -- 0014: the reason is stored as text a terminal cannot act on (it is shown by psql,
    -- reports and BI tools, which do not sanitize).
    p_reason := _printable(p_reason);
    -- 0013: the change-log triggers record what this statement does to orders and
    -- positions; it writes no book_changes row of its own (called from a trigger, that row
    -- was kept beside theirs and counted twice).
    WITH reversed AS (
        INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id)
        SELECT t.user_id, t.credit_account, t.debit_account, t.amount, 'reversal', t.order_id, t.id
        FROM ledger_transfers t
        WHERE t.order_id = ANY (p_order_ids) AND t.reverses_id IS NULL AND t.user_id = p_user_id
        RETURNING debit_account, credit_account, amount
    ), sums AS (
        SELECT coalesce(sum(CASE WHEN credit_account = 'user_cash' THEN amount
                                 WHEN debit_account = 'user_cash' THEN -amount END), 0) AS cash,
               coalesce(sum(CASE WHEN credit_account = 'user_margin' THEN amount
                                 WHEN debit_account = 'user_margin' THEN -amount END), 0) AS margin,
               count(*) AS n
        FROM reversed
    ), profile AS (
        UPDATE profiles p SET balance = p.balance + s.cash, margin_used = p.margin_used + s.margin
        FROM sums s WHERE p.id = p_user_id
        RETURNING p.is_drill
    ), closed AS (
        UPDATE positions SET status = 'rolled_back', closed_at = greatest(v_now, opened_at)
        WHERE order_id = ANY (p_order_ids) AND user_id = p_user_id AND status = 'open'
        RETURNING margin_used
    ), marked AS (
        -- failure_reason is left as it was: it is forensic evidence.
        UPDATE orders
        SET status = 'rolled_back', rolled_back_at = greatest(v_now, executed_at), rolled_back_reason = p_reason,
            updated_at = v_now
        WHERE id = ANY (p_order_ids) AND user_id = p_user_id AND status = 'executed'
        RETURNING id, executed_at, commission, total_cost
    ), daily AS (
        INSERT INTO daily_pnl_tracking AS d (user_id, trading_date, orders_rolled_back, commission_refunded)
        SELECT p_user_id, (m.executed_at AT TIME ZONE 'UTC')::date, count(*), sum(m.commission)
        FROM marked m GROUP BY 2
        ON CONFLICT (user_id, trading_date) DO UPDATE
        SET orders_rolled_back = d.orders_rolled_back + excluded.orders_rolled_back,
            commission_refunded = d.commission_refunded + excluded.commission_refunded
    ), audit AS (
        INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, batch_id, mode,
                                     transaction_id, operator, duration_us, is_drill, details)
        SELECT m.id, p_user_id, 'order_rolled_back', v_rollback_id, _batch_id(), p_mode, p_transaction_id,
               _operator(), (extract(epoch FROM clock_timestamp() - p_started) * 1000000)::bigint,
               coalesce((SELECT bool_or(is_drill) FROM profile), false),
               -- The rest of the story is on the order row, which is never deleted.
               jsonb_build_object('reason', p_reason, 'refunded', _money(m.total_cost))
        FROM marked m
        RETURNING duration_us
    )
    SELECT s.cash, s.margin, s.n, (SELECT count(*) FROM profile), (SELECT count(*) FROM closed),
           (SELECT count(*) FROM marked), (SELECT max(duration_us) FROM audit)
    INTO v_cash, v_margin, v_transfers, v_profiles, v_positions, v_orders, v_duration
    FROM sums s;

    -- The caller checked every one of these under its locks; a difference means a row
    -- changed under us (a position closed at the same moment): retry the whole call.
    IF v_profiles <> 1 OR v_positions <> v_n OR v_orders <> v_n THEN
        RAISE EXCEPTION 'rollback of % order(s) touched % profile(s), % position(s), % order(s)',
            v_n, v_profiles, v_positions, v_orders
            USING ERRCODE = 'serialization_failure';
    END IF;

    RETURN jsonb_build_object(
        'success', true,
        'status', 'rolled_back',
        'mode', p_mode,
        'rollback_id', v_rollback_id,
        'user_id', p_user_id,
        'transaction_id', p_transaction_id,
        'order_ids', to_jsonb(p_order_ids),
        'refunded', _money(v_cash),
        'margin_released', _money(-v_margin),
        'transfers_reversed', v_transfers,
        'duration_us', v_duration) || p_extra;
END
$$;

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

    -- Waits for the executions in flight (they hold ROW SHARE) and keeps new ones out
    -- until this commits. A table lock: only the owner may take one that conflicts.
    -- 0014: stored as text a terminal cannot act on.
    p_reason := _printable(p_reason);
    LOCK TABLE system_settings IN EXCLUSIVE MODE;
    SELECT maintenance_mode INTO v_was FROM system_settings FOR UPDATE;

    UPDATE system_settings SET
        maintenance_mode = p_enabled,
        maintenance_reason = CASE WHEN p_enabled THEN p_reason END,
        maintenance_since = CASE WHEN p_enabled THEN coalesce(CASE WHEN v_was THEN maintenance_since END, clock_timestamp()) END,
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

CREATE OR REPLACE FUNCTION record_incident_events(p_incident_id text, p_entries jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_inserted  integer;
    v_conflicts jsonb;
    v_invalid   jsonb;
    v_checked   bigint;
    v_owner     text;
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

    -- One copy at a time (copies are small and rare); a table lock, which only the owner
    -- may take in a mode that conflicts, where an advisory lock could be held by anyone.
    LOCK TABLE incident_events IN SHARE ROW EXCLUSIVE MODE;

    -- 0014: an incident's copy belongs to the login that copied its first entry: another
    -- login that appends a well-chained entry of its own would make the commander's next
    -- entry conflict, and the commander's journal look edited.
    SELECT x.copied_by INTO v_owner FROM incident_events x WHERE x.incident_id = p_incident_id AND x.seq = 1;
    IF v_owner IS NOT NULL AND v_owner <> session_user::text THEN
        RETURN _refusal('incident_of_another_login',
            'this incident''s copy belongs to the login that copied its first entry; only it adds to it',
            jsonb_build_object('inserted', 0, 'conflicts', '[]'::jsonb, 'copied_by', _printable(v_owner)));
    END IF;

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
           -- 0014: or onto nothing: an entry whose predecessor is neither stored nor sent
           -- (seq 1000000 of a live incident would make every real copy look truncated)
           OR (i.seq > 1 AND NOT EXISTS (SELECT 1 FROM settled k WHERE k.seq = i.seq - 1))
    )
    SELECT jsonb_agg(seq ORDER BY seq) FROM bad INTO v_conflicts;
    IF v_conflicts IS NOT NULL THEN
        RETURN jsonb_build_object('success', false, 'inserted', 0, 'conflicts', v_conflicts);
    END IF;

    WITH ins AS (
        INSERT INTO incident_events (incident_id, seq, at, operator, kind, data, prev, hash, line)
        -- 0014: the name and the data as text a terminal cannot act on; the line, which
        -- the hash covers, keeps them exactly (JSON-escaped).
        -- The name is vouched for as _operator() vouches: as is when it is the login or a
        -- name registered for it, else "name (via login)".
        SELECT p_incident_id, e.seq, e.at,
               CASE WHEN e.operator = session_user::text
                         OR EXISTS (SELECT 1 FROM operator_names n
                                    WHERE n.login = session_user::text AND n.operator = e.operator)
                    THEN _printable(e.operator)
                    ELSE left(btrim(split_part(_printable(e.operator), ' (via ', 1)),
                              greatest(200 - length(session_user::text) - 7, 1))
                         || ' (via ' || session_user::text || ')'
               END,
               e.kind, _printable_json(e.data), e.prev, e.hash, e.line
        FROM _incident_entries(p_entries) e
        ORDER BY e.ord
        ON CONFLICT (incident_id, seq) DO NOTHING
        RETURNING 1
    )
    SELECT count(*) FROM ins INTO v_inserted;
    RETURN jsonb_build_object('success', true, 'inserted', v_inserted, 'conflicts', '[]'::jsonb);
END
$$;

RESET ROLE;
