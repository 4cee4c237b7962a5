//! Cursor pagination of lists, the same everywhere.
//!
//! Lists have a display order (tasks and executions: newest first, by their ULID ids; secrets: by
//! name). A cursor is the key of an item, as the `start_cursor` / `end_cursor` of a page give it:
//! - `after = C`: the first `limit` items that come after C in display order (the next page:
//!   pass the previous page's `end_cursor`);
//! - `before = C`: the last `limit` items that come before C (the previous page: pass the
//!   `start_cursor`), still in display order;
//! - neither: the first page. Both at once is refused.
//!
//! `has_next_page` / `has_previous_page` say whether items remain after / before the page.
//! `limit` defaults to 10 and is capped at `MAX_LIMIT`.

use tonic::Status;

use crate::domain::DomainError;
use crate::pb;

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    First,
    After(String),
    Before(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub cursor: Cursor,
    pub limit: usize,
}

/// Reads the paging fields of a request; `ulid_cursors` requires cursors to be ULIDs.
pub fn request(
    before: &str,
    after: &str,
    limit: i64,
    ulid_cursors: bool,
) -> Result<PageRequest, Status> {
    let check = |c: &str| {
        if ulid_cursors && ulid::Ulid::from_string(c).is_err() {
            Err(DomainError::invalid(format!(
                "invalid cursor {c:?}: pass a page_info cursor back unchanged"
            )))
        } else {
            Ok(c.to_owned())
        }
    };
    let cursor = match (before.is_empty(), after.is_empty()) {
        (true, true) => Cursor::First,
        (true, false) => Cursor::After(check(after)?),
        (false, true) => Cursor::Before(check(before)?),
        (false, false) => return Err(DomainError::invalid("set before or after, not both").into()),
    };
    if limit < 0 {
        return Err(DomainError::invalid("limit must not be negative").into());
    }
    let limit = match usize::try_from(limit).unwrap_or(MAX_LIMIT) {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    Ok(PageRequest { cursor, limit })
}

/// Which order the keys are displayed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Descending,
    Ascending,
}

/// Selects the page from keys already sorted in display order: the range of indexes and the
/// page info.
pub fn select(
    keys: &[String],
    order: Order,
    request: &PageRequest,
) -> (std::ops::Range<usize>, pb::PageInfo) {
    // "k comes before c in display order".
    let before = |k: &String, c: &str| match order {
        Order::Descending => k.as_str() > c,
        Order::Ascending => k.as_str() < c,
    };
    let (start, end) = match &request.cursor {
        Cursor::First => (0, request.limit.min(keys.len())),
        Cursor::After(c) => {
            let start = keys.partition_point(|k| before(k, c) || k == c);
            (start, (start + request.limit).min(keys.len()))
        }
        Cursor::Before(c) => {
            let end = keys.partition_point(|k| before(k, c));
            (end.saturating_sub(request.limit), end)
        }
    };
    let info = pb::PageInfo {
        start_cursor: keys
            .get(start)
            .filter(|_| start < end)
            .cloned()
            .unwrap_or_default(),
        end_cursor: end
            .checked_sub(1)
            .filter(|_| start < end)
            .and_then(|i| keys.get(i))
            .cloned()
            .unwrap_or_default(),
        has_previous_page: start > 0,
        has_next_page: end < keys.len(),
    };
    (start..end, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<String> {
        ["e", "d", "c", "b", "a"].map(String::from).to_vec()
    }

    fn page(cursor: Cursor, limit: usize) -> (Vec<String>, pb::PageInfo) {
        let keys = keys();
        let (range, info) = select(&keys, Order::Descending, &PageRequest { cursor, limit });
        (keys[range].to_vec(), info)
    }

    #[test]
    fn walks_forward_and_back() {
        let (first, info) = page(Cursor::First, 2);
        assert_eq!(first, ["e", "d"]);
        assert!(info.has_next_page && !info.has_previous_page);
        let (second, info) = page(Cursor::After(info.end_cursor), 2);
        assert_eq!(second, ["c", "b"]);
        assert!(info.has_next_page && info.has_previous_page);
        let (last, info) = page(Cursor::After(info.end_cursor.clone()), 2);
        assert_eq!(last, ["a"]);
        assert!(!info.has_next_page);
        let (back, info) = page(Cursor::Before("a".into()), 2);
        assert_eq!(back, ["c", "b"]);
        assert!(info.has_previous_page && info.has_next_page);
        let (none, info) = page(Cursor::After("a".into()), 2);
        assert!(none.is_empty() && !info.has_next_page && info.end_cursor.is_empty());
    }

    #[test]
    fn request_rules() {
        assert_eq!(request("", "", 0, true).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(request("", "", 10_000, true).unwrap().limit, MAX_LIMIT);
        assert!(request("a", "b", 1, false).is_err());
        assert!(request("", "nope", 1, true).is_err());
        assert!(request("", "", -1, true).is_err());
    }
}
