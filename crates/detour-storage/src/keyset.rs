//! Keyset pagination over an instant column and an id column: a page starts strictly after the
//! previous page's last `(instant, id)`, so rows inserted meanwhile neither repeat nor shift a
//! page the way an offset would. The id breaks ties between rows of the same instant.

use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::Micros;

/// How a list is ordered.
#[derive(Debug, Clone, Copy)]
pub struct Keyset {
    pub instant_column: &'static str,
    pub id_column: &'static str,
    pub descending: bool,
}

impl Keyset {
    /// Newest first.
    pub const fn descending(instant_column: &'static str, id_column: &'static str) -> Self {
        Self { instant_column, id_column, descending: true }
    }

    /// Earliest first.
    pub const fn ascending(instant_column: &'static str, id_column: &'static str) -> Self {
        Self { instant_column, id_column, descending: false }
    }

    /// Appends ` AND` the condition for rows after `after` (nothing for the first page), then the
    /// order and a limit one row over `limit`, which tells [`page`] whether another page follows.
    pub fn push_page<DB: Database>(
        &self,
        q: &mut QueryBuilder<DB>,
        after: Option<(Micros, String)>,
        limit: u32,
    ) where
        for<'t> Micros: Encode<'t, DB> + Type<DB>,
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        let (beyond, direction) = if self.descending { ("<", "DESC") } else { (">", "ASC") };
        let (at, id) = (self.instant_column, self.id_column);
        if let Some((micros, after_id)) = after {
            q.push(format_args!(" AND ({at} {beyond} "))
                .push_bind(micros)
                .push(format_args!(" OR ({at} = "))
                .push_bind(micros)
                .push(format_args!(" AND {id} {beyond} "))
                .push_bind(after_id)
                .push("))");
        }
        q.push(format_args!(" ORDER BY {at} {direction}, {id} {direction} LIMIT "))
            .push_bind(i64::from(limit) + 1);
    }
}

/// The first `limit` of the rows a [`Keyset::push_page`] query returned, with the cursor of the
/// next page (`cursor_of` the page's last item) when there is one.
pub fn page<T, C>(mut items: Vec<T>, limit: u32, cursor_of: impl FnOnce(&T) -> C) -> (Vec<T>, Option<C>) {
    let limit = limit as usize;
    if items.len() <= limit {
        return (items, None);
    }
    items.truncate(limit);
    let next = items.last().map(cursor_of);
    (items, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_has_a_next_only_when_a_row_beyond_it_came_back() {
        assert_eq!(page(vec![1, 2, 3], 2, |n| n * 10), (vec![1, 2], Some(20)));
        assert_eq!(page(vec![1, 2], 2, |n| n * 10), (vec![1, 2], None));
        assert_eq!(page(Vec::<i32>::new(), 2, |n| n * 10), (vec![], None));
    }

    #[test]
    fn the_page_condition_follows_the_order() {
        let mut q = QueryBuilder::<sqlx::Sqlite>::new("SELECT * FROM t WHERE 1 = 1");
        Keyset::descending("opened_at", "case_id").push_page(&mut q, Some((5, "x".to_owned())), 10);
        assert_eq!(
            q.sql().as_str(),
            "SELECT * FROM t WHERE 1 = 1 AND (opened_at < ? OR (opened_at = ? AND case_id < ?)) \
             ORDER BY opened_at DESC, case_id DESC LIMIT ?"
        );
        let mut q = QueryBuilder::<sqlx::Postgres>::new("SELECT * FROM t WHERE 1 = 1");
        Keyset::ascending("due", "case_id").push_page(&mut q, None, 10);
        assert_eq!(q.sql().as_str(), "SELECT * FROM t WHERE 1 = 1 ORDER BY due ASC, case_id ASC LIMIT $1");
    }
}
