//! `limit`, `offset`, `cursor` and time ranges of the paged listings, checked the same way
//! everywhere.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};

use super::cursor::{Cursor, Listing};
use crate::error::ApiError;

/// A checked page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    /// `limit` (1 to `max`, default `default`) and `offset` (not negative, default 0).
    pub fn new(
        limit: Option<i64>,
        offset: Option<i64>,
        default: i64,
        max: i64,
    ) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(default);
        if !(1..=max).contains(&limit) {
            return Err(ApiError::unprocessable(format!(
                "limit: must be between 1 and {max}"
            )));
        }
        let offset = offset.unwrap_or(0);
        if offset < 0 {
            return Err(ApiError::unprocessable("offset: must not be negative"));
        }
        Ok(Self { limit, offset })
    }
}

/// Where a page of a cursor-paged listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// After skipping this many rows (kept for older clients; slow at depth).
    Offset(i64),
    /// After the row a cursor names.
    After(Cursor),
}

/// A checked page request of a listing that pages by cursor (or, for compatibility, offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub position: Position,
}

impl PageRequest {
    /// `limit` as [`Page::new`]; `cursor`, when given, must come from this `listing` of `scope`
    /// and excludes `offset`.
    pub fn new(
        limit: Option<i64>,
        offset: Option<i64>,
        cursor: Option<&str>,
        (default, max): (i64, i64),
        listing: Listing,
        scope: &str,
    ) -> Result<Self, ApiError> {
        let page = Page::new(limit, offset, default, max)?;
        let position = match cursor {
            None => Position::Offset(page.offset),
            Some(_) if offset.is_some() => {
                return Err(ApiError::bad_request(
                    "cursor: cannot be combined with offset; pass one or the other",
                ));
            }
            Some(text) => Position::After(Cursor::decode(text, listing, scope)?),
        };
        Ok(Self {
            limit: page.limit,
            position,
        })
    }

    /// Whether the answer carries a total: on pages by offset (the first page and every
    /// page of older clients, as before cursors), not on pages after a cursor, so walking a long
    /// listing by cursor counts it once.
    pub fn counts_total(&self) -> bool {
        matches!(self.position, Position::Offset(_))
    }

    /// The total of the rows `filtered` selects (it appends ` FROM … WHERE …`), when this page
    /// carries one ([`Self::counts_total`]).
    pub async fn total(
        &self,
        db: &sqlx::PgPool,
        filtered: impl Fn(&mut QueryBuilder<Postgres>),
    ) -> Result<Option<i64>, sqlx::Error> {
        if !self.counts_total() {
            return Ok(None);
        }
        let mut count = QueryBuilder::new("SELECT count(*)");
        filtered(&mut count);
        count.build_query_scalar().fetch_one(db).await.map(Some)
    }

    /// The offset answered back to offset-paging callers (0 after a cursor).
    pub fn offset(&self) -> i64 {
        match self.position {
            Position::Offset(offset) => offset,
            Position::After(_) => 0,
        }
    }

    /// Appends the "after the cursor" condition, if any (inside a `WHERE`).
    pub fn push_after(&self, query: &mut QueryBuilder<Postgres>, time: &str, id: &str) {
        if let Position::After(cursor) = self.position {
            cursor.push_after(query, time, id);
        }
    }

    /// Appends `ORDER BY time DESC, id DESC LIMIT … [OFFSET …]`.
    pub fn push_order_and_limit(&self, query: &mut QueryBuilder<Postgres>, time: &str, id: &str) {
        query
            .push(format_args!(" ORDER BY {time} DESC, {id} DESC LIMIT "))
            .push_bind(self.limit);
        if let Position::Offset(offset) = self.position
            && offset > 0
        {
            query.push(" OFFSET ").push_bind(offset);
        }
    }
}

/// A checked time range: at or after `start`, before `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl TimeRange {
    pub fn new(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Result<Self, ApiError> {
        if let (Some(start), Some(end)) = (start, end)
            && start > end
        {
            return Err(ApiError::unprocessable(
                "start_date: must not be after end_date",
            ));
        }
        Ok(Self { start, end })
    }

    /// Appends ` AND column >= start AND column < end` for the bounds given.
    pub fn push(&self, query: &mut QueryBuilder<Postgres>, column: &str) {
        if let Some(start) = self.start {
            query
                .push(format_args!(" AND {column} >= "))
                .push_bind(start);
        }
        if let Some(end) = self.end {
            query.push(format_args!(" AND {column} < ")).push_bind(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_refuse_out_of_range_values() {
        assert_eq!(
            Page::new(None, None, 50, 500).unwrap(),
            Page {
                limit: 50,
                offset: 0
            }
        );
        assert!(Page::new(Some(0), None, 50, 500).is_err());
        assert!(Page::new(Some(501), None, 50, 500).is_err());
        assert!(Page::new(None, Some(-1), 50, 500).is_err());
    }

    #[test]
    fn a_cursor_excludes_an_offset_and_must_be_this_listings() {
        let cursor = Cursor::new(Utc::now(), uuid::Uuid::now_v7()).encode(Listing::Executions, "w");
        let limits = (50, 500);
        let page = PageRequest::new(None, None, Some(&cursor), limits, Listing::Executions, "w");
        assert!(matches!(page.unwrap().position, Position::After(_)));
        assert!(
            PageRequest::new(
                None,
                Some(0),
                Some(&cursor),
                limits,
                Listing::Executions,
                "w"
            )
            .is_err()
        );
        assert!(
            PageRequest::new(None, None, Some(&cursor), limits, Listing::DeadLetters, "w").is_err()
        );
        let first = PageRequest::new(None, None, None, limits, Listing::Executions, "w").unwrap();
        assert!(first.counts_total());
    }
}
