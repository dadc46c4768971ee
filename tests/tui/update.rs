//! The console's update logic as plain unit tests: terminal events, ticks and the worker's
//! answers go into `App::update`; the tests read the state and the `Command`s that come
//! out. No database, no terminal.

use chrono::NaiveTime;
use crossterm::event::{Event, KeyCode, KeyModifiers, MouseButton, MouseEventKind};
use rust_decimal::Decimal;

use incident_console::console::app::{Action, App, Effects, Load};
use incident_console::console::panes::Pane;
use incident_console::console::panes::orders::{PAGE, WINDOW, parse_filter};
use incident_console::console::panes::rollback::{FlowTarget, Stage};
use incident_console::console::protocol::{BatchTarget, Command, ConnState, DbEvent, PageRequest, RequestId};
use incident_console::core::batch::BatchItem;
use incident_console::core::contract::{BatchPreview, OrderRow};
use incident_console::core::orders::{OrderQuery, OrderSort, SortColumn, TimeBound};
use incident_console::core::workflow::Level;

use crate::support::app::Driver;
use crate::support::fixtures::{at, baseline, precheck, rolled_back, row, rows};

// ----------------------------------------------------------------------------------------
// Driving the app
// ----------------------------------------------------------------------------------------

/// The console at 13:10 on the rollback screen, not connected yet.
fn console(level: Level, size: (u16, u16)) -> Driver {
    Driver::new("Duplicate GBPUSD executions", level, at(13, 10, 0), size)
}

/// Connects; returns the first page and count requests.
fn connect(s: &mut Driver) -> (RequestId, RequestId) {
    let e = s.db(DbEvent::Connection(ConnState::Up { latency_ms: 2 }));
    let page = load_id(&e.commands).expect("the first page is asked for on connecting");
    let count = count_id(&e.commands).expect("the count is asked for on connecting");
    (page, count)
}

/// Connected, with a first page of `n` orders answered (`has_more` says there are older).
fn loaded(size: (u16, u16), n: u32, has_more: bool) -> Driver {
    let mut s = console(Level::Moderate, size);
    let (page, count) = connect(&mut s);
    s.db(DbEvent::Orders { id: page, page: PageRequest::First, rows: rows(0..n), has_more });
    s.db(DbEvent::OrderCount { id: count, count: i64::from(n), capped: false });
    s
}

/// `r` on the order under the cursor, answered by a pre-check that passed.
fn reach_reason(s: &mut Driver) -> (RequestId, OrderRow) {
    let o = s.current();
    let e = s.press('r');
    let [Command::Precheck { id, order, user }] = e.commands.as_slice() else {
        panic!("r sends one pre-check: {:?}", e.commands)
    };
    assert_eq!((*order, *user), (o.id, o.user_id));
    let id = *id;
    s.db(DbEvent::Precheck { id, order: o.id, user: o.user_id, result: Ok(precheck(&o, true)) });
    assert_eq!(s.stage(), Stage::Reason);
    (id, o)
}

/// Through reason and confirmation to a running single rollback; returns its id.
fn reach_running(s: &mut Driver) -> (RequestId, OrderRow) {
    let (_, o) = reach_reason(s);
    s.typed("duplicate execution");
    s.enter();
    let e = s.enter();
    let [Command::Rollback { id, .. }] = e.commands.as_slice() else {
        panic!("enter sends one rollback: {:?}", e.commands)
    };
    (*id, o)
}

fn load_id(commands: &[Command]) -> Option<RequestId> {
    commands.iter().find_map(|c| match c {
        Command::LoadOrders { id, .. } => Some(*id),
        _ => None,
    })
}

fn count_id(commands: &[Command]) -> Option<RequestId> {
    commands.iter().find_map(|c| match c {
        Command::CountOrders { id, .. } => Some(*id),
        _ => None,
    })
}

fn filter_text(app: &App) -> Option<String> {
    app.orders.editing.as_ref().map(|e| e.lines().join("\n"))
}

// ----------------------------------------------------------------------------------------
// Filter editing
// ----------------------------------------------------------------------------------------

/// ctrl-u clears the filter line, as in a shell; with no filter the line says so, not an
/// example that reads like one in effect.
#[test]
fn ctrl_u_clears_the_filter_line_and_no_filter_is_said() {
    let mut s = loaded((80, 24), 20, false);
    assert!(s.screen().contains("no filter: every order"), "{}", s.screen());
    s.press('/');
    s.typed("GBPUSD sell");
    s.key_mod(KeyCode::Char('u'), KeyModifiers::CONTROL);
    assert_eq!(filter_text(&s.app).as_deref(), Some(""));
}

#[test]
fn slash_opens_the_filter_and_enter_applies_it() {
    let mut s = loaded((80, 24), 20, false);
    let e = s.press('/');
    assert!(e.redraw && e.commands.is_empty());
    assert_eq!(filter_text(&s.app).as_deref(), Some(""));
    // Keys that are bindings elsewhere are text here.
    s.typed("GBPUSD executed from:13:02 to:13:06 q");
    assert!(!s.app.quit, "q typed into the filter must not quit");
    for _ in 0..2 {
        s.key(KeyCode::Backspace);
    }
    assert_eq!(filter_text(&s.app).as_deref(), Some("GBPUSD executed from:13:02 to:13:06"));

    let e = s.enter();
    let query = parse_filter("GBPUSD executed from:13:02 to:13:06").expect("a good filter");
    assert_eq!(query.symbols, ["GBPUSD"]);
    assert_eq!(query.statuses, ["executed"]);
    assert_eq!(query.from, NaiveTime::from_hms_opt(13, 2, 0).map(TimeBound::TimeOfDay));
    assert_eq!(query.to, NaiveTime::from_hms_opt(13, 6, 0).map(TimeBound::TimeOfDay));
    let [
        Command::LoadOrders { id: a, query: q1, page: PageRequest::First, limit, .. },
        Command::CountOrders { id: b, query: q2 },
    ] = e.commands.as_slice()
    else {
        panic!("enter sends LoadOrders and CountOrders: {:?}", e.commands)
    };
    assert_ne!(a, b);
    assert_eq!((q1, q2, *limit), (&query, &query, PAGE));
    assert!(s.app.orders.editing.is_none());
    assert_eq!(s.app.orders.filter_text, "GBPUSD executed from:13:02 to:13:06");
    assert_eq!(s.app.orders.query, query);
    // The old rows are gone until the new page comes.
    assert!(s.app.orders.rows.is_empty());
    assert!(s.app.orders_loading_first());
}

#[test]
fn a_bad_filter_says_why_and_sends_nothing() {
    let mut s = loaded((80, 24), 20, false);
    s.press('/');
    s.typed("colour:red");
    let e = s.enter();
    assert!(e.commands.is_empty(), "{:?}", e.commands);
    let m = s.app.message.clone().expect("an error message");
    assert!(m.error);
    assert!(m.text.starts_with("filter: unknown filter key"), "{}", m.text);
    // Still editing, the text kept, the rows and the filter in effect unchanged.
    assert_eq!(filter_text(&s.app).as_deref(), Some("colour:red"));
    assert_eq!(s.app.orders.rows.len(), 20);
    assert_eq!(s.app.orders.query, OrderQuery::default());

    // A user id that is not a UUID.
    s.key(KeyCode::Esc);
    s.press('/');
    s.typed("user:bob");
    let e = s.enter();
    assert!(e.commands.is_empty());
    assert!(s.app.message.as_ref().is_some_and(|m| m.error && m.text.contains("user:bob")));
}

#[test]
fn esc_abandons_the_filter_edit() {
    let mut s = loaded((80, 24), 20, false);
    s.press('/');
    s.typed("EURUSD");
    let e = s.key(KeyCode::Esc);
    assert!(e.redraw && e.commands.is_empty());
    assert!(s.app.orders.editing.is_none());
    assert_eq!(s.app.orders.filter_text, "");
    assert_eq!(s.app.orders.query, OrderQuery::default());
    assert_eq!(s.app.orders.rows.len(), 20);
    // Reopening starts from the filter in effect, not from the abandoned text.
    s.press('/');
    assert_eq!(filter_text(&s.app).as_deref(), Some(""));
}

// ----------------------------------------------------------------------------------------
// Paste
// ----------------------------------------------------------------------------------------

#[test]
fn a_paste_goes_into_the_filter_with_newlines_as_spaces() {
    let mut s = loaded((80, 24), 20, false);
    s.press('/');
    let e = s.paste("GBPUSD\nexecuted\r\nfrom:13:02");
    assert!(e.redraw && e.commands.is_empty());
    let text = filter_text(&s.app).expect("editing");
    assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
    assert_eq!(text.split_whitespace().collect::<Vec<_>>(), ["GBPUSD", "executed", "from:13:02"]);
    let e = s.enter();
    let Some(Command::LoadOrders { query, .. }) = e.commands.first() else { panic!("{:?}", e.commands) };
    assert_eq!(query.symbols, ["GBPUSD"]);
    assert_eq!(query.statuses, ["executed"]);
}

#[test]
fn a_paste_goes_into_the_reason() {
    let mut s = loaded((80, 24), 20, false);
    reach_reason(&mut s);
    let e = s.paste("duplicate executions\nfrom deploy 4711\n");
    assert!(e.redraw);
    let flow = s.app.flow.as_ref().expect("flow");
    assert_eq!(flow.reason.lines().len(), 1, "the reason stays one line");
    assert_eq!(flow.reason_text(), "duplicate executions from deploy 4711");
}

#[test]
fn a_paste_with_no_text_input_focused_does_nothing() {
    let mut s = loaded((80, 24), 20, false);
    let e = s.paste("rm -rf /\n");
    assert_eq!(e, Effects::default());
    assert!(s.app.orders.editing.is_none() && s.app.flow.is_none());
}

// ----------------------------------------------------------------------------------------
// Selection
// ----------------------------------------------------------------------------------------

#[test]
fn space_toggles_and_moves_down() {
    let mut s = loaded((80, 24), 20, false);
    let e = s.press(' ');
    assert!(e.redraw && e.commands.is_empty());
    assert_eq!(s.app.orders.cursor, 1);
    assert_eq!(s.app.orders.selected.get(&row(0).id), Some(&row(0).user_id));
    s.press(' ');
    assert_eq!(s.app.orders.selected.len(), 2);
    // Back up and unselect the first.
    s.press('k');
    s.press('k');
    s.press(' ');
    assert_eq!(s.app.orders.selected.len(), 1);
    assert!(!s.app.orders.selected.contains_key(&row(0).id));
    assert!(s.app.orders.selected.contains_key(&row(1).id));
    assert_eq!(s.app.orders.selection(), vec![BatchItem { order_id: row(1).id, user_id: row(1).user_id }]);
}

#[test]
fn capital_a_selects_all_matching_and_x_clears() {
    let mut s = loaded((80, 24), 20, false);
    s.press(' ');
    let e = s.press('A');
    assert!(e.redraw && e.commands.is_empty());
    assert!(s.app.orders.all_matching);
    assert!(s.app.orders.selected.is_empty(), "A replaces the explicit selection");
    assert!(s.app.message.as_ref().is_some_and(|m| !m.error && m.text.contains("every executed order")));
    let e = s.press('x');
    assert!(e.redraw);
    assert!(!s.app.orders.all_matching && s.app.orders.selected.is_empty());
    // space after A goes back to an explicit selection
    s.press('A');
    s.press(' ');
    assert!(!s.app.orders.all_matching);
    assert_eq!(s.app.orders.selected.len(), 1);
}

#[test]
fn b_without_a_selection_is_refused() {
    let mut s = loaded((80, 24), 20, false);
    let e = s.press('b');
    assert!(e.commands.is_empty(), "{:?}", e.commands);
    assert!(s.app.flow.is_none());
    let m = s.app.message.clone().expect("a message");
    assert!(m.error && m.text.starts_with("Select orders first"), "{m:?}");
}

// ----------------------------------------------------------------------------------------
// Paging and stale pages
// ----------------------------------------------------------------------------------------

/// Pages down until the window asks for more (the cursor near its end).
fn page_down_until_a_load(s: &mut Driver) -> Effects {
    for _ in 0..200 {
        let e = s.key(KeyCode::PageDown);
        if !e.commands.is_empty() {
            return e;
        }
    }
    panic!("no page asked for")
}

#[test]
fn the_cursor_near_the_end_asks_for_an_older_page() {
    let mut s = loaded((160, 48), 200, true);
    assert_eq!(s.app.orders.rows.len(), 200);
    // Far from the end: nothing asked.
    let e = s.press('j');
    assert!(e.commands.is_empty());
    let e = page_down_until_a_load(&mut s);
    let [Command::LoadOrders { id, page, limit, .. }] = e.commands.as_slice() else {
        panic!("near the end asks for one more page: {:?}", e.commands)
    };
    assert_eq!(*page, PageRequest::Below(OrderSort::default().key(&row(199))));
    assert_eq!(*limit, PAGE);
    let older = *id;
    // While it is in flight, moving does not ask again.
    assert!(s.press('k').commands.is_empty());

    let e = s.db(DbEvent::Orders {
        id: older,
        page: PageRequest::Below(OrderSort::default().key(&row(199))),
        rows: rows(200..400),
        has_more: true,
    });
    assert!(e.redraw);
    assert_eq!(s.app.orders.rows.len(), 400);
    let at = s.app.orders.cursor;
    assert!((150..200).contains(&at), "the cursor stays where it was: {at}");
}

/// G goes to the true end of the list, not the last row loaded: the oldest page is asked
/// for, and the title says the row is the last of all.
#[test]
fn g_goes_to_the_true_end_and_says_which_row_it_is() {
    let mut s = loaded((160, 48), 200, true);
    // The book holds more than the window: 1,000 match.
    s.app.orders.count = Some((1000, false));
    assert!(s.screen().contains("row 1 of 1000"), "{}", s.screen());
    let e = s.press('G');
    let [Command::LoadOrders { id, page: PageRequest::Last, .. }] = e.commands.as_slice() else {
        panic!("G asks for the end of the list: {:?}", e.commands)
    };
    // The oldest page, oldest first as the database sends it.
    let mut oldest = rows(800..1000);
    oldest.reverse();
    s.db(DbEvent::Orders { id: *id, page: PageRequest::Last, rows: oldest, has_more: true });
    assert_eq!(s.app.current_order().map(|r| r.id), Some(row(999).id), "on the oldest order");
    assert!(s.app.orders.has_newer && !s.app.orders.has_older);
    assert!(s.screen().contains("row 1000 of 1000"), "{}", s.screen());
    // A screenful ends at the end: the rows before it show above the cursor, not blanks.
    let shown =
        s.screen().lines().filter(|l| l.contains(&incident_console::console::widgets::short(row(990).id))).count();
    assert_eq!(shown, 1, "the rows above the last one are on screen:\n{}", s.screen());
    // Up from there: the row counts down.
    s.press('k');
    assert!(s.screen().contains("row 999 of 1000"), "{}", s.screen());
}

/// R reloads with the rows still on screen: nothing blinks empty while the answer comes.
#[test]
fn r_keeps_the_rows_until_the_new_ones_arrive() {
    let mut s = loaded((160, 48), 20, false);
    s.press('j');
    let e = s.press('R');
    let id = load_id(&e.commands).expect("a reload");
    assert_eq!(s.app.orders.rows.len(), 20, "the rows stay while the reload runs");
    assert!(s.screen().contains(&incident_console::console::widgets::short(row(1).id)), "{}", s.screen());
    s.db(DbEvent::Orders { id, page: PageRequest::First, rows: rows(0..20), has_more: false });
    assert_eq!(s.app.current_order().map(|r| r.id), Some(row(1).id), "the cursor stays on its order");
}

/// A failed load is tried again by itself, 1 s then 2 s later, and says so; one that
/// works ends the retries.
#[test]
fn a_failed_load_is_tried_again_with_backoff() {
    let mut s = loaded((160, 48), 20, false);
    let t0 = s.app.now;
    let e = s.press('R');
    let first = load_id(&e.commands).expect("a reload");
    s.db(DbEvent::Failed { id: first, error: "canceling statement due to lock timeout".into() });
    assert!(s.screen().contains("Trying again in 1 s (try 2)"), "{}", s.screen());
    assert!(s.tick(t0 + chrono::Duration::milliseconds(900)).commands.is_empty(), "not before its time");
    let e = s.tick(t0 + chrono::Duration::milliseconds(1100));
    let second = load_id(&e.commands).expect("tried again after 1 s");
    s.db(DbEvent::Failed { id: second, error: "canceling statement due to lock timeout".into() });
    assert!(s.screen().contains("Trying again in 2 s (try 3)"), "{}", s.screen());
    let t1 = s.app.now;
    let e = s.tick(t1 + chrono::Duration::milliseconds(2100));
    let third = load_id(&e.commands).expect("tried again after 2 s more");
    s.db(DbEvent::Orders { id: third, page: PageRequest::First, rows: rows(0..20), has_more: false });
    assert!(s.app.orders.retry.is_none() && s.app.orders.error.is_none());
    assert!(
        s.tick(t1 + chrono::Duration::seconds(60)).commands.iter().all(|c| !matches!(c, Command::LoadOrders { .. }))
    );
}

#[test]
fn the_window_stays_bounded() {
    let mut s = loaded((160, 48), 200, true);
    for n in 1..=3u32 {
        let e = page_down_until_a_load(&mut s);
        let id = load_id(&e.commands).expect("an older page");
        let last = row(200 * n - 1);
        s.db(DbEvent::Orders {
            id,
            page: PageRequest::Below(OrderSort::default().key(&last)),
            rows: rows(200 * n..200 * (n + 1)),
            has_more: true,
        });
    }
    assert_eq!(s.app.orders.rows.len(), WINDOW);
    assert!(s.app.orders.has_newer, "the dropped newest rows can be loaded again");
    assert_eq!(s.app.orders.rows.front().map(|r| r.id), Some(row(200).id));
}

#[test]
fn a_stale_page_is_ignored_without_a_redraw() {
    let mut s = console(Level::Moderate, (80, 24));
    let (first, count) = connect(&mut s);
    // R reloads: the first request is now stale.
    let e = s.press('R');
    let second = load_id(&e.commands).expect("a reload");
    assert!(e.commands.contains(&Command::RefreshDashboard));
    assert_ne!(first, second);
    let e = s.db(DbEvent::Orders { id: first, page: PageRequest::First, rows: rows(0..5), has_more: false });
    assert_eq!(e, Effects::default());
    assert!(s.app.orders.rows.is_empty());
    let e = s.db(DbEvent::OrderCount { id: count, count: 5, capped: false });
    assert_eq!(e, Effects::default(), "a stale count too");
    assert_eq!(s.app.orders.count, None);
    // The current one is taken.
    let e = s.db(DbEvent::Orders { id: second, page: PageRequest::First, rows: rows(0..7), has_more: false });
    assert!(e.redraw);
    assert_eq!(s.app.orders.rows.len(), 7);
}

// ----------------------------------------------------------------------------------------
// The confirm flow
// ----------------------------------------------------------------------------------------

#[test]
fn single_rollback_precheck_reason_confirm_run() {
    let mut s = loaded((80, 24), 20, false);
    s.press('j');
    s.press('j');
    let (_, o) = reach_reason(&mut s);
    assert_eq!(o.id, row(2).id);
    assert_eq!(s.app.focus, Pane::Rollback);
    let flow = s.app.flow.as_ref().expect("flow");
    assert_eq!(flow.target, FlowTarget::Single(row(2)));
    assert_eq!(flow.baseline, Some((o.id, o.user_id, baseline(&o))));

    // An empty reason is refused with a hint.
    let e = s.enter();
    assert!(e.commands.is_empty());
    assert_eq!(s.stage(), Stage::Reason);
    assert!(s.app.flow.as_ref().and_then(|f| f.hint.clone()).is_some_and(|h| h.starts_with("A reason is required")));
    // Spaces are not a reason either.
    s.typed("   ");
    assert!(s.enter().commands.is_empty());
    assert_eq!(s.stage(), Stage::Reason);

    // Keys that are bindings elsewhere are text in the reason.
    s.typed("quit? no: duplicate execution");
    assert!(!s.app.quit && !s.app.help);
    let e = s.enter();
    assert!(e.commands.is_empty(), "the reason alone changes nothing: {:?}", e.commands);
    assert_eq!(s.stage(), Stage::Confirm);
    assert_eq!(s.app.flow.as_ref().and_then(|f| f.confirm_word.clone()), None, "level 2 needs no typed word");

    let e = s.enter();
    let [Command::Rollback { id, order, user, reason, baseline: b, group, waive_journal: false, .. }] =
        e.commands.as_slice()
    else {
        panic!("enter sends exactly one rollback: {:?}", e.commands)
    };
    assert_eq!((*order, *user), (o.id, o.user_id));
    assert_eq!(reason, "quit? no: duplicate execution");
    assert_eq!(b, &baseline(&o), "the baseline is the pre-check's, untouched");
    assert!(!group);
    assert!(matches!(s.stage(), Stage::Running { id: r, .. } if r == *id));
    assert!(s.app.rollback_running());

    // Another enter (outside a text input it pre-checks the order under the cursor) or r
    // does not send a second rollback.
    let e = s.enter();
    assert!(!e.commands.iter().any(|c| matches!(c, Command::Rollback { .. })), "{:?}", e.commands);
    assert!(s.press('r').commands.is_empty());
    assert!(s.app.message.as_ref().is_some_and(|m| m.text.contains("already being prepared or running")));

    // The answer: done, post-check shown, orders and dashboard refreshed.
    let id = *id;
    let e = s.db(DbEvent::Rollback { id, result: Ok(rolled_back(&o, true)) });
    assert!(matches!(s.stage(), Stage::Done { ok: true, .. }), "{:?}", s.stage());
    assert!(matches!(s.app.postcheck, Load::Loaded(_)));
    assert_eq!(s.app.detail, Pane::Postcheck);
    assert!(load_id(&e.commands).is_some());
    assert!(e.commands.contains(&Command::RefreshDashboard));
}

#[test]
fn t_rolls_back_the_transaction_group() {
    let mut s = loaded((80, 24), 20, false);
    let o = row(0);
    let e = s.press('t');
    let [Command::Precheck { id, .. }] = e.commands.as_slice() else { panic!("{:?}", e.commands) };
    s.db(DbEvent::Precheck { id: *id, order: o.id, user: o.user_id, result: Ok(precheck(&o, true)) });
    s.typed("group duplicate");
    s.enter();
    let e = s.enter();
    assert!(matches!(e.commands.as_slice(), [Command::Rollback { group: true, .. }]), "{:?}", e.commands);
}

#[test]
fn a_precheck_that_did_not_pass_stops_the_flow() {
    let mut s = loaded((80, 24), 20, false);
    let o = row(0);
    let e = s.press('r');
    let [Command::Precheck { id, .. }] = e.commands.as_slice() else { panic!("{:?}", e.commands) };
    s.db(DbEvent::Precheck { id: *id, order: o.id, user: o.user_id, result: Ok(precheck(&o, false)) });
    assert_eq!(s.stage(), Stage::PrecheckFailed);
    // Typing and enter do nothing to the database.
    let e = s.enter();
    assert!(!e.commands.iter().any(|c| matches!(c, Command::Rollback { .. })), "{:?}", e.commands);
}

#[test]
fn level_3_requires_the_typed_word() {
    let mut s = loaded((80, 24), 20, false);
    s.app.incident.level = Level::Critical;
    let (_, o) = reach_reason(&mut s);
    s.typed("duplicate execution");
    s.enter();
    assert_eq!(s.stage(), Stage::Confirm);
    assert_eq!(s.app.flow.as_ref().and_then(|f| f.confirm_word.clone()).as_deref(), Some("ROLLBACK"));

    // Nothing typed: refused.
    let e = s.enter();
    assert!(e.commands.is_empty());
    assert_eq!(s.stage(), Stage::Confirm);
    assert!(s.app.flow.as_ref().and_then(|f| f.hint.clone()).is_some_and(|h| h.contains("Type ROLLBACK exactly")));

    // A wrong word, and the right word in the wrong case: refused.
    for wrong in ["ROLLBAK", "rollback"] {
        s.typed(wrong);
        let e = s.enter();
        assert!(e.commands.is_empty(), "{wrong} must not roll back: {:?}", e.commands);
        assert_eq!(s.stage(), Stage::Confirm);
        for _ in 0..wrong.len() {
            s.key(KeyCode::Backspace);
        }
    }
    // Typing clears the hint; the right word rolls back.
    s.typed("ROLLBACK");
    assert!(s.app.flow.as_ref().is_some_and(|f| f.hint.is_none()));
    let e = s.enter();
    let [Command::Rollback { order, reason, .. }] = e.commands.as_slice() else { panic!("{:?}", e.commands) };
    assert_eq!(*order, o.id);
    assert_eq!(reason, "duplicate execution");
}

#[test]
fn a_pasted_confirmation_word_counts() {
    let mut s = loaded((80, 24), 20, false);
    s.app.incident.level = Level::Critical;
    reach_reason(&mut s);
    s.typed("dup");
    s.enter();
    s.paste("ROLLBACK");
    assert!(matches!(s.enter().commands.as_slice(), [Command::Rollback { .. }]));
}

#[test]
fn a_batch_requires_the_count_typed() {
    let mut s = loaded((80, 24), 20, false);
    for _ in 0..3 {
        s.press(' ');
    }
    let selection = s.app.orders.selection();
    assert_eq!(selection.len(), 3);
    let e = s.press('b');
    let [Command::PreviewBatch { id, target }] = e.commands.as_slice() else { panic!("{:?}", e.commands) };
    assert_eq!(target, &BatchTarget::Orders(selection.clone()));
    assert!(matches!(s.stage(), Stage::Previewing { id: p } if p == *id));
    let preview = BatchPreview {
        orders: 3,
        executed: 3,
        users: 3,
        total_refund: Decimal::new(3_795_000, 2),
        total_margin_release: Decimal::new(379_500, 2),
    };
    s.db(DbEvent::BatchPreview { id: *id, result: Ok((preview, selection.clone())) });
    assert_eq!(s.stage(), Stage::Reason);
    s.typed("burst");
    s.enter();
    assert_eq!(s.app.flow.as_ref().and_then(|f| f.confirm_word.clone()).as_deref(), Some("3"));
    assert!(s.enter().commands.is_empty(), "the count must be typed");
    s.typed("4");
    assert!(s.enter().commands.is_empty(), "a wrong count is refused");
    s.key(KeyCode::Backspace);
    s.typed("3");
    let e = s.enter();
    let [Command::RunBatch { id: run, items, reason, .. }] = e.commands.as_slice() else { panic!("{:?}", e.commands) };
    assert_eq!(items, &selection);
    assert_eq!(reason, "burst");
    assert!(matches!(s.stage(), Stage::Running { id, .. } if id == *run));
    assert_eq!(s.app.flow.as_ref().map(|f| f.run.total), Some(3));
}

#[test]
fn a_batch_of_everything_matching_previews_the_filter() {
    let mut s = loaded((80, 24), 20, false);
    s.press('A');
    let e = s.press('b');
    assert!(
        matches!(e.commands.as_slice(), [Command::PreviewBatch { target: BatchTarget::Matching(q), .. }] if *q == OrderQuery::default()),
        "{:?}",
        e.commands
    );
}

#[test]
fn esc_abandons_the_flow_without_a_command() {
    let mut s = loaded((80, 24), 20, false);
    reach_reason(&mut s);
    s.typed("dup");
    let e = s.key(KeyCode::Esc);
    assert!(e.commands.is_empty());
    assert!(s.app.flow.is_none());
    assert!(s.app.message.as_ref().is_some_and(|m| m.text.contains("nothing was changed")));
}

// ----------------------------------------------------------------------------------------
// Stale answers
// ----------------------------------------------------------------------------------------

#[test]
fn a_precheck_answer_for_an_older_request_changes_nothing() {
    let mut s = loaded((80, 24), 20, false);
    let o = row(0);
    let first = match s.press('p').commands.as_slice() {
        [Command::Precheck { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    s.press('j');
    let o2 = row(1);
    let second = match s.press('p').commands.as_slice() {
        [Command::Precheck { id, order, .. }] => {
            assert_eq!(*order, o2.id);
            *id
        }
        other => panic!("{other:?}"),
    };
    assert_ne!(first, second);
    let e = s.db(DbEvent::Precheck { id: first, order: o.id, user: o.user_id, result: Ok(precheck(&o, true)) });
    assert_eq!(e, Effects::default());
    assert!(matches!(s.app.precheck, Load::Loading { id, .. } if id == second));
    assert!(s.app.flow.is_none());

    let e = s.db(DbEvent::Precheck { id: second, order: o2.id, user: o2.user_id, result: Ok(precheck(&o2, true)) });
    assert!(e.redraw);
    assert!(matches!(&s.app.precheck, Load::Loaded(v) if v.order == o2.id));
}

#[test]
fn a_flow_ignores_a_precheck_answer_that_is_not_its_own() {
    let mut s = loaded((80, 24), 20, false);
    let o = row(0);
    let id = match s.press('r').commands.as_slice() {
        [Command::Precheck { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    let e = s.db(DbEvent::Precheck { id: id + 100, order: o.id, user: o.user_id, result: Ok(precheck(&o, true)) });
    assert_eq!(e, Effects::default());
    assert_eq!(s.stage(), Stage::Prechecking { id });
    // A batch preview or rollback answer with a made-up id, too.
    let e = s.db(DbEvent::Rollback { id: id + 100, result: Ok(rolled_back(&o, true)) });
    assert_eq!(e, Effects::default());
    assert_eq!(s.stage(), Stage::Prechecking { id });
    assert_eq!(s.app.postcheck, Load::Idle);
}

// ----------------------------------------------------------------------------------------
// Cancel
// ----------------------------------------------------------------------------------------

#[test]
fn c_cancels_a_running_rollback_and_a_late_answer_is_ignored() {
    let mut s = loaded((80, 24), 20, false);
    let (id, o) = reach_running(&mut s);
    let e = s.press('c');
    assert_eq!(e.commands, vec![Command::Cancel { id }]);
    assert!(matches!(s.stage(), Stage::Cancelling { id: c, .. } if c == id));
    // Pressing it again does not send a second cancel.
    assert!(s.press('c').commands.is_empty());
    // While cancelling, quitting still asks first.
    assert!(s.app.rollback_running());

    let e = s.db(DbEvent::Cancelled { id });
    assert!(e.redraw);
    assert!(matches!(s.stage(), Stage::Cancelled { .. }));
    assert!(!s.app.rollback_running());

    let e = s.db(DbEvent::Rollback { id, result: Ok(rolled_back(&o, true)) });
    assert_eq!(e, Effects::default());
    assert!(matches!(s.stage(), Stage::Cancelled { .. }));
    assert_eq!(s.app.postcheck, Load::Idle);

    // c once more closes the finished flow.
    s.press('c');
    assert!(s.app.flow.is_none());
}

#[test]
fn esc_cancels_a_running_rollback_too() {
    let mut s = loaded((80, 24), 20, false);
    let (id, _) = reach_running(&mut s);
    assert_eq!(s.key(KeyCode::Esc).commands, vec![Command::Cancel { id }]);
}

#[test]
fn c_cancels_a_running_batch() {
    let mut s = loaded((80, 24), 20, false);
    s.press(' ');
    let items = s.app.orders.selection();
    let pid = match s.press('b').commands.as_slice() {
        [Command::PreviewBatch { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    let preview = BatchPreview {
        orders: 1,
        executed: 1,
        users: 1,
        total_refund: Decimal::ONE,
        total_margin_release: Decimal::ONE,
    };
    s.db(DbEvent::BatchPreview { id: pid, result: Ok((preview, items)) });
    s.typed("x");
    s.enter();
    s.typed("1");
    let run = match s.enter().commands.as_slice() {
        [Command::RunBatch { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    assert_eq!(s.press('c').commands, vec![Command::Cancel { id: run }]);
    assert!(matches!(s.stage(), Stage::Cancelling { .. }));
}

#[test]
fn cancelling_a_flow_while_it_prechecks_also_stops_the_precheck_pane() {
    let mut s = loaded((80, 24), 20, false);
    let id = match s.press('r').commands.as_slice() {
        [Command::Precheck { id, .. }] => *id,
        other => panic!("{other:?}"),
    };
    assert_eq!(s.press('c').commands, vec![Command::Cancel { id }]);
    s.db(DbEvent::Cancelled { id });
    assert!(matches!(s.stage(), Stage::Cancelled { .. }));
    assert!(
        !matches!(s.app.precheck, Load::Loading { .. }),
        "the Pre-check pane still says pre-checking… for a request that was cancelled"
    );
    assert!(!s.app.animating(), "nothing moves, so the loop must stop ticking");
}

// ----------------------------------------------------------------------------------------
// Quit
// ----------------------------------------------------------------------------------------

#[test]
fn q_with_nothing_running_quits() {
    let mut s = loaded((80, 24), 20, false);
    let e = s.press('q');
    assert!(s.app.quit);
    assert_eq!(e.commands, vec![Command::Shutdown]);
}

#[test]
fn q_while_a_rollback_runs_asks_first() {
    let mut s = loaded((80, 24), 20, false);
    let (id, _) = reach_running(&mut s);
    let e = s.press('q');
    assert!(e.commands.is_empty());
    assert!(s.app.quit_confirm && !s.app.quit);
    // Any other key stays.
    let e = s.press('n');
    assert!(e.commands.is_empty());
    assert!(!s.app.quit_confirm && !s.app.quit);
    assert!(matches!(s.stage(), Stage::Running { .. }), "staying does not cancel");
    // y quits: the rollback is cancelled on the server, then the worker stops.
    s.press('q');
    let e = s.press('y');
    assert!(s.app.quit);
    assert_eq!(e.commands, vec![Command::Cancel { id }, Command::Shutdown]);
}

#[test]
fn ctrl_c_quits_even_while_typing_a_reason() {
    let mut s = loaded((80, 24), 20, false);
    reach_reason(&mut s);
    s.typed("half a rea");
    let e = s.key_mod(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(s.app.quit);
    assert_eq!(e.commands, vec![Command::Shutdown]);
    let reason = s.app.flow.as_ref().map(|f| f.reason_text()).unwrap_or_default();
    assert_eq!(reason, "half a rea", "ctrl-c is not typed into the reason");
}

#[test]
fn ctrl_c_quits_while_typing_the_filter() {
    let mut s = loaded((80, 24), 20, false);
    s.press('/');
    s.typed("GBP");
    let e = s.key_mod(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(s.app.quit);
    assert_eq!(e.commands, vec![Command::Shutdown]);
}

#[test]
fn ctrl_c_twice_quits_while_a_rollback_runs() {
    let mut s = loaded((80, 24), 20, false);
    let (id, _) = reach_running(&mut s);
    let e = s.key_mod(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(e.commands.is_empty() && s.app.quit_confirm, "asks first while money moves");
    let e = s.key_mod(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(s.app.quit);
    assert_eq!(e.commands, vec![Command::Cancel { id }, Command::Shutdown]);
}

// ----------------------------------------------------------------------------------------
// Mouse, resize, focus
// ----------------------------------------------------------------------------------------

#[test]
fn a_click_on_an_order_row_moves_the_cursor_there() {
    // 80x24: the Orders pane is rows 2..=10; border, filter line and column titles come
    // first, so the first order is on row 5.
    let mut s = loaded((80, 24), 20, false);
    s.key(KeyCode::Tab);
    assert_ne!(s.app.focus, Pane::Orders);
    let e = s.mouse(MouseEventKind::Down(MouseButton::Left), 10, 7);
    assert!(e.redraw && e.commands.is_empty());
    assert_eq!(s.app.focus, Pane::Orders);
    assert_eq!(s.app.orders.cursor, 2);
    // A click on the column titles focuses the pane but does not move the cursor.
    s.mouse(MouseEventKind::Down(MouseButton::Left), 10, 4);
    assert_eq!(s.app.orders.cursor, 2);
    // A click below the last loaded row (few rows) does not move it either.
    let mut few = loaded((80, 24), 2, false);
    few.mouse(MouseEventKind::Down(MouseButton::Left), 10, 8);
    assert_eq!(few.app.orders.cursor, 0);
}

#[test]
fn a_click_lands_on_the_row_that_was_drawn() {
    let mut s = loaded((80, 24), 20, false);
    // Scroll so the list does not start at the first order.
    for _ in 0..8 {
        s.press('j');
    }
    assert!(s.app.orders.offset > 0);
    s.mouse(MouseEventKind::Down(MouseButton::Left), 10, 5);
    let clicked = s.app.current_order().map(|r| incident_console::console::widgets::short(r.id)).expect("a row");
    // The row drawn on screen line 5 is the one now under the cursor.
    let screen = s.screen();
    let line5 = screen.lines().nth(5).expect("a sixth line");
    assert!(line5.contains(&clicked), "{line5:?} should show {clicked}");
}

#[test]
fn the_wheel_scrolls_by_three() {
    let mut s = loaded((80, 24), 20, false);
    let e = s.mouse(MouseEventKind::ScrollDown, 10, 6);
    assert!(e.redraw);
    assert_eq!(s.app.orders.cursor, 3);
    s.mouse(MouseEventKind::ScrollDown, 10, 6);
    assert_eq!(s.app.orders.cursor, 6);
    s.mouse(MouseEventKind::ScrollUp, 10, 6);
    assert_eq!(s.app.orders.cursor, 3);
    // Outside the Orders pane the wheel does nothing to the list.
    let e = s.mouse(MouseEventKind::ScrollDown, 10, 18);
    assert_eq!(e, Effects::default());
    assert_eq!(s.app.orders.cursor, 3);
}

#[test]
fn a_click_on_a_tab_shows_that_pane() {
    // 80x24, four equal slots: the tabs are row 14 while the list has the focus (it gets
    // most of the rows), row 11 once a pane below has it (that pane gets most).
    let mut s = loaded((80, 24), 20, false);
    assert!(s.screen().lines().nth(14).is_some_and(|l| l.contains("Pre-check") && l.contains("Dashboard")));
    s.mouse(MouseEventKind::Down(MouseButton::Left), 30, 14);
    assert_eq!((s.app.focus, s.app.detail), (Pane::Rollback, Pane::Rollback));
    assert!(s.screen().lines().nth(11).is_some_and(|l| l.contains("Pre-check") && l.contains("Dashboard")));
    s.mouse(MouseEventKind::Down(MouseButton::Left), 75, 11);
    assert_eq!((s.app.focus, s.app.detail), (Pane::Dashboard, Pane::Dashboard));
    s.mouse(MouseEventKind::Down(MouseButton::Left), 2, 11);
    assert_eq!((s.app.focus, s.app.detail), (Pane::Precheck, Pane::Precheck));
}

#[test]
fn resize_below_the_minimum_and_back() {
    let mut s = loaded((160, 48), 40, false);
    for _ in 0..30 {
        s.press('j');
    }
    assert_eq!((s.app.orders.cursor, s.app.orders.offset), (30, 0));

    let e = s.act(Action::Terminal(Event::Resize(60, 20)));
    assert!(e.redraw);
    assert_eq!(s.app.size, (60, 20));
    let text = s.screen();
    assert!(text.contains("Terminal too small"));
    // The mouse has nothing to hit, and keys do nothing: nothing may act unseen.
    assert_eq!(s.mouse(MouseEventKind::Down(MouseButton::Left), 5, 5), Effects::default());
    assert_eq!(s.press('k'), Effects::default());
    assert_eq!(s.app.orders.cursor, 30);

    let e = s.act(Action::Terminal(Event::Resize(80, 24)));
    assert!(e.redraw);
    // 80x24 shows 8 orders while the list has the focus: the window scrolled so the
    // cursor is visible.
    let (cursor, offset) = (s.app.orders.cursor, s.app.orders.offset);
    assert_eq!(cursor, 30);
    assert!(offset <= cursor && cursor < offset + 8, "cursor {cursor} offset {offset}");
    assert!(s.screen().contains("▶  "), "the cursor's row is drawn:\n{}", s.screen());
}

/// Below the smallest size only a notice is drawn: a rollback cannot be started,
/// reasoned or confirmed blind; q still quits (asking first while a rollback runs).
#[test]
fn no_key_acts_while_the_terminal_is_too_small() {
    let mut s = loaded((80, 24), 20, false);
    s.act(Action::Terminal(Event::Resize(60, 20)));
    for e in [s.press('r'), s.press('p'), s.press('i'), s.paste("why"), s.enter(), s.key(KeyCode::Tab)] {
        assert_eq!(e, Effects::default());
    }
    assert!(s.app.flow.is_none() && s.app.screen == incident_console::console::app::Screen::Rollback);

    // A rollback confirmed at full size, then the window shrinks: q asks, on the notice.
    s.act(Action::Terminal(Event::Resize(80, 24)));
    reach_running(&mut s);
    s.act(Action::Terminal(Event::Resize(60, 20)));
    let e = s.press('q');
    assert!(e.commands.is_empty() && s.app.quit_confirm && !s.app.quit);
    let text = s.screen();
    assert!(text.contains("A rollback is running") && text.contains("y quits"), "{text}");
    s.press('y');
    assert!(s.app.quit);
}

#[test]
fn tab_and_shift_tab_cycle_the_panes() {
    let mut s = loaded((80, 24), 20, false);
    let order = [Pane::Precheck, Pane::Rollback, Pane::Postcheck, Pane::Dashboard, Pane::Orders];
    for want in order {
        let e = s.key(KeyCode::Tab);
        assert!(e.redraw);
        assert_eq!(s.app.focus, want);
    }
    // On a narrow screen the Dashboard is a tab of the detail area.
    assert_eq!(s.app.detail, Pane::Dashboard);
    for want in [Pane::Dashboard, Pane::Postcheck, Pane::Rollback, Pane::Precheck, Pane::Orders] {
        s.key(KeyCode::BackTab);
        assert_eq!(s.app.focus, want);
    }
    assert_eq!(s.app.detail, Pane::Precheck);

    // On a wide screen the Dashboard has its own place: focusing it keeps the detail shown.
    let mut wide = loaded((160, 48), 20, false);
    wide.key(KeyCode::BackTab);
    assert_eq!((wide.app.focus, wide.app.detail), (Pane::Dashboard, Pane::Precheck));
    // Keys that move the list do nothing while another pane has focus.
    assert!(wide.press('j').commands.is_empty());
    assert_eq!(wide.app.orders.cursor, 0);
}

#[test]
fn tab_moves_panes_while_typing_a_reason_without_typing_a_tab() {
    let mut s = loaded((80, 24), 20, false);
    reach_reason(&mut s);
    s.typed("dup");
    assert_eq!(s.app.focus, Pane::Rollback);
    let e = s.key(KeyCode::Tab);
    assert!(e.redraw && e.commands.is_empty());
    assert_eq!(s.app.focus, Pane::Postcheck);
    s.key(KeyCode::BackTab);
    assert_eq!(s.app.focus, Pane::Rollback);
    assert_eq!(s.stage(), Stage::Reason);
    assert_eq!(s.app.flow.as_ref().map(|f| f.reason_text()).as_deref(), Some("dup"));
}

// ----------------------------------------------------------------------------------------
// Ticks
// ----------------------------------------------------------------------------------------

#[test]
fn an_idle_tick_within_the_minute_does_not_redraw() {
    let mut s = loaded((80, 24), 20, false);
    assert!(!s.app.animating());
    let e = s.act(Action::Tick(at(13, 10, 20)));
    assert_eq!(e, Effects::default());
    assert_eq!(s.app.now, at(13, 10, 20));
    // The minute turning changes the header's time in phase: redraw.
    let e = s.act(Action::Tick(at(13, 11, 0)));
    assert!(e.redraw);
}

#[test]
fn ticks_redraw_while_something_runs() {
    let mut s = loaded((80, 24), 20, false);
    reach_running(&mut s);
    assert!(s.app.animating());
    let e = s.act(Action::Tick(at(13, 10, 1)));
    assert!(e.redraw && e.commands.is_empty());
}

#[test]
fn ticks_redraw_while_connecting() {
    let mut s = console(Level::Moderate, (80, 24));
    assert!(s.app.animating());
    assert!(s.act(Action::Tick(at(13, 10, 1))).redraw);
}

#[test]
fn the_same_connection_state_again_does_not_redraw() {
    let mut s = loaded((80, 24), 20, false);
    let e = s.db(DbEvent::Connection(ConnState::Up { latency_ms: 2 }));
    assert_eq!(e, Effects::default());
    // Down and up again: the rows already shown are not reloaded from scratch.
    let e = s.db(DbEvent::Connection(ConnState::Down { error: "gone".into(), retry_in: 1, since: at(13, 9, 0) }));
    assert!(e.redraw && e.commands.is_empty());
    let e = s.db(DbEvent::Connection(ConnState::Up { latency_ms: 5 }));
    assert!(e.redraw && e.commands.is_empty());
    assert_eq!(s.app.orders.rows.len(), 20);
}

#[test]
fn help_opens_on_question_mark_and_any_key_closes_it() {
    let mut s = loaded((80, 24), 20, false);
    s.press('?');
    assert!(s.app.help);
    // The key that closes help does nothing else.
    let e = s.press('q');
    assert!(!s.app.help && !s.app.quit);
    assert!(e.commands.is_empty());
}

// ----------------------------------------------------------------------------------------
// Sorting, repeat marks, orders per minute
// ----------------------------------------------------------------------------------------

/// `S` then a column's digit sorts by it (largest first for amounts), the same digit again
/// reverses it; the pages that follow are keyed on that column; any other key keeps the
/// order.
#[test]
fn s_and_a_digit_sort_the_list_and_the_next_page_follows_the_sort() {
    let mut s = loaded((160, 48), 200, true);
    let e = s.press('S');
    assert!(e.commands.is_empty() && s.app.orders.choosing_sort);
    let e = s.key(KeyCode::Esc);
    assert!(e.commands.is_empty() && !s.app.orders.choosing_sort, "esc keeps the order");
    assert_eq!(s.app.orders.sort, OrderSort::default());

    s.press('S');
    let e = s.press('4');
    let qty = OrderSort { column: SortColumn::Quantity, descending: true };
    let [Command::LoadOrders { id, sort, page: PageRequest::First, .. }, Command::CountOrders { .. }] =
        e.commands.as_slice()
    else {
        panic!("a sort loads the first page and counts again: {:?}", e.commands)
    };
    assert_eq!(*sort, qty);
    assert!(s.app.orders.rows.is_empty(), "another order is another list");
    s.db(DbEvent::Orders { id: *id, page: PageRequest::First, rows: rows(0..200), has_more: true });
    assert!(s.screen().contains("all orders, by qty ↓"), "{}", s.screen());
    // The next page is keyed on quantity and id, not on time.
    let e = page_down_until_a_load(&mut s);
    let [Command::LoadOrders { sort, page, .. }] = e.commands.as_slice() else { panic!("{:?}", e.commands) };
    assert_eq!(*sort, qty);
    assert_eq!(*page, PageRequest::Below(qty.key(&row(199))));
    assert_eq!(
        qty.key(&row(199)).value,
        incident_console::core::orders::SortValue::Amount(Some(Decimal::from(10_000)))
    );

    // The same digit again: smallest first.
    s.press('S');
    let e = s.press('4');
    let Some(Command::LoadOrders { sort, .. }) = e.commands.first() else { panic!("{:?}", e.commands) };
    assert_eq!(*sort, OrderSort { column: SortColumn::Quantity, descending: false });
    // A digit with no column keeps the order.
    s.press('S');
    assert!(s.press('9').commands.is_empty());
    assert!(!s.app.orders.sort.descending);
}

/// The worker's repeat marks put "×n" on the page's repeated executions; a later answer for
/// the same rows without them takes the marks away (a twin rolled back); marks asked for
/// before a reload are dropped.
#[test]
fn repeat_marks_show_on_their_rows_and_go_when_the_page_says_so() {
    let mut s = loaded((160, 48), 20, false);
    let ids: Vec<_> = rows(0..20).iter().map(|r| r.id).collect();
    let (page, _) = s.last_page();
    assert!(!s.screen().contains('×'));
    s.db(DbEvent::RepeatMarks { id: page, rows: ids.clone(), marks: vec![(row(0).id, 2), (row(1).id, 1)] });
    let text = s.screen();
    let line = |i: u32| {
        let short = incident_console::console::widgets::short(row(i).id);
        text.lines().find(|l| l.contains(&short)).map(str::to_string).unwrap_or_default()
    };
    assert!(line(0).contains("×3") && line(1).contains("×2") && !line(2).contains('×'), "{text}");
    s.db(DbEvent::RepeatMarks { id: page, rows: ids.clone(), marks: vec![(row(0).id, 2)] });
    assert!(s.app.orders.repeats.contains_key(&row(0).id) && !s.app.orders.repeats.contains_key(&row(1).id));
    // After a reload, the marks of a page asked for before it are old news: dropped.
    let e = s.press('R');
    let reload = load_id(&e.commands).expect("a reload");
    s.db(DbEvent::RepeatMarks { id: page, rows: ids.clone(), marks: vec![(row(1).id, 1)] });
    assert!(!s.app.orders.repeats.contains_key(&row(1).id), "a stale mark is not taken");
    s.db(DbEvent::RepeatMarks { id: reload, rows: ids, marks: vec![(row(1).id, 1)] });
    assert!(s.app.orders.repeats.contains_key(&row(1).id));
}

/// `m` shows the orders per minute of the filter over the list (asked of the worker, again
/// for a new filter) and hides it; the list gives the strip one row.
#[test]
fn m_toggles_the_per_minute_strip_for_the_filter() {
    let mut s = loaded((80, 24), 20, false);
    let shown = |s: &Driver| s.screen().lines().filter(|l| l.contains("GBPUSD")).count();
    let rows_before = shown(&s);
    let e = s.press('m');
    let [Command::OrdersPerMinute { id, query }] = e.commands.as_slice() else { panic!("{:?}", e.commands) };
    assert_eq!(*query, OrderQuery::default());
    assert_eq!(shown(&s), rows_before - 1);
    assert!(s.screen().contains("per minute: counting"), "{}", s.screen());
    let counts = vec![(at(13, 2, 0), 3), (at(13, 3, 0), 12), (at(13, 5, 0), 1)];
    s.db(DbEvent::OrdersPerMinute { id: *id, result: Ok(counts) });
    assert!(s.screen().contains("peak 12/min at 13:03"), "{}", s.screen());
    // The order under the cursor (13:06:00, its minute after the last counted) is outside
    // the strip: no bar reversed; on an order of 13:05, that minute's bar is.
    let reversed = |s: &Driver| {
        let t = s.draw();
        let buf = t.backend().buffer();
        let w = buf.area.width as usize;
        let strip = (0..buf.area.height as usize)
            .find(|&y| (0..w).map(|x| buf.content[y * w + x].symbol()).collect::<String>().contains("per min"));
        strip.map(|y| {
            (0..w)
                .filter(|&x| buf.content[y * w + x].modifier.contains(ratatui::style::Modifier::REVERSED))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(reversed(&s), Some(vec![]), "row 0 is at 13:06:00");
    for _ in 0..2 {
        s.press('j');
    }
    assert_eq!(s.current().created_at, at(13, 5, 58));
    assert_eq!(reversed(&s).map(|v| v.len()), Some(1), "the 13:05 bar, and only it");
    // A new filter asks again.
    s.press('/');
    s.typed("GBPUSD");
    let e = s.enter();
    let Some(Command::OrdersPerMinute { query, .. }) =
        e.commands.iter().find(|c| matches!(c, Command::OrdersPerMinute { .. }))
    else {
        panic!("a new filter counts per minute again: {:?}", e.commands)
    };
    assert_eq!(query.symbols, ["GBPUSD"]);
    let e = s.press('m');
    assert!(e.commands.is_empty() && s.app.orders.per_minute.is_none());
    assert!(!s.screen().contains("per min"), "{}", s.screen());
}
