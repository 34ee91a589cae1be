//! The rules of catalog administration: what a movie and a show must look like before they are
//! written, and what may no longer change once a show is on sale.
//!
//! [`SeatLayout::new`] keeps the structural rules every stored layout obeys (rows, numbers,
//! categories that exist); the rules here are stricter and apply to what an operator writes now
//! (names of sensible length, one currency per show, a bounded hall), so data written before a
//! rule existed still loads. Every check names the field it refused, relative to the value
//! checked, so the HTTP API and the catalog file import report the same paths.

use crate::layout::{LayoutSpec, SeatLayout};
use crate::model::{Movie, Show};
use crate::ports::CatalogError;

/// Most seats one show may have: the largest cinema hall several times over, small enough that
/// a seat map and the engine's per-seat state stay cheap.
pub const MAX_SEATS_PER_SHOW: usize = 20_000;
/// Most categories one layout may have.
pub const MAX_CATEGORIES: usize = 32;
/// The highest price of one seat, in minor units (1,000,000.00).
pub const MAX_PRICE_CENTS: i64 = 100_000_000;

/// A value the catalog refused: which field (a path such as `layout.rows[2].seats`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error, its field seen from `parent` (`title` in `movies[3]` is `movies[3].title`).
    pub fn within(self, parent: &str) -> Self {
        let field = if self.field.is_empty() {
            parent.to_owned()
        } else if self.field.starts_with('[') {
            format!("{parent}{}", self.field)
        } else {
            format!("{parent}.{}", self.field)
        };
        Self { field, ..self }
    }
}

/// Refuses empty text, text with control characters, and text longer than `max` characters.
fn text(field: &str, value: &str, max: usize, required: bool) -> Result<(), FieldError> {
    if required && value.trim().is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a movie as an operator writes it.
pub fn check_movie(movie: &Movie) -> Result<(), FieldError> {
    text("title", &movie.title, 200, true)?;
    text("description", &movie.description, 5_000, false)?;
    if !(1..=1_000).contains(&movie.duration_minutes) {
        return Err(FieldError::new(
            "durationMinutes",
            "must be between 1 and 1000",
        ));
    }
    text("rating", &movie.rating, 16, false)?;
    if movie.genres.len() > 10 {
        return Err(FieldError::new("genres", "at most 10 genres"));
    }
    for (i, genre) in movie.genres.iter().enumerate() {
        text(&format!("genres[{i}]"), genre, 50, true)?;
    }
    // A BCP 47 tag ("en", "pt-BR"): letters, digits and hyphens.
    if movie.language.is_empty()
        || movie.language.len() > 35
        || !movie
            .language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(FieldError::new(
            "language",
            "must be a language tag such as \"en\" or \"pt-BR\"",
        ));
    }
    Ok(())
}

/// Checks an auditorium's name.
pub fn check_auditorium(name: &str) -> Result<(), FieldError> {
    text("auditorium", name, 100, true)
}

/// Checks a layout as an operator writes it and builds it; fields are relative to the layout.
pub fn check_layout(spec: LayoutSpec) -> Result<SeatLayout, FieldError> {
    if spec.categories.is_empty() {
        return Err(FieldError::new("categories", "at least one category"));
    }
    if spec.categories.len() > MAX_CATEGORIES {
        return Err(FieldError::new(
            "categories",
            format!("at most {MAX_CATEGORIES} categories"),
        ));
    }
    let currency = &spec.categories[0].currency;
    for (i, c) in spec.categories.iter().enumerate() {
        let at = |f: &str| format!("categories[{i}].{f}");
        if c.code.is_empty()
            || c.code.len() > 32
            || !c
                .code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(FieldError::new(
                at("code"),
                "must be 1 to 32 of A-Z, 0-9 and _",
            ));
        }
        text(&at("name"), &c.name, 64, true)?;
        if !(0..=MAX_PRICE_CENTS).contains(&c.price_cents) {
            return Err(FieldError::new(
                at("priceCents"),
                format!("must be between 0 and {MAX_PRICE_CENTS}"),
            ));
        }
        if c.currency.len() != 3 || !c.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(FieldError::new(
                at("currency"),
                "must be an ISO 4217 code such as \"EUR\"",
            ));
        }
        if &c.currency != currency {
            return Err(FieldError::new(
                at("currency"),
                format!("every category of a show is priced in one currency ({currency})"),
            ));
        }
    }
    let seats: usize = spec.rows.iter().map(|r| usize::from(r.seats)).sum();
    if seats > MAX_SEATS_PER_SHOW {
        return Err(FieldError::new(
            "rows",
            format!("at most {MAX_SEATS_PER_SHOW} seats per show ({seats} given)"),
        ));
    }
    let rows = spec.rows.clone();
    SeatLayout::new(spec).map_err(|e| {
        use crate::layout::LayoutError as E;
        let row_index = |label: &str| rows.iter().position(|r| r.row == label);
        let field = match &e {
            E::BadRowLabel(row) | E::BadSeatCount(row) | E::UnknownCategory { row, .. } => {
                row_index(row).map_or("rows".to_owned(), |i| format!("rows[{i}]"))
            }
            E::DuplicateRow(row) => rows
                .iter()
                .rposition(|r| &r.row == row)
                .map_or("rows".to_owned(), |i| format!("rows[{i}].row")),
            E::BadCategory(_) => "categories".to_owned(),
            E::BlockedSeatOutsideLayout(_) => "blocked".to_owned(),
            E::Empty => "rows".to_owned(),
        };
        FieldError::new(field, e.to_string())
    })
}

/// Whether writing `new` over `stored` changes what was on sale: the seats, their categories and
/// prices, blocked seats, or the movie. Once a show has taken a hold request these are fixed (a
/// buyer's seat must not vanish or change price under them); its start time and auditorium name
/// may still change (a rescheduled screening).
pub fn changes_what_is_on_sale(stored: &Show, new: &Show) -> bool {
    stored.movie_id != new.movie_id || stored.layout != new.layout
}

/// What writing a catalog entry over what is stored amounts to: the rule of
/// `CatalogStore::put_catalog`, written once for every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryWrite {
    /// Equal to what is stored: nothing to write.
    Unchanged,
    Create,
    Replace,
    /// Replaces what was on sale: allowed only if the show has taken no hold request yet.
    ReplaceUnlessOnSale,
}

impl EntryWrite {
    /// A movie (or anything without a sales rule): new, equal, or replaced.
    pub fn of<T: PartialEq>(stored: Option<&T>, new: &T) -> Self {
        match stored {
            None => Self::Create,
            Some(stored) if stored == new => Self::Unchanged,
            Some(_) => Self::Replace,
        }
    }

    /// A show: as [`EntryWrite::of`], and a replacement that [`changes_what_is_on_sale`] must
    /// first find the show not on sale. A cancelled show is fixed for good: writing it again as it
    /// is (a re-import) changes nothing, anything else is refused ([`CatalogError::Cancelled`]).
    /// A write never sets or clears a cancellation (`new.cancelled` is not compared).
    pub fn of_show(stored: Option<&Show>, new: &Show) -> Result<Self, CatalogError> {
        let Some(stored) = stored else {
            return Ok(Self::Create);
        };
        let same = stored.movie_id == new.movie_id
            && stored.starts_at == new.starts_at
            && stored.auditorium == new.auditorium
            && stored.layout == new.layout;
        Ok(match (same, stored.is_cancelled()) {
            (true, _) => Self::Unchanged,
            (false, true) => return Err(CatalogError::Cancelled(stored.show_id)),
            (false, false) if changes_what_is_on_sale(stored, new) => Self::ReplaceUnlessOnSale,
            (false, false) => Self::Replace,
        })
    }

    /// How the write is counted, once it is done.
    pub fn upserted(self) -> crate::ports::Upserted {
        use crate::ports::Upserted;
        match self {
            Self::Unchanged => Upserted::Unchanged,
            Self::Create => Upserted::Created,
            Self::Replace | Self::ReplaceUnlessOnSale => Upserted::Updated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Category, RowSpec};
    use crate::{MovieId, SeatLayout};

    fn movie() -> Movie {
        Movie {
            movie_id: MovieId::new_random(),
            title: "Title".into(),
            description: String::new(),
            duration_minutes: 90,
            rating: "PG".into(),
            genres: vec!["Drama".into()],
            language: "pt-BR".into(),
        }
    }

    #[test]
    fn a_movie_names_the_field_it_refuses() {
        assert_eq!(check_movie(&movie()), Ok(()));
        let mut m = movie();
        m.title = "  ".into();
        assert_eq!(check_movie(&m).unwrap_err().field, "title");
        let mut m = movie();
        m.duration_minutes = 0;
        assert_eq!(check_movie(&m).unwrap_err().field, "durationMinutes");
        let mut m = movie();
        m.genres = vec!["ok".into(), "bad\u{0007}".into()];
        assert_eq!(check_movie(&m).unwrap_err().field, "genres[1]");
        let mut m = movie();
        m.language = "en; DROP TABLE movies".into();
        assert_eq!(check_movie(&m).unwrap_err().field, "language");
    }

    fn spec() -> LayoutSpec {
        LayoutSpec::from(SeatLayout::rectangular(3, 10, 1_000))
    }

    #[test]
    fn a_layout_names_the_field_it_refuses() {
        assert!(check_layout(spec()).is_ok());
        let mut s = spec();
        s.rows[1].row = "b".into();
        assert_eq!(check_layout(s).unwrap_err().field, "rows[1]");
        let mut s = spec();
        s.rows[2].row = "A".into();
        assert_eq!(check_layout(s).unwrap_err().field, "rows[2].row");
        let mut s = spec();
        s.categories.push(Category {
            code: "VIP".into(),
            name: "VIP".into(),
            price_cents: 5_000,
            currency: "USD".into(),
        });
        assert_eq!(check_layout(s).unwrap_err().field, "categories[1].currency");
        let mut s = spec();
        s.categories[0].price_cents = -1;
        assert_eq!(
            check_layout(s).unwrap_err().field,
            "categories[0].priceCents"
        );
        let mut s = spec();
        s.blocked = vec!["Z9".parse().unwrap()];
        assert_eq!(check_layout(s).unwrap_err().field, "blocked");
    }

    #[test]
    fn a_layout_is_bounded() {
        let mut s = spec();
        s.rows = (0..30u16)
            .map(|r| RowSpec {
                row: crate::SeatId::row_label(r),
                seats: 999,
                category: "STANDARD".into(),
            })
            .collect();
        assert_eq!(check_layout(s).unwrap_err().field, "rows");
    }

    #[test]
    fn paths_nest() {
        let e = FieldError::new("rows[1]", "bad")
            .within("layout")
            .within("shows[0]");
        assert_eq!(e.field, "shows[0].layout.rows[1]");
        assert_eq!(
            FieldError::new("", "x").within("movies[2]").field,
            "movies[2]"
        );
    }
}
