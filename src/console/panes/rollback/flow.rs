//! The rollback flow's state: what is rolled back, where it is (pre-check or batch preview,
//! reason, confirmation, run, result) and what came back. No database transaction is open
//! while a person reads or types: every step is its own call.

use chrono::{DateTime, Utc};
use ratatui_textarea::TextArea;
use uuid::Uuid;

use crate::console::protocol::{BatchTarget, RequestId};
use crate::console::widgets::short;
use crate::core::batch::{BatchItem, BatchRun, Proof, Summary};
use crate::core::contract::{BatchPreview, OrderRow, RollbackAndPostcheck};

/// The last batch, kept on the Rollback pane after its flow is closed: what it did and its
/// proof (post-check and the audit of the accounts it touched) once the worker has it.
#[derive(Debug, Clone, PartialEq)]
pub struct LastBatch {
    /// When it ended.
    pub at: DateTime<Utc>,
    /// What it did.
    pub summary: Summary,
    /// Its proof: none while it runs, or why it could not run.
    pub proof: Option<Result<Proof, String>>,
}

/// What is being rolled back.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowTarget {
    /// One order.
    Single(OrderRow),
    /// The order's transaction group.
    Group(OrderRow),
    /// Several orders, one transaction each.
    Batch(BatchTarget),
}

impl FlowTarget {
    /// Headline for the pane.
    pub(crate) fn title(&self) -> String {
        match self {
            FlowTarget::Single(o) => format!("order {} ({} {} {})", short(o.id), o.side, o.symbol, o.status),
            FlowTarget::Group(o) => format!(
                "transaction group {} of order {}",
                o.transaction_id.map(short).unwrap_or_else(|| "-".into()),
                short(o.id)
            ),
            FlowTarget::Batch(BatchTarget::Orders(items)) => format!("batch of {} selected order(s)", items.len()),
            FlowTarget::Batch(BatchTarget::Matching(_)) => "batch: every executed order matching the filter".into(),
        }
    }
}

/// Where the flow is.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// Waiting for the pre-check (single order or group).
    Prechecking { id: RequestId },
    /// The pre-check did not pass: nothing can be done.
    PrecheckFailed,
    /// Waiting for the batch preview.
    Previewing { id: RequestId },
    /// Typing the reason.
    Reason,
    /// Reading what will change; maybe typing the word shown.
    Confirm,
    /// Confirmed: the intent is being written to the journal, and `command` goes to the
    /// worker only once it is there (the loop answers before it reads another key).
    Journaling { id: RequestId, command: Box<crate::console::protocol::Command> },
    /// Running.
    Running { id: RequestId, since: DateTime<Utc> },
    /// Asked to stop; waiting for the worker to say it did.
    Cancelling { id: RequestId, since: DateTime<Utc> },
    /// Finished (rolled back, or refused, or a batch ended).
    Done { ok: bool, message: String, elapsed_ms: i64 },
    /// Cancelled before it changed anything, or part way through a batch.
    Cancelled { message: String },
    /// An error.
    Failed { error: String },
}

/// A rollback being prepared or run.
pub struct Flow {
    /// What.
    pub target: FlowTarget,
    /// Where it is.
    pub stage: Stage,
    /// The reason input.
    pub reason: TextArea<'static>,
    /// The confirmation input (when a word must be typed).
    pub confirm: TextArea<'static>,
    /// The word to type, if one is required.
    pub confirm_word: Option<String>,
    /// Order and user the pre-check was for, with its baseline.
    pub baseline: Option<(Uuid, Uuid, serde_json::Value)>,
    /// What a batch will do, and its orders.
    pub preview: Option<(BatchPreview, Vec<BatchItem>)>,
    /// Progress of a batch.
    pub run: BatchRun,
    /// Result of a single or group rollback.
    pub result: Option<RollbackAndPostcheck>,
    /// Summary of a batch.
    pub summary: Option<Summary>,
    /// A hint shown under the input (reason missing, word wrong).
    pub hint: Option<String>,
    /// The rollback's operation id: its intent's and its outcome's in the journal, its audit
    /// rows' `batch_id` (a batch's id). One per flow: trying again is a new flow.
    pub operation: Uuid,
}

fn input(placeholder: &str) -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_cursor_line_style(ratatui::style::Style::default());
    t.set_placeholder_text(placeholder);
    t
}

impl Flow {
    /// A new flow at its first stage; `accept` is the key that confirms (the confirmation
    /// input says it).
    pub(crate) fn new(target: FlowTarget, stage: Stage, accept: &str) -> Self {
        Flow {
            target,
            stage,
            reason: input("why: e.g. duplicate executions from deploy 4711"),
            confirm: input(&format!("type the word shown, then {accept}")),
            confirm_word: None,
            baseline: None,
            preview: None,
            run: BatchRun::default(),
            result: None,
            summary: None,
            hint: None,
            operation: Uuid::new_v4(),
        }
    }

    /// True while something runs on the database for this flow.
    pub(crate) fn is_running(&self) -> bool {
        matches!(
            self.stage,
            Stage::Prechecking { .. }
                | Stage::Previewing { .. }
                | Stage::Journaling { .. }
                | Stage::Running { .. }
                | Stage::Cancelling { .. }
        )
    }

    /// True while a rollback is changing money (quitting asks first).
    pub(crate) fn is_changing_money(&self) -> bool {
        matches!(self.stage, Stage::Running { .. } | Stage::Cancelling { .. })
    }

    /// True when the flow has ended and can be closed.
    pub(crate) fn is_finished(&self) -> bool {
        matches!(
            self.stage,
            Stage::Done { .. } | Stage::Cancelled { .. } | Stage::Failed { .. } | Stage::PrecheckFailed
        )
    }

    /// The reason typed (one line; newlines from a paste are spaces).
    pub fn reason_text(&self) -> String {
        self.reason.lines().join(" ").trim().to_string()
    }

    /// The request id the flow waits on.
    pub(crate) fn request(&self) -> Option<RequestId> {
        match self.stage {
            Stage::Prechecking { id }
            | Stage::Previewing { id }
            | Stage::Journaling { id, .. }
            | Stage::Running { id, .. }
            | Stage::Cancelling { id, .. } => Some(id),
            _ => None,
        }
    }

    /// Whether this is a batch.
    pub(crate) fn is_batch(&self) -> bool {
        matches!(self.target, FlowTarget::Batch(_))
    }
}
