//! Evidence packs: one self-contained JSON file an auditor can verify with no
//! database — every exception with its decisions (the snapshot each approver saw, the
//! governance hash and policy version) and reminders, the audit chain over the range
//! that concerns them with each entry's exact hashed text, and the governance files
//! the decisions name.
//!
//! Layout (one record per line, so that packs stream out and diff well), ending with
//! a seal: the SHA-256 of every byte before the seal's line.
//!
//! ```text
//! {"manifest":{…},
//! "governance":[{…},…],
//! "exceptions":[
//! {…},
//! …],
//! "audit":[
//! {…},
//! …]}
//! {"seal":"…"}
//! ```
//!
//! The hashes inside a pack tie its content to the audit chain; the seal makes the
//! file itself exact, so that no byte of it — a space, a field the chain does not
//! cover such as `exported_at` — can change and the pack still verify.
//!
//! [`verify`] checks, in order, and names the first thing that does not hold: the
//! format; each governance file's text against its hash; the chain (consecutive
//! sequence numbers from the manifest's `from_seq`, each `prev_hash` the previous
//! entry's hash, each hash `SHA-256(prev_hash ‖ entry)`, ending at the manifest's
//! head); then each exception against the entries that made it (its state's digest is
//! the one its last change recorded; each decision is the vote and snapshot that
//! change recorded, under a governance file the pack includes; each reminder marked
//! sent was sent by a recorded digest); last, the seal.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ExportError;
use crate::domain::{ExceptionRequest, RequestId, Timestamp};
use crate::store::{
    AuditEntry, ChainedEntry, DecisionRecord, GENESIS, GovernanceFile, Store, chain_hash,
};

pub const FORMAT: &str = "waiver-evidence-pack";
/// 2: sealed (version 1 packs had no seal).
pub const VERSION: u32 = 2;

/// What the pack holds, written first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub exported_at: Timestamp,
    /// Only exceptions changed at or after this instant (`None`: all).
    pub since: Option<Timestamp>,
    pub exceptions: u64,
    pub chain: Chain,
}

/// The stretch of the audit chain the pack includes: every entry from `from_seq` to
/// `head_seq`, chained onto `prev_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub from_seq: u64,
    pub prev_hash: String,
    pub head_seq: u64,
    pub head_hash: String,
}

/// One exception as it stood at export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exception {
    pub reference: String,
    pub request: ExceptionRequest,
    pub decisions: Vec<DecisionRecord>,
    pub reminders: Vec<Reminder>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reminder {
    pub key: String,
    pub target: String,
    pub status: String,
    pub due_at: Timestamp,
    pub sent_at: Option<Timestamp>,
    pub summary: String,
}

/// A whole pack, as read back.
#[derive(Deserialize)]
struct Pack {
    manifest: Manifest,
    governance: Vec<GovernanceFile>,
    exceptions: Vec<Exception>,
    audit: Vec<ChainedEntry>,
}

/// Writes a pack of every exception changed at or after `since`, as of one
/// consistent instant of the database; returns its manifest. `current` (the file the
/// caller runs under) is kept first, so that the decisions made under it can be
/// checked against it.
pub async fn write(
    store: &Store,
    current: &crate::governance::Governance,
    since: Option<Timestamp>,
    now: Timestamp,
    out: &mut (dyn Write + Send),
) -> Result<Manifest, ExportError> {
    store
        .remember_governance(current.hash.as_str(), &current.source, now)
        .await?;
    let mut view = store.frozen().await?;
    let (head_seq, head_hash) = view.audit_head().await?;
    let ids = view.changed_since(since).await?;
    let from_seq = match since {
        None => 1,
        Some(_) => view.first_entry_of(&ids).await?.unwrap_or(head_seq + 1),
    };
    let prev_hash = if from_seq <= 1 {
        GENESIS.to_string()
    } else {
        let mut hash = None;
        view.audit_range(from_seq - 1, from_seq - 1, |e| {
            hash = Some(e.hash);
            Ok::<(), ()>(())
        })
        .await?
        .ok();
        hash.ok_or_else(|| {
            crate::store::StoreError::Corrupt(format!("audit entry {} is missing", from_seq - 1))
        })?
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: now,
        since,
        exceptions: ids.len() as u64,
        chain: Chain {
            from_seq,
            prev_hash,
            head_seq,
            head_hash,
        },
    };
    let mut sealed = Sealing {
        out,
        hash: Sha256::new(),
    };
    let out: &mut (dyn Write + Send) = &mut sealed;
    let line = |out: &mut (dyn Write + Send), v: &dyn erased::Json| -> std::io::Result<()> {
        v.write(out)
    };
    out.write_all(b"{\"manifest\":")?;
    line(out, &manifest)?;
    out.write_all(b",\n\"governance\":")?;
    line(out, &view.governance_files().await?)?;
    out.write_all(b",\n\"exceptions\":[")?;
    let mut first = true;
    for chunk in ids.chunks(500) {
        let requests = view.requests(chunk).await?;
        let mut decisions: HashMap<RequestId, Vec<DecisionRecord>> = HashMap::new();
        for (id, d) in view.decisions(chunk).await? {
            decisions.entry(id).or_default().push(d);
        }
        let mut reminders: HashMap<RequestId, Vec<Reminder>> = HashMap::new();
        for r in view.reminders(chunk).await? {
            if let Some(id) = r.request {
                reminders.entry(id).or_default().push(Reminder {
                    key: r.key,
                    target: r.target,
                    status: r.status.as_str().into(),
                    due_at: r.due_at,
                    sent_at: r.sent_at,
                    summary: r.summary,
                });
            }
        }
        for request in requests {
            let id = request.id;
            let record = Exception {
                reference: request.reference(),
                decisions: decisions.remove(&id).unwrap_or_default(),
                reminders: reminders.remove(&id).unwrap_or_default(),
                request,
            };
            out.write_all(if first { b"\n" } else { b",\n" })?;
            first = false;
            line(out, &record)?;
        }
    }
    out.write_all(b"],\n\"audit\":[")?;
    let mut first = true;
    view.audit_range(from_seq, head_seq, |e| {
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        line(out, &e)
    })
    .await??;
    out.write_all(b"]}\n")?;
    let content = hex::encode(sealed.hash.finalize_reset());
    sealed.out.write_all(seal_line(&content).as_bytes())?;
    sealed.out.flush()?;
    Ok(manifest)
}

/// Writes through, hashing what it writes.
struct Sealing<'a> {
    out: &'a mut (dyn Write + Send),
    hash: Sha256,
}

impl Write for Sealing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Reads through line by line, hashing each line as it is handed on: after the pack's
/// object is parsed (which ends on its last line), the hash covers exactly the lines
/// before the seal's.
struct Unsealing<R> {
    input: R,
    line: Vec<u8>,
    at: usize,
    hash: Sha256,
}

impl<R: BufRead> Unsealing<R> {
    /// The next line, unhashed (the seal's); `None` at the end of the input.
    fn next_line(&mut self, limit: usize) -> std::io::Result<Option<Vec<u8>>> {
        let mut rest = self.line.split_off(self.at.min(self.line.len()));
        self.line.clear();
        self.at = 0;
        if rest.iter().all(u8::is_ascii_whitespace) {
            rest.clear();
            let mut limited = std::io::Read::take(&mut self.input, limit as u64);
            limited.read_until(b'\n', &mut rest)?;
        }
        Ok((!rest.is_empty()).then_some(rest))
    }
}

impl<R: BufRead> std::io::Read for Unsealing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.line.len() {
            self.line.clear();
            self.at = 0;
            self.input.read_until(b'\n', &mut self.line)?;
            self.hash.update(&self.line);
        }
        let n = buf.len().min(self.line.len() - self.at);
        buf[..n].copy_from_slice(&self.line[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Compact JSON of anything serialisable, behind one `dyn` type.
mod erased {
    pub trait Json {
        fn write(&self, out: &mut dyn std::io::Write) -> std::io::Result<()>;
    }
    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
            serde_json::to_writer(out, self).map_err(std::io::Error::from)
        }
    }
}

/// A pack that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub exceptions: u64,
    pub decisions: u64,
    pub entries: u64,
    pub governance_files: u64,
    pub from_seq: u64,
    pub head_seq: u64,
    pub head_hash: String,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "evidence pack verified: {} exception(s), {} decision(s), {} audit entries ({}..{}, head {}), {} governance file(s)",
            self.exceptions,
            self.decisions,
            self.entries,
            self.from_seq,
            self.head_seq,
            self.head_hash,
            self.governance_files
        )
    }
}

/// The first thing in a pack that does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the evidence pack does not verify: {0}")]
pub struct Broken(pub String);

fn broken<T>(what: impl Into<String>) -> Result<T, Broken> {
    Err(Broken(what.into()))
}

/// What the chain says about one request.
#[derive(Default)]
struct Trail {
    /// The last change: (seq, revision, digest it recorded).
    last: Option<(u64, u64, Option<String>)>,
    /// The votes its changes recorded, with the snapshot each approver saw, in order.
    votes: Vec<(u64, Value, Value)>,
}

/// Verifies a pack read from `input` (see the module's documentation).
pub fn verify(input: impl BufRead) -> Result<Report, Broken> {
    let mut reader = Unsealing {
        input,
        line: Vec::new(),
        at: 0,
        hash: Sha256::new(),
    };
    let parsed = {
        let mut de = serde_json::Deserializer::from_reader(&mut reader);
        <Pack as Deserialize>::deserialize(&mut de)
    };
    let pack = match parsed {
        Ok(p) => p,
        Err(e) => return broken(format!("it is not a readable evidence pack: {e}")),
    };
    let content = hex::encode(reader.hash.clone().finalize());
    let seal = reader.next_line(200).ok().flatten();
    let ended = matches!(reader.next_line(1), Ok(None));
    let report = check(&pack)?;
    let Some(seal) = seal else {
        return broken("it carries no seal after the pack (the file was cut short or altered)");
    };
    if !ended {
        return broken("something follows its seal (the file was altered)");
    }
    if seal != seal_line(&content).as_bytes() {
        return broken(
            "its seal does not match its content: the file was changed after it was written",
        );
    }
    Ok(report)
}

/// The last line of a pack whose content hashes to `content`.
fn seal_line(content: &str) -> String {
    format!("{{\"seal\":\"{content}\"}}\n")
}

/// What a parsed pack says, checked against itself.
fn check(pack: &Pack) -> Result<Report, Broken> {
    let m = &pack.manifest;
    if m.format != FORMAT || m.version != VERSION {
        return broken(format!(
            "its format is {:?} version {}, not {FORMAT:?} version {VERSION}",
            m.format, m.version
        ));
    }

    // Governance files: each text is what its hash says.
    let mut governance = HashSet::new();
    for g in &pack.governance {
        let hash = hex::encode(Sha256::digest(g.source.as_bytes()));
        if hash != g.hash {
            return broken(format!(
                "governance file {}: its text does not match its hash (it was altered)",
                g.hash
            ));
        }
        governance.insert(g.hash.as_str());
    }

    // The chain, and what it says about each request.
    let mut trails: HashMap<i64, Trail> = HashMap::new();
    let mut reminded: HashMap<String, (Timestamp, String)> = HashMap::new();
    // Requests changed at or after `since`: each must be in the pack.
    let mut changed: Vec<(i64, u64)> = Vec::new();
    let mut prev = m.chain.prev_hash.clone();
    if m.chain.from_seq == 0 {
        return broken("the chain starts at entry 0; entries are numbered from 1");
    }
    if m.chain.from_seq == 1 && prev != GENESIS {
        return broken("the chain starts at entry 1 but not from the genesis hash");
    }
    if m.since.is_none() && m.chain.from_seq > 1 {
        return broken(format!(
            "the manifest says the pack holds every exception, but its chain starts at entry {}",
            m.chain.from_seq
        ));
    }
    let mut expected = m.chain.from_seq;
    for e in &pack.audit {
        let at = |what: String| broken(format!("audit entry {}: {what}", e.seq));
        if e.seq != expected {
            return broken(format!(
                "audit entry {expected} is missing (the next entry in the pack is {})",
                e.seq
            ));
        }
        if e.prev_hash != prev {
            return at("its prev_hash is not the previous entry's hash".into());
        }
        if chain_hash(&e.prev_hash, &e.entry) != e.hash {
            return at("its content does not match its hash (it was altered)".into());
        }
        let entry: AuditEntry = match serde_json::from_str(&e.entry) {
            Ok(entry) => entry,
            Err(err) => return at(format!("it is not a readable entry: {err}")),
        };
        if entry.seq != e.seq {
            return at(format!("it says it is entry {}", entry.seq));
        }
        if let (Some(id), crate::store::Outcome::Applied) = (entry.request, entry.outcome)
            && m.since.is_none_or(|since| entry.at >= since)
        {
            changed.push((id.get(), entry.seq));
        }
        record(&entry, &mut trails, &mut reminded);
        prev = e.hash.clone();
        expected += 1;
    }
    let last = expected - 1;
    if last != m.chain.head_seq || prev != m.chain.head_hash {
        return broken(format!(
            "the chain ends at entry {last}, not at the head the manifest names (entry {}, {})",
            m.chain.head_seq, m.chain.head_hash
        ));
    }

    // Each exception against the entries that made it.
    if pack.exceptions.len() as u64 != m.exceptions {
        return broken(format!(
            "the manifest names {} exception(s) but the pack holds {}",
            m.exceptions,
            pack.exceptions.len()
        ));
    }
    let included: HashSet<i64> = pack.exceptions.iter().map(|x| x.request.id.get()).collect();
    if let Some((id, seq)) = changed.iter().find(|(id, _)| !included.contains(id)) {
        return broken(format!(
            "{} was changed by audit entry {seq} but is not in the pack (it was left out)",
            crate::domain::RequestId::new(*id)
        ));
    }
    let mut seen = HashSet::new();
    let mut decisions = 0u64;
    for x in &pack.exceptions {
        let r = &x.request;
        let reference = r.reference();
        if x.reference != reference {
            return broken(format!("{}: the record is of {reference}", x.reference));
        }
        if !seen.insert(r.id) {
            return broken(format!("{reference} is in the pack twice"));
        }
        let no_trail = Trail::default();
        let trail = trails.get(&r.id.get()).unwrap_or(&no_trail);
        let Some((seq, revision, digest)) = &trail.last else {
            return broken(format!(
                "{reference}: no audit entry in the pack records a change to it"
            ));
        };
        if *revision != r.revision {
            return broken(format!(
                "{reference}: the record is at revision {} but its last change (audit entry {seq}) made revision {revision}",
                r.revision
            ));
        }
        match digest {
            Some(d) if *d != crate::store::digest(r) => {
                return broken(format!(
                    "{reference}: the record is not the state its last change (audit entry {seq}) recorded (it was altered)"
                ));
            }
            _ => {}
        }
        if x.decisions.len() != trail.votes.len() {
            return broken(format!(
                "{reference}: {} decision(s) in the record, {} in the audit trail",
                x.decisions.len(),
                trail.votes.len()
            ));
        }
        for (d, (seq, vote, snapshot)) in x.decisions.iter().zip(&trail.votes) {
            let same_vote = serde_json::to_value(&d.vote).ok().as_ref() == Some(vote);
            if !same_vote || d.snapshot != *snapshot {
                return broken(format!(
                    "{reference}: the decision by {} is not the one audit entry {seq} recorded (it was altered)",
                    d.vote.approver
                ));
            }
            if snapshot["governance_hash"].as_str() != Some(d.governance_hash.as_str())
                || snapshot["content"]["policy_version"].as_str() != Some(d.policy_version.as_str())
            {
                return broken(format!(
                    "{reference}: the decision by {} names another governance hash or policy version than the snapshot its approver saw",
                    d.vote.approver
                ));
            }
            if !governance.contains(d.governance_hash.as_str()) {
                return broken(format!(
                    "{reference}: the decision by {} was made under governance file {}, which the pack does not include",
                    d.vote.approver, d.governance_hash
                ));
            }
        }
        // A reminder's digest entry comes after its request's first entry, so it is
        // in the pack whenever its request is.
        for rem in &x.reminders {
            let sent = reminded.get(&rem.key);
            if (rem.status == "sent") != sent.is_some() {
                return broken(format!(
                    "{reference}: reminder {} is marked {} but the audit trail says it was {}sent",
                    rem.key,
                    rem.status,
                    if sent.is_some() { "" } else { "not " }
                ));
            }
            if let Some((at, to)) = sent
                && (rem.sent_at != Some(*at) || rem.target != *to)
            {
                return broken(format!(
                    "{reference}: reminder {} says it was sent to {} at {}, the audit trail to {to} at {at}",
                    rem.key,
                    rem.target,
                    rem.sent_at.map(|t| t.to_string()).unwrap_or_default()
                ));
            }
        }
        decisions += x.decisions.len() as u64;
    }
    Ok(Report {
        exceptions: pack.exceptions.len() as u64,
        decisions,
        entries: pack.audit.len() as u64,
        governance_files: pack.governance.len() as u64,
        from_seq: m.chain.from_seq,
        head_seq: m.chain.head_seq,
        head_hash: m.chain.head_hash.clone(),
    })
}

/// Notes what one entry says about requests and reminders.
fn record(
    entry: &AuditEntry,
    trails: &mut HashMap<i64, Trail>,
    reminded: &mut HashMap<String, (Timestamp, String)>,
) {
    let d = &entry.details;
    if entry.action == "remind" {
        let to = d["to"].as_str().unwrap_or_default().to_string();
        for key in d["reminders"].as_array().into_iter().flatten() {
            if let Some(k) = key.as_str() {
                reminded.insert(k.to_string(), (entry.at, to.clone()));
            }
        }
        return;
    }
    let (Some(id), crate::store::Outcome::Applied) = (entry.request, entry.outcome) else {
        return;
    };
    let Some(revision) = d["revision"].as_u64() else {
        return;
    };
    let trail = trails.entry(id.get()).or_default();
    trail.last = Some((
        entry.seq,
        revision,
        d["digest"].as_str().map(str::to_string),
    ));
    let event = &d["event"];
    if event.get("vote").is_some() && event.get("snapshot").is_some() {
        trail
            .votes
            .push((entry.seq, event["vote"].clone(), event["snapshot"].clone()));
    }
}
