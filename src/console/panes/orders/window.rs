//! The Orders pane's window: a bounded run of rows around the cursor, paged in from the
//! database as the cursor nears an end and trimmed at the far end, so that only a few
//! hundred of possibly millions of orders are ever held.

use super::{MARGIN, OrdersView, PAGE, WINDOW};
use crate::console::protocol::{Command, PageRequest, RequestId};
use crate::core::contract::OrderRow;

impl OrdersView {
    /// Ask for the first page and the count again. A new filter or order forgets the rows at once;
    /// a refresh (`keep_rows`) shows them until the new ones arrive.
    pub(crate) fn restart(&mut self, page_id: RequestId, count_id: RequestId, keep_rows: bool) -> [Command; 2] {
        // A reload after a rollback should not lose the operator's place.
        self.keep = self.current().map(|r| r.id);
        if !keep_rows {
            self.rows.clear();
            self.cursor = 0;
            self.offset = 0;
            self.has_older = false;
            self.has_newer = false;
            self.count = None;
            self.start = None;
            self.scales = [2, 2, 2];
            self.widest = [0; 4];
            self.repeats.clear();
        }
        self.error = None;
        self.started = true;
        self.loading = Some((page_id, PageRequest::First));
        self.marks_from = page_id;
        self.count_request = Some(count_id);
        [
            Command::LoadOrders {
                id: page_id,
                query: self.query.clone(),
                sort: self.sort,
                page: PageRequest::First,
                limit: PAGE,
            },
            Command::CountOrders { id: count_id, query: self.query.clone() },
        ]
    }

    /// Where the cursor is in the whole list, 1-based, when the window's place is known.
    pub(crate) fn position(&self) -> Option<usize> {
        self.start.map(|s| s + self.cursor + 1).filter(|_| !self.rows.is_empty())
    }

    /// Widens the amount columns' precision to what the rows need (cents at least, 8
    /// decimals at most, the book's own): every amount of a column shows as many decimals,
    /// so 1.26500 sits over 1.26573 and the points line up; none is ever cut.
    fn measure(&mut self, rows: &[OrderRow]) {
        let scale = |d: rust_decimal::Decimal| d.normalize().scale().clamp(2, 8);
        for r in rows {
            self.scales[0] = self.scales[0].max(scale(r.quantity));
            if let Some(p) = r.price {
                self.scales[1] = self.scales[1].max(scale(p));
            }
            if let Some(c) = r.total_cost {
                self.scales[2] = self.scales[2].max(scale(c));
            }
        }
    }

    /// The columns' widths grow to the widest text of the rows held, never shrink until
    /// the filter changes.
    fn widen(&mut self) {
        let mut widest = self.widest;
        for r in &self.rows {
            for (w, t) in widest.iter_mut().zip(self.texts(r)) {
                *w = (*w).max(u16::try_from(t.chars().count()).unwrap_or(u16::MAX));
            }
        }
        self.widest = widest;
    }

    /// Moves the cursor by `delta` rows, keeping it on screen (`height` rows visible).
    pub(crate) fn move_cursor(&mut self, delta: isize, height: usize) {
        if self.rows.is_empty() {
            return;
        }
        let last = self.rows.len() - 1;
        self.cursor = self.cursor.saturating_add_signed(delta).min(last);
        self.keep_visible(height);
    }

    /// Puts the cursor on a row.
    pub(crate) fn set_cursor(&mut self, index: usize, height: usize) {
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
    pub(crate) fn page_needed(&self) -> Option<PageRequest> {
        if self.loading.is_some() || self.rows.is_empty() {
            return None;
        }
        if self.has_older && self.cursor + MARGIN >= self.rows.len() {
            return self.rows.back().map(|r| PageRequest::Below(self.sort.key(r)));
        }
        if self.has_newer && self.cursor < MARGIN {
            return self.rows.front().map(|r| PageRequest::Above(self.sort.key(r)));
        }
        None
    }

    /// Takes in a page; keeps the window bounded. Returns false for a stale answer.
    pub(crate) fn receive(
        &mut self,
        id: RequestId,
        page: PageRequest,
        rows: Vec<OrderRow>,
        has_more: bool,
        height: usize,
    ) -> bool {
        if self.loading.as_ref().map(|l| l.0) != Some(id) {
            return false;
        }
        self.loading = None;
        self.error = None;
        self.retry = None;
        self.measure(&rows);
        match page {
            PageRequest::First => {
                self.rows = rows.into();
                self.has_older = has_more;
                self.has_newer = false;
                self.cursor = 0;
                self.offset = 0;
                self.start = Some(0);
                if let Some(i) = self.keep.take().and_then(|keep| self.rows.iter().position(|r| r.id == keep)) {
                    self.cursor = i;
                }
            }
            PageRequest::Last => {
                // The end of the list first from the database; the window runs in the list's
                // order, ending at its true end.
                self.rows = rows.into_iter().rev().collect();
                self.has_newer = has_more;
                self.has_older = false;
                self.cursor = self.rows.len().saturating_sub(1);
                // The screen ends at the end: the cursor on its last row, a screenful above.
                self.offset = (self.cursor + 1).saturating_sub(height.max(1));
                self.start = match self.count {
                    Some((n, false)) => usize::try_from(n).ok().map(|n| n.saturating_sub(self.rows.len())),
                    _ => None,
                };
            }
            PageRequest::Below(_) => {
                self.rows.extend(rows);
                self.has_older = has_more;
                let excess = self.rows.len().saturating_sub(WINDOW);
                if excess > 0 {
                    self.rows.drain(..excess);
                    self.cursor = self.cursor.saturating_sub(excess);
                    self.offset = self.offset.saturating_sub(excess);
                    self.has_newer = true;
                    self.start = self.start.map(|s| s + excess);
                }
            }
            PageRequest::Above(_) => {
                // The page comes closest-first; the window runs top to bottom.
                let n = rows.len();
                for r in rows {
                    self.rows.push_front(r);
                }
                self.cursor += n;
                self.offset += n;
                self.start = self.start.map(|s| s.saturating_sub(n));
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
        self.widen();
        true
    }
}
