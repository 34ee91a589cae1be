//! Catalog administration: movies and shows written by an operator, one at a time over the admin
//! API or many at once from a catalog file (`seatbook import FILE`, `POST /api/v1/admin/catalog`).
//!
//! Everything is checked before anything is written (the rules in `booking_core::catalog`), and
//! a write is one store transaction: a file with one bad show writes nothing. Errors name the
//! field as a path (`shows[2].layout.rows[0].seats`), and a file that is not valid JSON, or has a
//! value of the wrong type, also names its line and column. Re-importing a file changes nothing
//! (ids are the file's), which makes an import safe to repeat after a failure.
//!
//! The catalog file (documented in docs/OPERATIONS.md):
//!
//! ```json
//! { "halls":  [{ "name": "Grand Hall", "layout": { "categories": [...], "rows": [...], "blocked": [] } }],
//!   "movies": [{ "movieId": "…", "title": "…", "description": "…", "durationMinutes": 148,
//!                "rating": "PG-13", "genres": ["Sci-Fi"], "language": "en" }],
//!   "shows":  [{ "showId": "…", "movieId": "…", "startsAt": "2027-01-15T20:00:00Z",
//!                "hall": "Grand Hall", "prices": { "PREMIUM": 2000 }, "blocked": ["A1"] }] }
//! ```
//!
//! A show names a hall of the file (its auditorium and seat layout) or carries its own
//! `auditorium` and `layout`; `prices` overrides category prices for that show and `blocked`
//! replaces the hall's blocked seats. `startsAt` is an instant, or `"+Nd HH:MM"` (N days after the
//! day of the import, at HH:MM UTC), which keeps a demo or test catalog in the future.

use crate::app::Ports;
use crate::cancellation::{Cancellations, WindUp};
use crate::error::BookingError;
use crate::service::{BookingService, operator_reason};
use booking_core::catalog::{FieldError, check_auditorium, check_layout, check_movie};
use booking_core::layout::LayoutSpec;
use booking_core::ports::{CatalogError, CatalogWrite};
use booking_core::{Movie, MovieId, SeatId, Show, ShowId};
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// A value of a catalog write that was refused: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogIssue {
    /// The path of the refused value (`shows[1].startsAt`); empty for the document itself.
    pub field: String,
    /// Line and column in the file, for JSON that does not parse or a value of the wrong type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
}

impl From<FieldError> for CatalogIssue {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            line: None,
            column: None,
            message: e.message,
        }
    }
}

impl std::fmt::Display for CatalogIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "line {line}, column {column}: ")?;
        }
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// A movie as an operator writes it (the id comes from the path or is made up).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewMovie)]
pub struct MovieInput {
    pub title: String,
    #[serde(default)]
    pub description: String,
    pub duration_minutes: u32,
    #[serde(default)]
    pub rating: String,
    #[serde(default)]
    pub genres: Vec<String>,
    pub language: String,
}

impl MovieInput {
    fn into_movie(self, movie_id: MovieId) -> Movie {
        Movie {
            movie_id,
            title: self.title,
            description: self.description,
            duration_minutes: self.duration_minutes,
            rating: self.rating,
            genres: self.genres,
            language: self.language,
        }
    }
}

/// A show as an operator writes it over the API.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = NewShow)]
pub struct ShowInput {
    pub movie_id: MovieId,
    pub starts_at: DateTime<Utc>,
    pub auditorium: String,
    pub layout: LayoutSpec,
}

/// When a show of a catalog file starts: an instant, or a day after the import at a time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTime {
    At(DateTime<Utc>),
    DaysAfterImport { days: u16, at: NaiveTime },
}

impl StartTime {
    fn resolve(self, today: NaiveDate) -> Option<DateTime<Utc>> {
        match self {
            Self::At(at) => Some(at),
            Self::DaysAfterImport { days, at } => today
                .checked_add_signed(Duration::days(i64::from(days)))
                .map(|day| day.and_time(at).and_utc()),
        }
    }
}

impl<'de> Deserialize<'de> for StartTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let relative = || -> Option<StartTime> {
            let (days, at) = text.strip_prefix('+')?.split_once("d ")?;
            Some(StartTime::DaysAfterImport {
                days: days.parse().ok()?,
                at: NaiveTime::parse_from_str(at, "%H:%M").ok()?,
            })
        };
        DateTime::parse_from_rfc3339(&text)
            .map(|at| StartTime::At(at.with_timezone(&Utc)))
            .ok()
            .or_else(relative)
            .ok_or_else(|| {
                serde::de::Error::custom(
                    "must be an RFC 3339 instant (\"2027-01-15T20:00:00Z\") or \"+Nd HH:MM\"",
                )
            })
    }
}

/// A hall of a catalog file: a layout that shows name instead of repeating it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CatalogHall)]
pub(crate) struct HallEntry {
    name: String,
    layout: LayoutSpec,
}

/// A movie of a catalog file: its id and [`MovieInput`]'s fields (`deny_unknown_fields` does not
/// work through `flatten`, so they are listed again).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CatalogMovie)]
pub(crate) struct MovieEntry {
    movie_id: MovieId,
    title: String,
    #[serde(default)]
    description: String,
    duration_minutes: u32,
    #[serde(default)]
    rating: String,
    #[serde(default)]
    genres: Vec<String>,
    language: String,
}

/// A show of a catalog file: in a named hall (with its prices and blocked seats changed, if
/// given) or with a layout of its own.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CatalogShow)]
pub(crate) struct ShowEntry {
    show_id: ShowId,
    movie_id: MovieId,
    /// An RFC 3339 instant, or days after the import at a time of day: `+2d 19:30`.
    #[schema(value_type = String)]
    starts_at: StartTime,
    hall: Option<String>,
    auditorium: Option<String>,
    layout: Option<LayoutSpec>,
    /// Price per seat by category code, in cents.
    #[serde(default)]
    prices: BTreeMap<String, i64>,
    blocked: Option<Vec<SeatId>>,
}

/// A whole catalog: halls, movies and shows.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = CatalogFile)]
pub(crate) struct CatalogFile {
    #[serde(default)]
    halls: Vec<HallEntry>,
    #[serde(default)]
    movies: Vec<MovieEntry>,
    #[serde(default)]
    shows: Vec<ShowEntry>,
}

/// A catalog file, checked: the movies and shows it writes.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub movies: Vec<Movie>,
    pub shows: Vec<Show>,
}

/// Reads and checks a catalog file; `today` anchors relative start times. Every problem found is
/// reported, not only the first (a JSON error stops the reading there).
pub fn parse_catalog(text: &str, today: DateTime<Utc>) -> Result<Catalog, Vec<CatalogIssue>> {
    let mut reader = serde_json::Deserializer::from_str(text);
    let file: CatalogFile = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let field = e.path().to_string();
        vec![json_issue(field, &e.into_inner())]
    })?;
    reader
        .end()
        .map_err(|e| vec![json_issue(String::new(), &e)])?;
    check_file(file, today.date_naive())
}

/// A JSON error where it happened: serde_json's message without its own " at line L column C"
/// (reported in fields of their own).
fn json_issue(field: String, e: &serde_json::Error) -> CatalogIssue {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    };
    CatalogIssue {
        field: if field == "." { String::new() } else { field },
        line: Some(e.line()),
        column: Some(e.column()),
        message,
    }
}

fn check_file(file: CatalogFile, today: NaiveDate) -> Result<Catalog, Vec<CatalogIssue>> {
    let mut issues: Vec<CatalogIssue> = Vec::new();
    let mut halls: HashMap<&str, &HallEntry> = HashMap::new();
    for (i, hall) in file.halls.iter().enumerate() {
        let at = format!("halls[{i}]");
        if let Err(e) = check_auditorium(&hall.name) {
            issues.push(FieldError::new("name", e.message).within(&at).into());
        } else if halls.insert(hall.name.as_str(), hall).is_some() {
            issues.push(FieldError::new(format!("{at}.name"), "hall named twice").into());
        }
        if let Err(e) = check_layout(hall.layout.clone()) {
            issues.push(e.within("layout").within(&at).into());
        }
    }
    let mut movies = Vec::with_capacity(file.movies.len());
    let mut movie_ids = HashSet::new();
    for (i, entry) in file.movies.into_iter().enumerate() {
        let at = format!("movies[{i}]");
        if !movie_ids.insert(entry.movie_id) {
            issues.push(FieldError::new(format!("{at}.movieId"), "movie listed twice").into());
        }
        let movie = MovieInput {
            title: entry.title,
            description: entry.description,
            duration_minutes: entry.duration_minutes,
            rating: entry.rating,
            genres: entry.genres,
            language: entry.language,
        }
        .into_movie(entry.movie_id);
        match check_movie(&movie) {
            Ok(()) => movies.push(movie),
            Err(e) => issues.push(e.within(&at).into()),
        }
    }
    let mut shows = Vec::with_capacity(file.shows.len());
    let mut show_ids = HashSet::new();
    for (i, entry) in file.shows.into_iter().enumerate() {
        let at = format!("shows[{i}]");
        if !show_ids.insert(entry.show_id) {
            issues.push(FieldError::new(format!("{at}.showId"), "show listed twice").into());
        }
        match show_of_entry(entry, &halls, today) {
            Ok(show) => shows.push(show),
            Err(e) => issues.push(e.within(&at).into()),
        }
    }
    if issues.is_empty() {
        Ok(Catalog { movies, shows })
    } else {
        Err(issues)
    }
}

fn show_of_entry(
    entry: ShowEntry,
    halls: &HashMap<&str, &HallEntry>,
    today: NaiveDate,
) -> Result<Show, FieldError> {
    let (auditorium, mut layout) = match (&entry.hall, entry.auditorium, entry.layout) {
        (Some(hall), None, None) => {
            let hall = halls
                .get(hall.as_str())
                .ok_or_else(|| FieldError::new("hall", "no hall of that name in the file"))?;
            (hall.name.clone(), hall.layout.clone())
        }
        (None, Some(auditorium), Some(layout)) => (auditorium, layout),
        _ => {
            return Err(FieldError::new(
                "",
                "a show names a \"hall\", or has an \"auditorium\" and a \"layout\" of its own",
            ));
        }
    };
    for (code, price) in &entry.prices {
        let category = layout
            .categories
            .iter_mut()
            .find(|c| &c.code == code)
            .ok_or_else(|| FieldError::new(format!("prices.{code}"), "no such category"))?;
        category.price_cents = *price;
    }
    if let Some(blocked) = entry.blocked {
        layout.blocked = blocked;
    }
    let starts_at = entry
        .starts_at
        .resolve(today)
        .ok_or_else(|| FieldError::new("startsAt", "out of range"))?;
    build_show(entry.show_id, entry.movie_id, starts_at, auditorium, layout)
}

/// A show from its parts, checked; fields are relative to the show.
fn build_show(
    show_id: ShowId,
    movie_id: MovieId,
    starts_at: DateTime<Utc>,
    auditorium: String,
    layout: LayoutSpec,
) -> Result<Show, FieldError> {
    check_auditorium(&auditorium)?;
    let layout = check_layout(layout).map_err(|e| e.within("layout"))?;
    Ok(Show {
        show_id,
        movie_id,
        // Whole seconds: what every store keeps exactly, so a re-import compares equal.
        starts_at: starts_at.trunc_subsecs(0),
        auditorium,
        layout: Arc::new(layout),
        cancelled: None,
    })
}

/// A day with shows of a movie, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayWithShows {
    pub date: NaiveDate,
    pub shows: usize,
    /// The first show of the day.
    pub first_starts_at: DateTime<Utc>,
}

/// The use cases of catalog administration.
pub struct CatalogAdmin {
    ports: Ports,
    booking: Arc<BookingService>,
    cancellations: Arc<Cancellations>,
}

impl CatalogAdmin {
    pub fn new(
        ports: Ports,
        booking: Arc<BookingService>,
        cancellations: Arc<Cancellations>,
    ) -> Self {
        Self {
            ports,
            booking,
            cancellations,
        }
    }

    /// Cancels a show for `reason` (shown to its buyers) and winds it up: requests failed, holds
    /// released, orders cancelled and refunded (see `crate::cancellation`). Cancelling a
    /// cancelled show again keeps its first reason and finishes its wind-up.
    pub async fn cancel_show(
        &self,
        raw_show: &str,
        reason: Option<&str>,
    ) -> Result<(Show, WindUp), BookingError> {
        let show_id: ShowId = raw_show.parse().map_err(|_| BookingError::ShowNotFound)?;
        let reason = operator_reason(reason)?.unwrap_or_default();
        let show = self
            .ports
            .catalog
            .cancel_show(show_id, &reason, self.ports.clock.now())
            .await?
            .ok_or(BookingError::ShowNotFound)?;
        // This process's intake refuses the show from now on; others within SHOW_CACHE_TTL, and
        // what they accept meanwhile its deciders refuse.
        self.booking.forget_show(show_id);
        tracing::warn!(show_id = %show_id, reason, "show cancelled; winding it up");
        let wound_up = self.cancellations.wind_up(&show).await?;
        tracing::info!(show_id = %show_id, ?wound_up, "show wound up");
        Ok((show, wound_up))
    }

    /// Writes a checked catalog file in one transaction. Shows this process has cached are read
    /// again on their next use.
    pub async fn write(&self, catalog: &Catalog) -> Result<CatalogWrite, BookingError> {
        self.write_as(catalog, Paths::OfFile).await
    }

    async fn write_as(
        &self,
        catalog: &Catalog,
        paths: Paths,
    ) -> Result<CatalogWrite, BookingError> {
        let written = self
            .ports
            .catalog
            .put_catalog(&catalog.movies, &catalog.shows)
            .await
            .map_err(|e| catalog_error(e, &catalog.shows, paths))?;
        for show in &catalog.shows {
            self.booking.forget_show(show.show_id);
        }
        Ok(written)
    }

    /// Reads, checks and writes a catalog file (all of it or nothing).
    pub async fn import(&self, text: &str) -> Result<CatalogWrite, BookingError> {
        let catalog =
            parse_catalog(text, self.ports.clock.now()).map_err(BookingError::InvalidCatalog)?;
        self.write(&catalog).await
    }

    /// Adds or replaces the movie `movie_id`; `true` if it is new.
    pub async fn put_movie(
        &self,
        movie_id: MovieId,
        input: MovieInput,
    ) -> Result<(Movie, bool), BookingError> {
        let movie = input.into_movie(movie_id);
        check_movie(&movie).map_err(invalid)?;
        let written = self.write_one(vec![movie.clone()], vec![]).await?;
        Ok((movie, written.movies_created > 0))
    }

    /// Adds or replaces the show `show_id`; `true` if it is new. Its seats, prices and movie are
    /// fixed once it has taken a hold request (`SHOW_ON_SALE`).
    pub async fn put_show(
        &self,
        show_id: ShowId,
        input: ShowInput,
    ) -> Result<(Show, bool), BookingError> {
        let show = build_show(
            show_id,
            input.movie_id,
            input.starts_at,
            input.auditorium,
            input.layout,
        )
        .map_err(invalid)?;
        let written = self.write_one(vec![], vec![show.clone()]).await?;
        // As stored: an unchanged write of a cancelled show answers it cancelled.
        let stored = self.ports.catalog.get_show(show_id).await?.unwrap_or(show);
        Ok((stored, written.shows_created > 0))
    }

    async fn write_one(
        &self,
        movies: Vec<Movie>,
        shows: Vec<Show>,
    ) -> Result<CatalogWrite, BookingError> {
        self.write_as(&Catalog { movies, shows }, Paths::OfOne)
            .await
    }

    /// The movie's id and the days on which it has shows still to start (and not cancelled), in
    /// order.
    pub async fn availability(
        &self,
        raw_movie: &str,
    ) -> Result<(MovieId, Vec<DayWithShows>), BookingError> {
        let movie = self.booking.movie(raw_movie).await?;
        let now = self.ports.clock.now();
        let shows = self.ports.catalog.list_shows(movie.movie_id, None).await?;
        let mut days: Vec<DayWithShows> = Vec::new();
        for show in shows
            .iter()
            .filter(|s| s.starts_at > now && !s.is_cancelled())
        {
            match days.last_mut() {
                Some(day) if day.date == show.date() => day.shows += 1,
                _ => days.push(DayWithShows {
                    date: show.date(),
                    shows: 1,
                    first_starts_at: show.starts_at,
                }),
            }
        }
        Ok((movie.movie_id, days))
    }
}

fn invalid(e: FieldError) -> BookingError {
    BookingError::InvalidCatalog(vec![e.into()])
}

/// How a refused value is named: in a file (`shows[2].movieId`) or in a one-show write
/// (`movieId`).
#[derive(Debug, Clone, Copy)]
enum Paths {
    OfFile,
    OfOne,
}

/// A store's refusal in the caller's terms, naming the show of the write it concerns.
fn catalog_error(e: CatalogError, shows: &[Show], paths: Paths) -> BookingError {
    match e {
        CatalogError::MovieNotFound { show, movie } => {
            let index = shows.iter().position(|s| s.show_id == show);
            let field = match (paths, index) {
                (Paths::OfFile, Some(i)) => format!("shows[{i}].movieId"),
                _ => "movieId".to_owned(),
            };
            BookingError::InvalidCatalog(vec![
                FieldError::new(
                    field,
                    format!("no movie {movie} in the catalog or the file"),
                )
                .into(),
            ])
        }
        CatalogError::OnSale(show) => BookingError::ShowOnSale(show),
        CatalogError::Cancelled(show) => BookingError::ShowCancelled(show),
        CatalogError::Store(e) => BookingError::Store(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn today() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 1, 10, 9, 30, 0).unwrap()
    }

    #[test]
    fn the_demo_file_reads_with_its_shows_after_the_import_day() {
        let catalog = parse_catalog(crate::demo::DEMO_CATALOG, today()).unwrap();
        assert_eq!(catalog.movies.len(), 2);
        assert_eq!(catalog.shows.len(), 4);
        let premiere = &catalog.shows[0];
        assert_eq!(
            premiere.starts_at,
            Utc.with_ymd_and_hms(2027, 1, 11, 20, 0, 0).unwrap()
        );
        assert_eq!(premiere.layout.len(), 500);
    }

    #[test]
    fn a_json_error_names_its_line_column_and_field() {
        let text = "{\n  \"movies\": [\n    { \"movieId\": 7 }\n  ]\n}";
        let issues = parse_catalog(text, today()).unwrap_err();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].field, "movies[0].movieId");
        assert_eq!(issues[0].line, Some(3));
        let issues = parse_catalog("{\"movies\": [}", today()).unwrap_err();
        assert!(issues[0].line.is_some());
        let issues = parse_catalog("{\"cinemas\": []}", today()).unwrap_err();
        assert!(issues[0].message.contains("unknown field"), "{issues:?}");
    }

    #[test]
    fn every_bad_value_is_reported_with_its_path() {
        let text = r#"{
          "halls": [{ "name": "H", "layout": { "categories": [
              { "code": "STD", "name": "Std", "priceCents": 900, "currency": "EUR" }],
              "rows": [{ "row": "A", "seats": 5, "category": "STD" }] } }],
          "movies": [{ "movieId": "6d0c1a6e-8f1e-4c3a-9b2d-0000000000aa", "title": "",
                       "durationMinutes": 90, "language": "en" }],
          "shows": [
            { "showId": "5e0c1a6e-8f1e-4c3a-9b2d-0000000000aa",
              "movieId": "6d0c1a6e-8f1e-4c3a-9b2d-0000000000aa",
              "startsAt": "+1d 20:00", "hall": "Nowhere" },
            { "showId": "5e0c1a6e-8f1e-4c3a-9b2d-0000000000ab",
              "movieId": "6d0c1a6e-8f1e-4c3a-9b2d-0000000000aa",
              "startsAt": "+1d 21:00", "hall": "H", "prices": { "VIP": 100 } },
            { "showId": "5e0c1a6e-8f1e-4c3a-9b2d-0000000000ac",
              "movieId": "6d0c1a6e-8f1e-4c3a-9b2d-0000000000aa",
              "startsAt": "+1d 22:00", "hall": "H", "blocked": ["B1"] }
          ] }"#;
        let fields: Vec<String> = parse_catalog(text, today())
            .unwrap_err()
            .into_iter()
            .map(|i| i.field)
            .collect();
        assert_eq!(
            fields,
            [
                "movies[0].title",
                "shows[0].hall",
                "shows[1].prices.VIP",
                "shows[2].layout.blocked"
            ]
        );
    }

    #[test]
    fn start_times_are_instants_or_days_after_the_import() {
        let parse = |s: &str| serde_json::from_value::<StartTime>(serde_json::json!(s));
        assert_eq!(
            parse("2027-02-01T19:30:00+01:00").unwrap(),
            StartTime::At(Utc.with_ymd_and_hms(2027, 2, 1, 18, 30, 0).unwrap())
        );
        assert_eq!(
            parse("+3d 07:05")
                .unwrap()
                .resolve(today().date_naive())
                .unwrap(),
            Utc.with_ymd_and_hms(2027, 1, 13, 7, 5, 0).unwrap()
        );
        for bad in ["tomorrow", "+1d", "+xd 10:00", "+1d 25:00", "2027-02-01"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
