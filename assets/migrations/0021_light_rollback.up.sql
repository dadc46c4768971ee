-- A lighter rollback on the server (issue 13). Same guarantees, less work per rollback:
--
--   * HOT updates. A rollback changes orders.status and positions.status; each had an index
--     (orders (user_id, status), positions (status)), so every rollback wrote a new entry
--     into every index of both tables (6 + 4). Without an index on a column a rollback
--     changes, its updates are heap-only when the page has room. The user's orders are
--     found through uq_orders_user_idempotency_key (user_id, idempotency_key), whose prefix
--     is the user; positions by status were never looked up without their user (and
--     (user_id, symbol) serves those). Both tables keep room on every page for the one
--     update each row gets in its life (fillfactor 85, was 90): see below on old pages.
--   * Fewer index entries on inserts: order_audit_log is append-only and written in time
--     order, so its created_at index (read only by time ranges: the metrics, the dashboard)
--     is a BRIN summary, which adds no entry per row.
--   * No foreign-key checks on the ledger. ledger_transfers checked three per row (user,
--     order, reversed transfer): six queries and row locks per rollback, which also dirtied
--     the original transfers' pages. What they guaranteed holds without them:
--       - only the owner may INSERT into the ledger (no role is granted it; the owner cannot
--         log in) and its rows are never updated, deleted or truncated (triggers, even for
--         the superuser): every row comes from a definer function, or from the demo and
--         benchmark seeding (store::db::seed, the migrating login), which writes each
--         transfer in the statement that inserts its order (whose foreign key to the
--         profile stays);
--       - those functions take the ids from rows they hold: create_trading_account the
--         profile it inserts, execute_order_atomic the profile it locked and the order it
--         inserted, the rollback the original transfer it reverses (user, order and id
--         copied from it, under the order's lock);
--       - orders and ledger rows are never deleted (triggers), and now neither are profiles
--         (the user's foreign key was what stopped a profile with money from going);
--       - the ledger audit flags a reversal whose original is missing or differs
--         (_bad_reversals), and money of a user without a profile breaks the book's net.
--     tests/integration/light_rollback.rs proves the references on a book after rollbacks
--     of every kind, and that no role but the owner can write the ledger.
--   * _operator() is PL/pgSQL: as a SQL function with a FROM clause it could not be
--     inlined, and every call planned its query again (~0.2 ms, measured). A rollback now
--     asks for it once, and for the operation (_batch_id()) and the printable reason once;
--     an unapproved one reads the policy and the open incident level (a scan of the
--     journal copy's last week) once, where _approval_reasons read both again.
--   * The rollback's two steps are one function again (the breaker's and the approval's
--     checks, then the money statement): the drill check reads the profile the statement
--     updated instead of joining orders and profiles again.
--   * The breaker opens from a row trigger whose WHEN clause skips every row but a failed
--     post-check, instead of a statement trigger that kept a transition table of every
--     audit row and ran a query over it.
--
-- No table is rewritten: fillfactor applies to pages written from now on (existing pages
-- were filled to 90 %, which leaves room for most of their rows' one update); rewriting
-- orders and positions (VACUUM FULL) would hold an ACCESS EXCLUSIVE lock on the book for
-- as long as it takes to copy it, minutes on a large book. The indexes dropped take a
-- moment; the BRIN index reads order_audit_log once.
SET LOCAL ROLE incident_owner;

---------------------------------------------------------------------------------------------
-- Tables
---------------------------------------------------------------------------------------------

DROP INDEX idx_orders_user_id_status;
DROP INDEX idx_positions_status;
ALTER TABLE orders SET (fillfactor = 85);
ALTER TABLE positions SET (fillfactor = 85);

DROP INDEX idx_order_audit_created_at;
CREATE INDEX order_audit_log_created_at ON order_audit_log USING brin (created_at) WITH (autosummarize = on);

ALTER TABLE ledger_transfers
    DROP CONSTRAINT ledger_transfers_user_id_fkey,
    DROP CONSTRAINT ledger_transfers_order_id_fkey,
    DROP CONSTRAINT ledger_transfers_reverses_id_fkey;
-- The same for daily_pnl_tracking's user, written only by execute_order_atomic (for the
-- profile it locked) and the rollback (for the profile it updates): a rollback updates the
-- day's row, and a row already written in the transaction (a batch's chunk, the same user's
-- second order) was checked again on every update.
ALTER TABLE daily_pnl_tracking DROP CONSTRAINT daily_pnl_tracking_user_id_fkey;

-- A profile is an account with a history: never deleted (as orders and positions are not).
CREATE TRIGGER profiles_never_deleted
    BEFORE DELETE ON profiles
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER profiles_no_truncate
    BEFORE TRUNCATE ON profiles
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

---------------------------------------------------------------------------------------------
-- Per-call lookups
---------------------------------------------------------------------------------------------

-- The name recorded on audit rows (migration 11): the login, a name the owner registered
-- for it, else "claim (via login)". PL/pgSQL so that its one query is planned once per
-- session.
CREATE OR REPLACE FUNCTION _operator()
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_login text := session_user::text;
    v_claim text := _claimed_operator();
BEGIN
    IF v_claim IS NULL OR v_claim = v_login THEN
        RETURN v_login;
    END IF;
    IF EXISTS (SELECT 1 FROM operator_names n WHERE n.login = v_login AND n.operator = v_claim) THEN
        RETURN v_claim;
    END IF;
    RETURN left(v_claim, greatest(200 - length(v_login) - 7, 1)) || ' (via ' || v_login || ')';
END
$$;

---------------------------------------------------------------------------------------------
-- The breaker opens on a failed post-check (migration 18), from a row trigger
---------------------------------------------------------------------------------------------

DROP TRIGGER order_audit_log_opens_breaker ON order_audit_log;
CREATE OR REPLACE FUNCTION _breaker_on_failed_postcheck()
RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    PERFORM _switch_breaker(true, format('post-check failed for order %s', NEW.order_id), 'postcheck_failed');
    RETURN NULL;
END
$$;
CREATE TRIGGER order_audit_log_opens_breaker AFTER INSERT ON order_audit_log
    FOR EACH ROW WHEN (NEW.action = 'postcheck_failed') EXECUTE FUNCTION _breaker_on_failed_postcheck();

---------------------------------------------------------------------------------------------
-- Why work needs an approval (migration 19), for a caller that has read the policy and the
-- open level already: the rollback step read both, and _approval_reasons read them again
-- (the level is a scan of the journal copy's last week).
---------------------------------------------------------------------------------------------

CREATE FUNCTION _approval_reasons_at(p_policy approval_policy, p_level integer, p_kind text, p_orders integer,
                                     p_refunded numeric, p_operation uuid)
RETURNS jsonb LANGUAGE plpgsql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    v_policy approval_policy := p_policy;
    v_level  integer := coalesce(p_level, 0);
    v_used   record;
    v_new_op integer;
    v_why    jsonb := '[]';
BEGIN
    IF NOT v_policy.enabled THEN
        RETURN v_why;
    END IF;
    IF p_kind = 'release_rollback' THEN
        IF v_policy.release_rollback THEN
            v_why := v_why || to_jsonb('every release rollback needs a second person'::text);
        END IF;
        RETURN v_why;
    END IF;
    IF p_kind = 'breaker_close' THEN
        IF v_policy.level3_breaker_close AND v_level >= 3 THEN
            v_why := v_why || to_jsonb('closing the circuit breaker at Level 3 needs a second person'::text);
        END IF;
        RETURN v_why;
    END IF;
    IF v_policy.level3_batches AND v_level >= 3 AND p_kind IN ('batch', 'group') THEN
        v_why := v_why || to_jsonb(format('every %s rollback at Level 3 needs a second person',
                                          CASE p_kind WHEN 'batch' THEN 'batch' ELSE 'group' END));
    END IF;
    IF p_orders > v_policy.batch_orders THEN
        v_why := v_why || to_jsonb(format('%s orders is more than the %s one person may roll back',
                                          p_orders, v_policy.batch_orders));
    END IF;
    IF p_refunded > v_policy.batch_refunded THEN
        v_why := v_why || to_jsonb(format('%s refunded is more than the %s one person may refund',
                                          _money(p_refunded), _money(v_policy.batch_refunded)));
    END IF;
    SELECT * INTO v_used FROM _unapproved_used(v_policy.window_minutes);
    v_new_op := CASE WHEN p_operation IS NOT NULL AND EXISTS (
                         SELECT 1 FROM unapproved_rollbacks u
                         WHERE u.login = session_user::text AND u.operation = p_operation
                           AND u.at > clock_timestamp() - make_interval(mins => v_policy.window_minutes))
                     THEN 0 ELSE 1 END;
    IF v_used.operations + v_new_op > v_policy.single_limit THEN
        v_why := v_why || to_jsonb(format('this login already made %s rollbacks without approval in %s minutes (limit %s)',
                                          v_used.operations, v_policy.window_minutes, v_policy.single_limit));
    ELSIF v_used.orders + p_orders > v_policy.batch_orders AND p_orders <= v_policy.batch_orders THEN
        v_why := v_why || to_jsonb(format('this login already rolled back %s orders without approval in %s minutes (limit %s)',
                                          v_used.orders, v_policy.window_minutes, v_policy.batch_orders));
    ELSIF v_used.refunded + p_refunded > v_policy.batch_refunded AND p_refunded <= v_policy.batch_refunded THEN
        v_why := v_why || to_jsonb(format('this login already refunded %s without approval in %s minutes (limit %s)',
                                          _money(v_used.refunded), v_policy.window_minutes, _money(v_policy.batch_refunded)));
    END IF;
    RETURN v_why;
END
$$;
REVOKE EXECUTE ON FUNCTION _approval_reasons_at(approval_policy, integer, text, integer, numeric, uuid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION _approval_reasons(p_kind text, p_orders integer, p_refunded numeric, p_level integer,
                                             p_operation uuid)
RETURNS jsonb LANGUAGE sql STABLE SET search_path = pg_catalog, public, pg_temp AS $$
    SELECT _approval_reasons_at(p, greatest(coalesce(p_level, 0), _open_incident_level()), p_kind, p_orders,
                                p_refunded, p_operation)
    FROM approval_policy p
$$;

---------------------------------------------------------------------------------------------
-- The rollback step: the breaker, the approval, then the money (migrations 14, 18, 19)
---------------------------------------------------------------------------------------------

-- Every rollback passes here before it moves money (the functions that roll back call it
-- by name). The caller has locked the orders (by id), checked that each belongs to
-- p_user_id, is 'executed' and has an open position. This checks the circuit breaker,
-- then the approval of the session's operation, else the login's budget; then one
-- statement locks the profile (its UPDATE), reverses exactly what the executions took,
-- closes the positions, marks the orders and writes one audit row per order. The unique
-- index on reverses_id makes a second reversal of any transfer fail, whatever else went
-- wrong.
CREATE OR REPLACE FUNCTION _rollback_locked_orders(
    p_user_id uuid, p_order_ids uuid[], p_reason text, p_mode text,
    p_transaction_id uuid, p_started timestamptz, p_extra jsonb DEFAULT '{}'::jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_n           integer := cardinality(p_order_ids);
    v_operation   uuid := _batch_id();
    -- Stored as text a terminal cannot act on (it is shown by psql, reports and BI tools).
    v_reason      text := _printable(p_reason);
    v_breaker     circuit_breaker;
    v_policy      approval_policy;
    v_claim       jsonb;
    v_refunded    numeric;
    v_level       integer;
    v_why         jsonb;
    v_request     uuid;
    v_order       uuid;
    v_violations  jsonb;
    v_result      jsonb;
    v_operator    text;
    v_rollback_id uuid := gen_random_uuid();
    v_now         timestamptz;
    v_cash        numeric;
    v_margin      numeric;
    v_transfers   integer;
    v_profiles    integer;
    v_positions   integer;
    v_orders      integer;
    v_duration    bigint;
    v_drill       boolean;
BEGIN
    LOCK TABLE circuit_breaker IN ROW SHARE MODE;
    IF current_setting('transaction_isolation') = 'read committed' THEN
        SELECT * INTO v_breaker FROM circuit_breaker;
    ELSE
        -- A snapshot older than the switch: locking the row raises a serialization failure
        -- when it changed since, and the client's retry reads it open.
        SELECT * INTO v_breaker FROM circuit_breaker FOR SHARE;
    END IF;
    IF v_breaker.open THEN
        RETURN _refusal('breaker_open',
            format('the circuit breaker is open since %s: %s; nothing was rolled back (a person closes it with a reason)',
                   to_char(v_breaker.since AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), v_breaker.reason),
            jsonb_build_object('breaker', jsonb_build_object('since', v_breaker.since, 'reason', v_breaker.reason,
                                                             'source', v_breaker.source, 'opened_by', v_breaker.opened_by)));
    END IF;

    SELECT * INTO v_policy FROM approval_policy;
    IF v_policy.enabled THEN
        -- A batch approval covers the groups inside its scope too.
        v_claim := CASE WHEN v_operation IS NOT NULL
                        THEN _claim_approval(v_operation, ARRAY['batch', 'group'], NULL) END;
        IF v_claim ? 'error_code' THEN
            RETURN v_claim;
        ELSIF v_claim IS NOT NULL THEN
            IF v_reason IS DISTINCT FROM v_claim ->> 'reason' THEN
                RETURN _refusal('approval_required', 'the approval covers another reason',
                                jsonb_build_object('approval_id', v_claim -> 'approval_id'));
            END IF;
            -- One primary-key probe per order: a query over the request's rows would read
            -- all of them (a whole batch's) on every call, as the planner sees one request.
            v_request := (v_claim ->> 'approval_id')::uuid;
            FOREACH v_order IN ARRAY p_order_ids LOOP
                PERFORM 1 FROM approval_orders a
                WHERE a.request_id = v_request AND a.order_id = v_order AND a.user_id = p_user_id;
                IF NOT FOUND THEN
                    RETURN _refusal('approval_required',
                        'an order here is outside the approved scope: a changed set of orders needs a new approval',
                        jsonb_build_object('approval_id', v_claim -> 'approval_id'));
                END IF;
            END LOOP;
            p_extra := p_extra || jsonb_build_object('approval_id', v_claim -> 'approval_id');
        ELSIF NOT coalesce((SELECT is_drill FROM profiles WHERE id = p_user_id), false) THEN
            -- Unapproved: one login's budget, taken one call at a time under its row of
            -- approval_budget_locks (see migration 19). (A drill account's money is practice:
            -- the sandbox's drills roll it back without a second person.)
            INSERT INTO approval_budget_locks AS b (login, charged_at) VALUES (session_user::text, clock_timestamp())
            ON CONFLICT (login) DO UPDATE SET charged_at = excluded.charged_at;
            SELECT coalesce(sum(total_cost), 0) INTO v_refunded FROM orders
            WHERE id = ANY (p_order_ids) AND user_id = p_user_id AND status = 'executed';
            v_level := _open_incident_level();
            IF v_policy.level3_batches AND v_level >= 3 AND v_operation IS NOT NULL AND EXISTS (
                    SELECT 1 FROM unapproved_rollbacks u
                    WHERE u.login = session_user::text AND u.operation = v_operation) THEN
                v_why := jsonb_build_array('every batch rollback at Level 3 needs a second person');
            ELSE
                v_why := _approval_reasons_at(v_policy, v_level,
                                              CASE p_mode WHEN 'transaction' THEN 'group' ELSE 'single' END,
                                              v_n, v_refunded, v_operation);
            END IF;
            IF jsonb_array_length(v_why) > 0 THEN
                RETURN _refusal('approval_required',
                    'a second person must approve this first: ' || (SELECT string_agg(r, '; ') FROM jsonb_array_elements_text(v_why) AS r),
                    jsonb_build_object('reasons', v_why));
            END IF;
            INSERT INTO unapproved_rollbacks (operation, orders, refunded)
            VALUES (v_operation, v_n, v_refunded);
        END IF;
    END IF;

    -- The money. Timestamps are taken when it happens (clock_timestamp(), after the
    -- caller's locks), never before the execution they undo. The change-log triggers
    -- record what this statement does to orders and positions (migration 13).
    v_operator := _operator();
    v_now := clock_timestamp();
    WITH reversed AS (
        INSERT INTO ledger_transfers (user_id, debit_account, credit_account, amount, kind, order_id, reverses_id)
        SELECT t.user_id, t.credit_account, t.debit_account, t.amount, 'reversal', t.order_id, t.id
        FROM ledger_transfers t
        -- The user is checked on the rows found by order, not looked up: as "user_id = $1",
        -- the generic plan ANDed the orders' index with the user's, which reads every
        -- transfer (order, position) the user ever had. So below too.
        WHERE t.order_id = ANY (p_order_ids) AND t.reverses_id IS NULL AND t.user_id IS NOT DISTINCT FROM p_user_id
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
        WHERE order_id = ANY (p_order_ids) AND user_id IS NOT DISTINCT FROM p_user_id AND status = 'open'
        RETURNING margin_used
    ), marked AS (
        -- failure_reason is left as it was: it is forensic evidence.
        UPDATE orders
        SET status = 'rolled_back', rolled_back_at = greatest(v_now, executed_at), rolled_back_reason = v_reason,
            updated_at = v_now
        WHERE id = ANY (p_order_ids) AND user_id IS NOT DISTINCT FROM p_user_id AND status = 'executed'
        RETURNING id, executed_at, commission, total_cost
    ), daily AS (
        INSERT INTO daily_pnl_tracking AS d (user_id, trading_date, orders_rolled_back, commission_refunded)
        SELECT p_user_id, (m.executed_at AT TIME ZONE 'UTC')::date, count(*), sum(m.commission)
        FROM marked m GROUP BY 2
        ON CONFLICT (user_id, trading_date) DO UPDATE
        SET orders_rolled_back = d.orders_rolled_back + excluded.orders_rolled_back,
            commission_refunded = d.commission_refunded + excluded.commission_refunded
    ), drill AS (
        SELECT coalesce(bool_or(is_drill), false) AS is_drill FROM profile
    ), audit AS (
        INSERT INTO order_audit_log (order_id, user_id, action, rollback_id, batch_id, mode,
                                     transaction_id, operator, duration_us, is_drill, details)
        SELECT m.id, p_user_id, 'order_rolled_back', v_rollback_id, v_operation, p_mode, p_transaction_id,
               v_operator, (extract(epoch FROM clock_timestamp() - p_started) * 1000000)::bigint, dr.is_drill,
               -- The rest of the story is on the order row, which is never deleted.
               jsonb_build_object('reason', v_reason, 'refunded', _money(m.total_cost))
        FROM marked m, drill dr
        RETURNING duration_us
    )
    SELECT s.cash, s.margin, s.n, (SELECT count(*) FROM profile), (SELECT count(*) FROM closed),
           (SELECT count(*) FROM marked), (SELECT max(duration_us) FROM audit), (SELECT is_drill FROM drill)
    INTO v_cash, v_margin, v_transfers, v_profiles, v_positions, v_orders, v_duration, v_drill
    FROM sums s;

    -- The caller checked every one of these under its locks; a difference means a row
    -- changed under us (a position closed at the same moment): retry the whole call.
    IF v_profiles <> 1 OR v_positions <> v_n OR v_orders <> v_n THEN
        RAISE EXCEPTION 'rollback of % order(s) touched % profile(s), % position(s), % order(s)',
            v_n, v_profiles, v_positions, v_orders
            USING ERRCODE = 'serialization_failure';
    END IF;

    v_result := jsonb_build_object(
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
    IF v_claim IS NOT NULL THEN
        PERFORM _mark_approval_used(v_claim);
    END IF;
    -- Practice (sandbox breaker-drill): an order of a drill account placed under a key
    -- 'breaker-drill-…' fails its post-check on purpose, without touching any money: the
    -- rollback stands, the failed post-check is recorded and opens the breaker, and the next
    -- rollback is refused (see migration 18). Only a drill account's rollback looks.
    IF v_drill AND EXISTS (
        SELECT 1 FROM orders o
        WHERE o.id = ANY (p_order_ids) AND starts_with(o.idempotency_key, 'breaker-drill-')) THEN
        v_violations := jsonb_build_array(jsonb_build_object(
            'check_name', 'breaker_drill', 'user_id', p_user_id,
            'detail', 'a drill order whose post-check is made to fail (sandbox breaker-drill)'));
        PERFORM record_rollback_failure(p_order_ids[1], p_user_id, 'postcheck_failed',
                                        jsonb_build_object('violations', v_violations, 'orders', p_order_ids));
        v_result := v_result || jsonb_build_object('postcheck_failed', true, 'violations', v_violations,
                                                   'breaker_opened', true);
    END IF;
    RETURN v_result;
END
$$;

-- The step's money half, which migration 18 had put apart, is in it again.
DROP FUNCTION _rollback_locked_orders_unguarded(uuid, uuid[], text, text, uuid, timestamptz, jsonb);

RESET ROLE;
