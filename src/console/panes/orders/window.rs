//! The Orders pane's window: a bounded run of rows around the cursor, paged in from the
//! database as the cursor nears an end and trimmed at the far end, so that only a few
//! hundred of possibly millions of orders are ever held.

use super::{MARGIN, OrdersView, PAGE, WINDOW};
use crate::console::protocol::{Command, OrderKey, PageRequest, RequestId};
use crate::core::contract::OrderRow;

impl OrdersView {
    /// Forget the rows (a new filter, or a refresh) and ask for the first page again.
    pub(crate) fn restart(&mut self, page_id: RequestId, count_id: RequestId) -> [Command; 2] {
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
            Command::LoadOrders { id: page_id, query: self.query.clone(), page: PageRequest::First, limit: PAGE },
            Command::CountOrders { id: count_id, query: self.query.clone() },
        ]
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
            return self.rows.back().map(|r| PageRequest::Older(OrderKey::of(r)));
        }
        if self.has_newer && self.cursor < MARGIN {
            return self.rows.front().map(|r| PageRequest::Newer(OrderKey::of(r)));
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
}
