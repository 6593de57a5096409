//! `limit` and `offset` of the paged listings, checked the same way everywhere.

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
}
