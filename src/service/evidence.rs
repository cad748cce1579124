//! Evidence packs asked for in chat (`export`): the person gets, in a direct message,
//! a signed link that downloads a pack made at that moment. The link names them and
//! expires; it is checked by its MAC alone, so any replica serves it.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;

use super::{Service, ServiceError};
use crate::domain::Timestamp;
use crate::governance::PersonId;
use crate::message::{Message, Outgoing, Platform, Section};
use crate::store::{AuditRecord, Outcome};

/// Where packs are downloaded: `/evidence/{token}`.
pub const EVIDENCE_ROUTE: &str = "/evidence";

/// How long a link works.
const VALID_SECS: i64 = 15 * 60;

pub(super) struct Links {
    base: String,
    key: Vec<u8>,
}

impl Links {
    pub(super) fn new(base: &str, secret: &str) -> Self {
        // A key of its own, so a link's MAC is never a MAC the platform would accept.
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(b"waiver evidence links");
        Self {
            base: base.trim_end_matches('/').to_string(),
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, payload: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(payload.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn token(&self, person: &PersonId, since: Option<Timestamp>, expires: i64) -> String {
        let payload = format!(
            "{expires}|{}|{person}",
            since.map(|t| t.millis().to_string()).unwrap_or_default()
        );
        format!("{}.{}", hex::encode(&payload), self.mac(&payload))
    }

    /// The person and `since` a token names, if it is ours and unexpired at `now`.
    fn check(&self, token: &str, now: i64) -> Option<(PersonId, Option<Timestamp>)> {
        let (payload, mac) = token.split_once('.')?;
        let payload = String::from_utf8(hex::decode(payload).ok()?).ok()?;
        let expected = self.mac(&payload);
        // Compared as MACs of themselves: constant time in what matters.
        if self.mac(&expected) != self.mac(mac) {
            return None;
        }
        let mut parts = payload.splitn(3, '|');
        let expires: i64 = parts.next()?.parse().ok()?;
        let since = match parts.next()? {
            "" => None,
            ms => Some(Timestamp::from_millis(ms.parse().ok()?)),
        };
        let person = PersonId::new(parts.next()?);
        (now < expires).then_some((person, since))
    }
}

impl Service {
    /// Sends `me` (an auditor) a link to an evidence pack of everything changed since
    /// `since`, in a direct message on `platform`, audited as `export`. `Ok(false)`:
    /// links are not configured (`WAIVER_PUBLIC_URL`).
    pub async fn send_evidence_link(
        &self,
        me: &PersonId,
        platform: Platform,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool, ServiceError> {
        let Some(links) = &self.links else {
            return Ok(false);
        };
        let expires = now.millis() / 1000 + VALID_SECS;
        let url = format!(
            "{}{EVIDENCE_ROUTE}/{}",
            links.base,
            links.token(me, since, expires)
        );
        let scope = match since {
            Some(t) => format!("every exception changed since {}", t.minute()),
            None => "every exception".to_string(),
        };
        let text = format!(
            "Your evidence pack ({scope}, with its audit trail and governance files): {url}\nThe link works for 15 minutes, for you. Check the file anywhere with `waiver audit verify --pack FILE`."
        );
        let outbox = crate::chat::plan::resolve(
            &self.gov,
            platform,
            &crate::chat::plan::Recipient::Person(me.clone()),
        )
        .map(|to| Outgoing {
            request: None,
            platform,
            to,
            card: None,
            message: Message {
                summary: "Your evidence pack is ready".into(),
                sections: vec![Section::Text { label: None, text }],
            },
        })
        .into_iter()
        .collect();
        let audit = AuditRecord {
            at: now,
            actor: me.to_string(),
            request: None,
            action: "export".into(),
            outcome: Outcome::Applied,
            details: json!({
                "since": since,
                "link_expires": Timestamp::from_millis(expires * 1000),
                "platform": platform,
            }),
        };
        self.store.record(audit, outbox, None).await?;
        self.outbox_ready.notify_one();
        Ok(true)
    }

    /// The person and `since` of an evidence link, if it is valid now and its person
    /// still holds an auditor role.
    pub fn evidence_link(&self, token: &str) -> Option<(PersonId, Option<Timestamp>)> {
        let links = self.links.as_ref()?;
        let (person, since) = links.check(token, self.clock.unix_seconds())?;
        self.gov.may_audit(&person).then_some((person, since))
    }

    /// Writes the evidence pack a link asks for, audited as `export_download`.
    pub async fn write_evidence(
        &self,
        person: &PersonId,
        since: Option<Timestamp>,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<crate::export::pack::Manifest, crate::export::ExportError> {
        let now = self.clock.now();
        let manifest = crate::export::pack::write(&self.store, &self.gov, since, now, out).await?;
        let audit = AuditRecord {
            at: now,
            actor: person.to_string(),
            request: None,
            action: "export_download".into(),
            outcome: Outcome::Applied,
            details: json!({
                "since": since,
                "exceptions": manifest.exceptions,
                "head_seq": manifest.chain.head_seq,
                "head_hash": manifest.chain.head_hash,
            }),
        };
        self.store.record(audit, Vec::new(), None).await?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_names_its_person_until_it_expires_and_cannot_be_altered() {
        let links = Links::new("https://waiver.example.com/", "shared-secret");
        let person = PersonId::new("ana.lima");
        let since = Some(Timestamp::from_millis(1_700_000_000_000));
        let token = links.token(&person, since, 1_000);
        assert_eq!(links.check(&token, 999), Some((person.clone(), since)));
        assert_eq!(links.check(&token, 1_000), None, "expired");
        // Another person, a later expiry, another key: none verifies.
        let (_, mac) = token.split_once('.').unwrap();
        let other = format!("{}.{mac}", hex::encode("9999|1700000000000|mallory"));
        assert_eq!(links.check(&other, 0), None);
        let elsewhere = Links::new("https://waiver.example.com", "another-secret");
        assert_eq!(elsewhere.check(&token, 0), None);
        assert_eq!(links.check("not-a-token", 0), None);
    }
}
