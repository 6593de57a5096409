//! Keyset cursors of the listings that grow without bound (executions, webhook logs, dead
//! letters, a scheduled job's runs): the position just after a page's last row, as its sort time
//! and id. A page after a cursor is found through the index like the first page, whatever its
//! depth, where an `offset` makes PostgreSQL walk every row before it.
//!
//! A cursor is opaque to callers: base64url of a version byte, the listing it belongs to, a tag
//! of the listing's scope (which workflow, webhook, owner or job), the time in microseconds and
//! the id. One from another listing, or another workflow's listing, is refused with 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::error::ApiError;

const VERSION: u8 = 1;
const SCOPE_TAG_BYTES: usize = 8;
const ENCODED_BYTES: usize = 2 + SCOPE_TAG_BYTES + 8 + 16;

/// The listings that page by cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Listing {
    Executions = 1,
    WebhookLogs = 2,
    DeadLetters = 3,
    ScheduledJobRuns = 4,
    HttpLogs = 5,
    Audit = 6,
}

/// The position after a row: its sort time and, for rows sharing that time, its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn new(at: DateTime<Utc>, id: Uuid) -> Self {
        Self { at, id }
    }

    /// The cursor's text for `listing` of `scope`.
    pub fn encode(&self, listing: Listing, scope: &str) -> String {
        let mut bytes = Vec::with_capacity(ENCODED_BYTES);
        bytes.push(VERSION);
        bytes.push(listing as u8);
        bytes.extend_from_slice(&scope_tag(scope));
        bytes.extend_from_slice(&self.at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a cursor given for `listing` of `scope`: 400 when it is not one of ours or belongs
    /// to another listing.
    pub fn decode(text: &str, listing: Listing, scope: &str) -> Result<Self, ApiError> {
        let malformed = || ApiError::bad_request("cursor: not a cursor this API issued");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| malformed())?;
        if bytes.len() != ENCODED_BYTES || bytes[0] != VERSION {
            return Err(malformed());
        }
        let tag_end = 2 + SCOPE_TAG_BYTES;
        if bytes[1] != listing as u8 || bytes[2..tag_end] != scope_tag(scope) {
            return Err(ApiError::bad_request(
                "cursor: it belongs to another listing; a cursor only continues the listing \
                 that returned it",
            ));
        }
        let micros = i64::from_be_bytes(bytes[tag_end..tag_end + 8].try_into().expect("8 bytes"));
        let at = DateTime::from_timestamp_micros(micros).ok_or_else(malformed)?;
        let id = Uuid::from_slice(&bytes[tag_end + 8..]).map_err(|_| malformed())?;
        Ok(Self { at, id })
    }

    /// Appends ` AND` the condition "sorts after this cursor" for a listing ordered by
    /// `time_column DESC, id_column DESC`. The first comparison alone is what the index is
    /// searched by; the row comparison settles rows sharing the cursor's time.
    pub fn push_after(
        &self,
        query: &mut QueryBuilder<Postgres>,
        time_column: &str,
        id_column: &str,
    ) {
        query
            .push(format_args!(" AND {time_column} <= "))
            .push_bind(self.at)
            .push(format_args!(" AND ({time_column}, {id_column}) < ("))
            .push_bind(self.at)
            .push(", ")
            .push_bind(self.id)
            .push(")");
    }
}

/// The cursor after a page: the last row's, when the page was full (there may be more).
pub fn next_after<T>(
    rows: &[T],
    limit: i64,
    position: impl Fn(&T) -> Cursor,
    listing: Listing,
    scope: &str,
) -> Option<String> {
    let full = usize::try_from(limit).is_ok_and(|limit| rows.len() >= limit);
    full.then(|| rows.last().map(|row| position(row).encode(listing, scope)))
        .flatten()
}

/// A short tag of the scope, so a cursor of one workflow's listing does not continue another's.
fn scope_tag(scope: &str) -> [u8; SCOPE_TAG_BYTES] {
    let digest = Sha256::digest(scope.as_bytes());
    digest[..SCOPE_TAG_BYTES].try_into().expect("8 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cursor {
        Cursor::new(
            DateTime::from_timestamp_micros(1_764_504_000_123_456).unwrap(),
            Uuid::now_v7(),
        )
    }

    #[test]
    fn a_cursor_reads_back_exactly() {
        let cursor = sample();
        let text = cursor.encode(Listing::Executions, "workflow-a");
        assert_eq!(
            Cursor::decode(&text, Listing::Executions, "workflow-a").unwrap(),
            cursor
        );
    }

    #[test]
    fn a_cursor_of_another_listing_or_scope_is_refused() {
        let text = sample().encode(Listing::Executions, "workflow-a");
        for (listing, scope) in [
            (Listing::WebhookLogs, "workflow-a"),
            (Listing::Executions, "workflow-b"),
        ] {
            let error = Cursor::decode(&text, listing, scope).unwrap_err();
            assert!(
                format!("{error:?}").contains("another listing"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let text = sample().encode(Listing::Executions, "w");
        for bad in ["", "not base64!", &text[..text.len() - 2], "AAAA"] {
            let error = Cursor::decode(bad, Listing::Executions, "w").unwrap_err();
            assert!(
                format!("{error:?}").contains("not a cursor"),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn only_a_full_page_has_a_next_cursor() {
        let rows = [sample(), sample()];
        assert!(next_after(&rows, 2, |c| *c, Listing::DeadLetters, "u").is_some());
        assert!(next_after(&rows, 3, |c| *c, Listing::DeadLetters, "u").is_none());
    }
}
