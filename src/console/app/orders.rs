//! The Orders pane's state: the filter, a bounded window of rows around the cursor (the
//! database may hold millions; only a few hundred are ever held here), and the selection
//! for a batch.

use std::collections::{BTreeMap, VecDeque};

use ratatui_textarea::TextArea;
use uuid::Uuid;

use crate::console::protocol::{OrderKey, PageRequest, RequestId};
use crate::core::batch::BatchItem;
use crate::core::contract::OrderRow;
use crate::core::orders::{OrderQuery, TimeBound};

/// Rows asked for per page.
pub const PAGE: i64 = 200;
/// Rows held at most; beyond, the far end of the window is dropped.
pub const WINDOW: usize = 600;
/// Load the next page when the cursor comes this close to an end of the window.
const MARGIN: usize = 50;

/// The Orders pane.
#[derive(Default)]
pub struct OrdersView {
    /// The filter in effect.
    pub query: OrderQuery,
    /// Its text, as typed.
    pub filter_text: String,
    /// The filter being edited, if it is.
    pub editing: Option<TextArea<'static>>,
    /// The rows held, newest first.
    pub rows: VecDeque<OrderRow>,
    /// Index of the cursor in `rows`.
    pub cursor: usize,
    /// Index of the first row on screen.
    pub offset: usize,
    /// The page request in flight.
    pub loading: Option<(RequestId, PageRequest)>,
    /// There are older rows than the window holds.
    pub has_older: bool,
    /// There are newer rows than the window holds.
    pub has_newer: bool,
    /// How many orders match, and whether that is a lower bound.
    pub count: Option<(i64, bool)>,
    /// The count request in flight.
    pub count_request: Option<RequestId>,
    /// Orders picked for a batch: order id -> user id.
    pub selected: BTreeMap<Uuid, Uuid>,
    /// The batch is every executed order matching the filter.
    pub all_matching: bool,
    /// Why the last load failed.
    pub error: Option<String>,
    /// A first page has been asked for since the console started.
    pub started: bool,
    /// The order to put the cursor back on when the reloaded first page holds it.
    pub keep: Option<uuid::Uuid>,
    /// When the first page on screen was answered (for "changed since").
    pub loaded_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A filter input with the console's look.
pub fn filter_input(text: &str) -> TextArea<'static> {
    super::incident::text_input(text, "symbol:GBPUSD status:executed from:13:02 to:13:06 user:ID tx:ID")
}

/// Parses the filter line. Terms are `key:value` (symbol, status, from, to, user, tx, id)
/// or bare: a UUID is an order id, a status name a status, anything else a symbol.
pub fn parse_filter(text: &str) -> Result<OrderQuery, String> {
    let mut q = OrderQuery::default();
    for term in text.split_whitespace() {
        let (key, value) = match term.split_once(':') {
            // "13:02" alone is not key:value, but "from:13:02" is.
            Some((k, v)) if k.chars().all(|c| c.is_ascii_alphabetic()) && !k.is_empty() => (k.to_ascii_lowercase(), v),
            _ => (String::new(), term),
        };
        let bad = |what: &str| format!("{what}: {}", crate::core::sanitize::line(term));
        match key.as_str() {
            "symbol" | "sym" | "s" => {
                q.symbol = Some(crate::core::orders::parse_symbol(value).map_err(|_| bad("not a symbol"))?)
            }
            "status" | "st" => q.status = Some(parse_status(value).ok_or_else(|| bad("not a status"))?),
            "from" | "since" => q.from = Some(parse_bound(value).ok_or_else(|| bad("not a time"))?),
            "to" | "until" => q.to = Some(parse_bound(value).ok_or_else(|| bad("not a time"))?),
            "user" | "u" => q.user_id = Some(Uuid::parse_str(value).map_err(|_| bad("not a user id"))?),
            "tx" | "transaction" | "t" => {
                q.transaction_id = Some(Uuid::parse_str(value).map_err(|_| bad("not a transaction id"))?)
            }
            "id" | "order" => q.id = Some(Uuid::parse_str(value).map_err(|_| bad("not an order id"))?),
            "" => {
                if let Ok(id) = Uuid::parse_str(value) {
                    q.id = Some(id);
                } else if let Some(s) = parse_status(value) {
                    q.status = Some(s);
                } else if let Ok(s) = crate::core::orders::parse_symbol(value) {
                    q.symbol = Some(s);
                } else {
                    return Err(bad("unknown filter term"));
                }
            }
            _ => return Err(bad("unknown filter key (symbol, status, from, to, user, tx, id)")),
        }
    }
    if let (Some(TimeBound::At(a)), Some(TimeBound::At(b))) = (q.from, q.to)
        && a >= b
    {
        return Err("from must be before to".into());
    }
    Ok(q)
}

fn parse_status(s: &str) -> Option<String> {
    let s = s.to_ascii_lowercase().replace('-', "_");
    ["pending", "executing", "executed", "failed", "cancelled", "rolled_back"].contains(&s.as_str()).then_some(s)
}

fn parse_bound(s: &str) -> Option<TimeBound> {
    crate::core::orders::parse_time_bound(s).ok()
}

impl OrdersView {
    /// The order under the cursor.
    pub fn current(&self) -> Option<&OrderRow> {
        self.rows.get(self.cursor)
    }

    /// Forget the rows (a new filter, or a refresh) and ask for the first page again.
    pub fn restart(&mut self, page_id: RequestId, count_id: RequestId) -> [crate::console::protocol::Command; 2] {
        // A reload after a rollback should not lose the operator's place.
        self.keep = self.current().map(|r| r.id);
        self.rows.clear();
        self.cursor = 0;
        self.offset = 0;
        self.has_older = false;
        self.has_newer = false;
        self.count = None;
        self.error = None;
        self.started = true;
        self.loading = Some((page_id, PageRequest::First));
        self.count_request = Some(count_id);
        [
            crate::console::protocol::Command::LoadOrders {
                id: page_id,
                query: self.query.clone(),
                page: PageRequest::First,
                limit: PAGE,
            },
            crate::console::protocol::Command::CountOrders { id: count_id, query: self.query.clone() },
        ]
    }

    /// Moves the cursor by `delta` rows, keeping it on screen (`height` rows visible).
    pub fn move_cursor(&mut self, delta: isize, height: usize) {
        if self.rows.is_empty() {
            return;
        }
        let last = self.rows.len() - 1;
        self.cursor = self.cursor.saturating_add_signed(delta).min(last);
        self.keep_visible(height);
    }

    /// Puts the cursor on a row.
    pub fn set_cursor(&mut self, index: usize, height: usize) {
        if !self.rows.is_empty() {
            self.cursor = index.min(self.rows.len() - 1);
            self.keep_visible(height);
        }
    }

    fn keep_visible(&mut self, height: usize) {
        let height = height.max(1);
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + height {
            self.offset = self.cursor + 1 - height;
        }
    }

    /// The next page to load, if the cursor is near an end of the window.
    pub fn page_needed(&self) -> Option<PageRequest> {
        if self.loading.is_some() || self.rows.is_empty() {
            return None;
        }
        if self.has_older && self.cursor + MARGIN >= self.rows.len() {
            return self.rows.back().map(|r| PageRequest::Older(OrderKey::of(r)));
        }
        if self.has_newer && self.cursor < MARGIN {
            return self.rows.front().map(|r| PageRequest::Newer(OrderKey::of(r)));
        }
        None
    }

    /// Takes in a page; keeps the window bounded. Returns false for a stale answer.
    pub fn receive(
        &mut self,
        id: RequestId,
        page: PageRequest,
        rows: Vec<OrderRow>,
        has_more: bool,
        height: usize,
    ) -> bool {
        if self.loading.map(|l| l.0) != Some(id) {
            return false;
        }
        self.loading = None;
        self.error = None;
        match page {
            PageRequest::First => {
                self.rows = rows.into();
                self.has_older = has_more;
                self.has_newer = false;
                self.cursor = 0;
                self.offset = 0;
                if let Some(i) = self.keep.take().and_then(|keep| self.rows.iter().position(|r| r.id == keep)) {
                    self.cursor = i;
                }
            }
            PageRequest::Older(_) => {
                self.rows.extend(rows);
                self.has_older = has_more;
                let excess = self.rows.len().saturating_sub(WINDOW);
                if excess > 0 {
                    self.rows.drain(..excess);
                    self.cursor = self.cursor.saturating_sub(excess);
                    self.offset = self.offset.saturating_sub(excess);
                    self.has_newer = true;
                }
            }
            PageRequest::Newer(_) => {
                // The page comes closest-first; the window is newest-first.
                let n = rows.len();
                for r in rows {
                    self.rows.push_front(r);
                }
                self.cursor += n;
                self.offset += n;
                self.has_newer = has_more;
                let excess = self.rows.len().saturating_sub(WINDOW);
                if excess > 0 {
                    self.rows.truncate(WINDOW);
                    self.has_older = true;
                }
            }
        }
        self.cursor = self.cursor.min(self.rows.len().saturating_sub(1));
        self.keep_visible(height);
        true
    }

    /// Selects or unselects the order under the cursor.
    pub fn toggle_current(&mut self) {
        if let Some(r) = self.rows.get(self.cursor) {
            if self.selected.remove(&r.id).is_none() {
                self.selected.insert(r.id, r.user_id);
            }
            self.all_matching = false;
        }
    }

    /// The explicit selection as batch items.
    pub fn selection(&self) -> Vec<BatchItem> {
        self.selected.iter().map(|(&order_id, &user_id)| BatchItem { order_id, user_id }).collect()
    }

    /// A label for the time window, for titles.
    pub fn describe_filter(&self) -> String {
        if self.filter_text.trim().is_empty() { "all orders, newest first".into() } else { self.filter_text.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    #[test]
    fn filters_parse_keys_and_bare_terms() {
        let q = parse_filter("GBPUSD executed from:13:02 to:13:06").unwrap_or_default();
        assert_eq!(q.symbol.as_deref(), Some("GBPUSD"));
        assert_eq!(q.status.as_deref(), Some("executed"));
        assert_eq!(q.from, NaiveTime::from_hms_opt(13, 2, 0).map(TimeBound::TimeOfDay));
        let id = Uuid::new_v4();
        let q = parse_filter(&format!("user:{id} status:rolled-back")).unwrap_or_default();
        assert_eq!(q.user_id, Some(id));
        assert_eq!(q.status.as_deref(), Some("rolled_back"));
        assert_eq!(parse_filter(&id.to_string()).unwrap_or_default().id, Some(id));
        assert_eq!(parse_filter("  ").unwrap_or_default(), OrderQuery::default());
    }

    #[test]
    fn bad_filters_say_which_term() {
        assert_eq!(parse_filter("colour:red").err().map(|e| e.starts_with("unknown filter key")), Some(true));
        assert!(parse_filter("user:bob").err().unwrap_or_default().contains("user:bob"));
        assert!(parse_filter("from:yesterday").is_err());
        assert!(parse_filter("GBP;USD").is_err());
        assert!(parse_filter("from:2026-11-25T13:06 to:2026-11-25T13:02").is_err());
        // control characters in a bad term are shown, not sent to the terminal
        assert!(parse_filter("x\x1b[2J").err().unwrap_or_default().contains("\\x1b"));
    }
}
