//! Where incidents live: one directory per incident under the user's data directory,
//! holding its journal (the source of truth), the messages copied out and the reports.
//! A `current` file names the incident the console and the commands work on.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::core::error::{Error, Result};
use crate::core::workflow::Level;
use crate::core::workflow::checklist::Checklist;
use crate::core::workflow::incident::{Incident, Step};
use crate::store::journal::{Entry, Journal, Verification};

/// The incidents directory.
#[derive(Debug, Clone)]
pub struct IncidentStore {
    root: PathBuf,
}

/// One line of the incident list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSummary {
    /// Its id.
    pub id: String,
    /// What happened.
    pub title: String,
    /// Its level now.
    pub level: Level,
    /// Its phase now.
    pub phase: crate::core::workflow::Phase,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// Whether it was closed.
    pub closed: bool,
}

/// An incident opened for work: its directory, journal, state and checklist.
#[derive(Debug, Clone)]
pub struct OpenIncident {
    /// Its directory.
    pub dir: PathBuf,
    /// Its journal.
    pub journal: Journal,
    /// Its state, as the journal says.
    pub incident: Incident,
    /// The checklist in effect.
    pub checklist: Checklist,
}

/// The incident a journal's entries describe.
pub fn fold(entries: &[Entry]) -> Result<Incident> {
    Ok(Incident::from_records(entries.iter().map(|e| (&e.event, e.at, e.operator.as_str())))?)
}

impl IncidentStore {
    /// `$INCIDENT_CONSOLE_DATA_DIR/incidents`, else the user's data directory.
    pub fn default_root() -> Result<PathBuf> {
        if let Some(d) = std::env::var_os("INCIDENT_CONSOLE_DATA_DIR") {
            return Ok(PathBuf::from(d).join("incidents"));
        }
        directories::ProjectDirs::from("", "", "incident-console")
            .map(|d| d.data_dir().join("incidents"))
            .ok_or(Error::NoHome("data"))
    }

    /// A store at a directory.
    pub fn new(root: PathBuf) -> Self {
        IncidentStore { root }
    }

    /// The store at the default place.
    pub fn open_default() -> Result<Self> {
        Ok(IncidentStore::new(Self::default_root()?))
    }

    fn current_file(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The id of the current incident, if any.
    pub fn current_id(&self) -> Result<Option<String>> {
        match std::fs::read_to_string(self.current_file()) {
            Ok(s) => {
                let id = s.trim().to_string();
                Ok((!id.is_empty() && valid_id(&id)).then_some(id))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::file("read", self.current_file(), e)),
        }
    }

    fn set_current(&self, id: &str) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::file("create", &self.root, e))?;
        // A temporary file of its own: two processes switching at once must not share one.
        let tmp = self.root.join(format!(".current.{}.{}.tmp", std::process::id(), uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, format!("{id}\n")).map_err(|e| Error::file("write", &tmp, e))?;
        std::fs::rename(&tmp, self.current_file()).map_err(|e| Error::file("make current", self.current_file(), e))
    }

    /// Starts an incident under a new id (see [`new_id`]) and makes it current.
    pub fn create(
        &self,
        title: &str,
        level: Level,
        reason: &str,
        operator: &str,
        now: DateTime<Utc>,
        checklist: Checklist,
    ) -> Result<OpenIncident> {
        let mut tries = 1;
        loop {
            match self.create_with_id(&new_id(now), title, level, reason, operator, now, checklist.clone()) {
                // Taken: another random part (it takes billions of incidents in a minute).
                Err(Error::File { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists && tries < 10 => {
                    tries += 1
                }
                other => return other,
            }
        }
    }

    /// Starts an incident under the given id and makes it current; a file error of kind
    /// `AlreadyExists` when the id is taken. For ids made elsewhere (and tests of the journal's bytes): new
    /// incidents get theirs from [`IncidentStore::create`].
    #[allow(clippy::too_many_arguments)]
    pub fn create_with_id(
        &self,
        id: &str,
        title: &str,
        level: Level,
        reason: &str,
        operator: &str,
        now: DateTime<Utc>,
        checklist: Checklist,
    ) -> Result<OpenIncident> {
        if !valid_id(id) {
            return Err(Error::BadInput(format!("not an incident id: {}", crate::core::sanitize::line(id))));
        }
        // Validate before anything is created.
        let opened = Incident::open_record(id, title, level, reason)?;
        std::fs::create_dir_all(&self.root).map_err(|e| Error::file("create", &self.root, e))?;
        // Creating the directory claims the id: two consoles cannot both get it.
        let dir = self.root.join(id);
        std::fs::create_dir(&dir).map_err(|e| Error::file("create", &dir, e))?;
        let journal = Journal::open(dir.join("journal.jsonl"))?;
        journal.append(operator, &opened, now)?;
        self.set_current(id)?;
        let incident = fold(&journal.entries()?)?;
        Ok(OpenIncident { dir, journal, incident, checklist })
    }

    /// Opens an incident by id.
    pub fn open(&self, id: &str, checklist: Checklist) -> Result<OpenIncident> {
        if !valid_id(id) {
            return Err(Error::BadInput(format!("not an incident id: {}", crate::core::sanitize::line(id))));
        }
        let dir = self.root.join(id);
        let path = dir.join("journal.jsonl");
        if !path.is_file() {
            return Err(Error::BadInput(format!("no incident {id} in {}", self.root.display())));
        }
        let journal = Journal::open(path)?;
        let incident = fold(&journal.entries()?)?;
        Ok(OpenIncident { dir, journal, incident, checklist })
    }

    /// Opens the current incident, if there is one.
    pub fn open_current(&self, checklist: Checklist) -> Result<Option<OpenIncident>> {
        match self.current_id()? {
            Some(id) => self.open(&id, checklist).map(Some),
            None => Ok(None),
        }
    }

    /// Makes an existing incident current.
    pub fn switch(&self, id: &str) -> Result<()> {
        if !valid_id(id) || !self.root.join(id).join("journal.jsonl").is_file() {
            return Err(Error::BadInput(format!("no incident {}", crate::core::sanitize::line(id))));
        }
        self.set_current(id)
    }

    /// Every incident, newest first.
    pub fn list(&self) -> Result<Vec<IncidentSummary>> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(&self.root) else { return Ok(out) };
        for e in dir.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !valid_id(&id) {
                continue;
            }
            if let Ok(j) = Journal::open(e.path().join("journal.jsonl"))
                && let Ok(entries) = j.entries()
                && let Ok(i) = fold(&entries)
            {
                out.push(IncidentSummary {
                    id,
                    title: i.title,
                    level: i.level,
                    phase: i.phase,
                    opened_at: i.opened_at,
                    closed: i.closed.is_some(),
                });
            }
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.opened_at));
        Ok(out)
    }
}

/// A new incident id: `INC-<date>-<minute>-<8 random characters>` (lowercase letters and
/// digits without the look-alikes). The time says when; the random part makes the id
/// impossible to guess, so nobody can copy entries under an incident's id before the
/// incident exists and have its real copy refused as a conflict. Ids of the older form
/// (`INC-<date>-<minute>`, `…-2`) stay valid.
pub fn new_id(now: DateTime<Utc>) -> String {
    const ALPHABET: &[u8; 30] = b"abcdefghjkmnpqrstvwxyz23456789";
    // A v4 uuid holds 122 random bits from the operating system; 8 base-30 digits of it
    // are about 39 bits: guessing one minute's id takes some 10^11 tries.
    let mut bits = uuid::Uuid::new_v4().as_u128();
    let random: String = (0..8)
        .map(|_| {
            let digit = (bits % 30) as usize;
            bits /= 30;
            char::from(ALPHABET[digit])
        })
        .collect();
    format!("INC-{}-{random}", now.format("%Y%m%d-%H%M"))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !id.starts_with('-')
}

impl OpenIncident {
    /// Does a step: checks it against the latest state, appends its records, and
    /// returns them. A refused step is `BadInput` with the reason, and writes nothing.
    pub fn act(&mut self, step: Step, operator: &str, now: DateTime<Utc>) -> Result<Vec<Entry>> {
        let current = self.journal.entries()?;
        self.act_on(current, step, operator, now, u64::MAX)
    }

    /// Like [`OpenIncident::act`], and also returns the entries past `after` that another
    /// process appended before this step: everything a reader at `after` has not seen,
    /// from the one read the step needs anyway. Because those are shown as they are, the
    /// whole chain is checked first, and must still hold the entry `after` with the hash
    /// `after_hash` (when known): a journal forged, truncated or replaced underneath is
    /// refused, nothing appended.
    pub fn act_after(
        &mut self,
        step: Step,
        operator: &str,
        now: DateTime<Utc>,
        after: u64,
        after_hash: Option<&str>,
    ) -> Result<Vec<Entry>> {
        let current = self.journal.checked_entries()?;
        let held = after.checked_sub(1).and_then(|i| usize::try_from(i).ok()).and_then(|i| current.get(i));
        let follows = match (after, held) {
            (0, _) => true,
            (_, Some(e)) => e.seq == after && after_hash.is_none_or(|h| e.hash == h),
            (_, None) => false,
        };
        if !follows {
            return Err(Error::CheckFailed(format!(
                "the journal no longer holds the {after} entries read before: it was truncated or replaced; \
                 run `incident verify`; nothing was appended"
            )));
        }
        self.act_on(current, step, operator, now, after)
    }

    fn act_on(
        &mut self,
        current: Vec<Entry>,
        step: Step,
        operator: &str,
        now: DateTime<Utc>,
        after: u64,
    ) -> Result<Vec<Entry>> {
        self.incident = fold(&current)?;
        let records = self.incident.decide(step, &self.checklist)?;
        let mut seen: Vec<Entry> = current.into_iter().filter(|e| e.seq > after).collect();
        for event in records {
            let e = self.journal.append(operator, &event, now)?;
            self.incident.apply(&e.event, e.at, &e.operator);
            seen.push(e);
        }
        Ok(seen)
    }

    /// Every entry of the journal.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        self.journal.entries()
    }

    /// Recomputes the journal's chain.
    pub fn verify(&self) -> Result<Verification> {
        self.journal.verify()
    }

    /// Where copied messages are written.
    pub fn messages_dir(&self) -> PathBuf {
        self.dir.join("messages")
    }

    /// Where reports are written.
    pub fn reports_dir(&self) -> PathBuf {
        self.dir.join("reports")
    }

    /// The incident's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::workflow::Phase;

    use crate::core::workflow::incident::Refusal;

    #[test]
    fn create_act_reopen_and_verify() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = IncidentStore::new(dir.path().join("incidents"));
        assert_eq!(store.current_id().ok().flatten(), None);
        let now = Utc::now();
        let mut inc = store
            .create("Duplicates", Level::Critical, "burst", "alice", now, Checklist::shipped())
            .unwrap_or_else(|e| panic!("{e}"));
        let id = inc.incident.id.clone();
        assert_eq!(store.current_id().ok().flatten().as_deref(), Some(id.as_str()));
        inc.act(Step::Advance { to: Phase::Response }, "alice", now).unwrap_or_else(|e| panic!("{e}"));
        let refused = inc.act(Step::Advance { to: Phase::Assessment }, "alice", now);
        assert!(matches!(refused, Err(Error::Refused(Refusal::PhaseBackwards(Phase::Response)))), "{refused:?}");
        assert_eq!(refused.err().map(|e| e.exit_code()), Some(crate::core::error::EXIT_BAD_INPUT));
        let again = store.open_current(Checklist::shipped()).ok().flatten().unwrap_or_else(|| panic!("current"));
        assert_eq!(again.incident.phase, Phase::Response);
        assert!(matches!(again.verify(), Ok(Verification::Intact { .. })));
        // A second incident in the same minute gets its own id.
        let second =
            store.create("Other", Level::Minor, "", "bob", now, Checklist::shipped()).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(second.incident.id, id);
        assert_eq!(store.list().unwrap_or_default().len(), 2);
        assert!(store.open("../etc", Checklist::shipped()).is_err());
    }
}
