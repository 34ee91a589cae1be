//! Catalog administration as an operator does it, on both backends: a movie and a show with its
//! own hall made over the admin API and sold; prices and blocked seats changed before sales and
//! refused once on sale; validation that names the field and writes nothing; a whole catalog file
//! posted twice (the second time changes nothing) and a broken one that writes nothing; and
//! `seatbook import FILE` on the real binary, whose catalog the server then serves.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::process::Command;
use support::*;

fn layout() -> Value {
    json!({
        "categories": [
            { "code": "STALLS", "name": "Stalls", "priceCents": 950, "currency": "GBP" },
            { "code": "CIRCLE", "name": "Circle", "priceCents": 1350, "currency": "GBP" }
        ],
        "rows": [
            { "row": "A", "seats": 6, "category": "STALLS" },
            { "row": "B", "seats": 8, "category": "STALLS" },
            { "row": "C", "seats": 8, "category": "CIRCLE" }
        ],
        "blocked": ["A1"]
    })
}

fn movie_body(title: &str) -> Value {
    json!({
        "title": title,
        "description": "A film for catalog tests.",
        "durationMinutes": 101,
        "rating": "12A",
        "genres": ["Drama"],
        "language": "en-GB"
    })
}

async fn create_movie(c: &reqwest::Client, server: &TestApp, admin: &str, title: &str) -> String {
    let (status, movie) = post(
        c,
        server,
        "/api/v1/admin/movies",
        Some(admin),
        movie_body(title),
    )
    .await;
    assert_eq!(status, 201, "{movie}");
    movie["movieId"].as_str().unwrap().to_owned()
}

on_every_backend!(
    an_operator_builds_a_show_and_sells_it,
    catalog_writes_are_checked_and_write_nothing_when_refused,
    a_catalog_file_is_written_whole_and_once
);

async fn an_operator_builds_a_show_and_sells_it(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("operator");
    let movie = create_movie(&c, &server, &admin, "Brief Encounter").await;
    let (status, listed) = get(&c, &server, &format!("/api/v1/movies/{movie}"), None).await;
    assert_eq!(
        (status, listed["title"].as_str()),
        (200, Some("Brief Encounter"))
    );

    let starts_at = (chrono::Utc::now() + chrono::Duration::days(3))
        .format("%Y-%m-%dT19:30:00Z")
        .to_string();
    let show_body = |layout: Value, starts_at: &str| json!({ "movieId": movie, "startsAt": starts_at, "auditorium": "Screen 1", "layout": layout });
    let (status, show) = post(
        &c,
        &server,
        "/api/v1/admin/shows",
        Some(&admin),
        show_body(layout(), &starts_at),
    )
    .await;
    assert_eq!(status, 201, "{show}");
    assert_eq!(show["totalSeats"], 22);
    let show_id = show["showId"].as_str().unwrap().to_owned();
    let seats = seat_status(&c, &server, &show_id).await;
    assert_eq!(seats["A1"], "BLOCKED");
    assert_eq!(seats["C8"], "AVAILABLE");

    // Before sales: a new price and another blocked seat.
    let mut repriced = layout();
    repriced["categories"][1]["priceCents"] = json!(1500);
    repriced["blocked"] = json!(["A1", "A6"]);
    let (status, body) = put(
        &c,
        &server,
        &format!("/api/v1/admin/shows/{show_id}"),
        Some(&admin),
        show_body(repriced.clone(), &starts_at),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seat_status(&c, &server, &show_id).await["A6"], "BLOCKED");

    // The dates with shows, for a date picker.
    let (status, days) = get(
        &c,
        &server,
        &format!("/api/v1/movies/{movie}/availability"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{days}");
    assert_eq!(days["dates"].as_array().unwrap().len(), 1, "{days}");
    assert_eq!(days["dates"][0]["date"], &starts_at[..10]);
    assert_eq!(days["dates"][0]["shows"], 1);

    // It sells, at the new price.
    let buyer = token("first-buyer");
    let (status, accepted) = hold(&c, &server, &buyer, &show_id, &["C1", "C2"]).await;
    assert_eq!(status, 202, "{accepted}");
    server.drain().await;
    let result = wait_terminal(&c, &server, &buyer, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    let hold_id = result["holdId"].as_str().unwrap();
    let (_, h) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{hold_id}"),
        Some(&buyer),
    )
    .await;
    assert_eq!(
        (h["amountCents"].as_i64(), h["currency"].as_str()),
        (Some(3000), Some("GBP"))
    );

    // On sale: the seats and prices are fixed; the time may still move.
    let mut cheaper = repriced.clone();
    cheaper["categories"][1]["priceCents"] = json!(100);
    let (status, refused) = put(
        &c,
        &server,
        &format!("/api/v1/admin/shows/{show_id}"),
        Some(&admin),
        show_body(cheaper, &starts_at),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "SHOW_ON_SALE");
    assert_eq!(refused["error"]["details"]["showId"], show_id.as_str());
    let later = starts_at.replace("19:30", "20:15");
    let (status, moved) = put(
        &c,
        &server,
        &format!("/api/v1/admin/shows/{show_id}"),
        Some(&admin),
        show_body(repriced, &later),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    let (_, shows) = get(&c, &server, &format!("/api/v1/movies/{movie}/shows"), None).await;
    assert_eq!(shows["shows"][0]["startsAt"], later.as_str());
    assert_eq!(seat_status(&c, &server, &show_id).await["C1"], "HELD");
}

async fn catalog_writes_are_checked_and_write_nothing_when_refused(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("operator");
    let movies_before = get(&c, &server, "/api/v1/movies", None).await.1["movies"]
        .as_array()
        .unwrap()
        .len();

    // Only admins write the catalog.
    let (status, _) = post(&c, &server, "/api/v1/admin/movies", None, movie_body("X")).await;
    assert_eq!(status, 401);
    let (status, body) = post(
        &c,
        &server,
        "/api/v1/admin/movies",
        Some(&token("fan")),
        movie_body("X"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );

    // Each refusal names its field, and nothing is written.
    let mut cases: Vec<(Value, &str)> = Vec::new();
    let mut m = movie_body("");
    cases.push((m.clone(), "title"));
    m = movie_body("ok");
    m["durationMinutes"] = json!(0);
    cases.push((m.clone(), "durationMinutes"));
    m = movie_body("ok");
    m["language"] = json!("en'); DROP TABLE movies; --");
    cases.push((m.clone(), "language"));
    m = movie_body("ok");
    m["genres"] = json!(["x".repeat(51)]);
    cases.push((m, "genres[0]"));
    for (body, field) in cases {
        let (status, refused) = post(&c, &server, "/api/v1/admin/movies", Some(&admin), body).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["error"]["code"], "INVALID_CATALOG");
        assert_eq!(
            refused["error"]["details"]["issues"][0]["field"], field,
            "{refused}"
        );
    }
    // Wrong types and unknown fields are the JSON layer's 400.
    let mut typo = movie_body("ok");
    typo["durationMinutes"] = json!("ninety");
    let (status, _) = post(&c, &server, "/api/v1/admin/movies", Some(&admin), typo).await;
    assert_eq!(status, 400);
    let mut unknown = movie_body("ok");
    unknown["budget"] = json!(1);
    let (status, _) = post(&c, &server, "/api/v1/admin/movies", Some(&admin), unknown).await;
    assert_eq!(status, 400);
    // Injection text is only text: stored and shown as given.
    let hostile = "Robert'); DROP TABLE movies; -- <script>alert(1)</script>";
    let movie = create_movie(&c, &server, &admin, hostile).await;
    let (_, read) = get(&c, &server, &format!("/api/v1/movies/{movie}"), None).await;
    assert_eq!(read["title"], hostile);
    let movies_after = get(&c, &server, "/api/v1/movies", None).await.1["movies"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        movies_after,
        movies_before + 1,
        "only the valid movie was written"
    );

    // Shows: bad layouts, a missing movie, a mixed currency, an oversized hall.
    let show_body = |movie: &str, layout: Value| json!({ "movieId": movie, "startsAt": "2031-01-01T20:00:00Z", "auditorium": "S", "layout": layout });
    let mut duplicate_row = layout();
    duplicate_row["rows"][2]["row"] = json!("A");
    let mut mixed = layout();
    mixed["categories"][1]["currency"] = json!("EUR");
    let mut huge = layout();
    huge["rows"] = json!((0..26)
        .map(|r| json!({ "row": ((b'A' + r as u8) as char).to_string(), "seats": 999, "category": "STALLS" }))
        .collect::<Vec<_>>());
    let mut outside = layout();
    outside["blocked"] = json!(["Z9"]);
    let no_movie = "6d0c1a6e-8f1e-4c3a-9b2d-00000000dead";
    for (body, field) in [
        (show_body(&movie, duplicate_row), "layout.rows[2].row"),
        (show_body(&movie, mixed), "layout.categories[1].currency"),
        (show_body(&movie, huge), "layout.rows"),
        (show_body(&movie, outside), "layout.blocked"),
        (show_body(no_movie, layout()), "movieId"),
    ] {
        let (status, refused) = post(&c, &server, "/api/v1/admin/shows", Some(&admin), body).await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(
            refused["error"]["details"]["issues"][0]["field"], field,
            "{refused}"
        );
    }
    let (_, shows) = get(&c, &server, &format!("/api/v1/movies/{movie}/shows"), None).await;
    assert_eq!(shows["shows"], json!([]), "no refused show was written");
    // A malformed id in the path is a 404, like every unknown id.
    let (status, _) = put(
        &c,
        &server,
        "/api/v1/admin/shows/not-a-uuid",
        Some(&admin),
        show_body(&movie, layout()),
    )
    .await;
    assert_eq!(status, 404);
}

/// A catalog file of its own ids (so tests on one database do not collide).
fn catalog_file(tag: u32) -> Value {
    let id = |kind: &str, n: u32| format!("{kind}-8f1e-4c3a-9b2d-{tag:06x}{n:06x}");
    json!({
        "halls": [{ "name": "Screen 7", "layout": layout() }],
        "movies": [
            { "movieId": id("6d0c1a6e", 1), "title": "Night Train", "durationMinutes": 95, "language": "de" },
            { "movieId": id("6d0c1a6e", 2), "title": "Day Boat", "durationMinutes": 80, "language": "fr" }
        ],
        "shows": [
            { "showId": id("5e0c1a6e", 1), "movieId": id("6d0c1a6e", 1), "startsAt": "+2d 18:00", "hall": "Screen 7" },
            { "showId": id("5e0c1a6e", 2), "movieId": id("6d0c1a6e", 1), "startsAt": "+2d 21:00", "hall": "Screen 7",
              "prices": { "CIRCLE": 1800 } },
            { "showId": id("5e0c1a6e", 3), "movieId": id("6d0c1a6e", 2), "startsAt": "2031-06-01T15:00:00Z",
              "auditorium": "Garden", "layout": layout(), "blocked": [] }
        ]
    })
}

async fn post_catalog(
    c: &reqwest::Client,
    server: &TestApp,
    admin: &str,
    body: String,
) -> (u16, Value) {
    json_of(
        c.post(server.url("/api/v1/admin/catalog"))
            .bearer_auth(admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn a_catalog_file_is_written_whole_and_once(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("operator");
    let file = catalog_file(0x42);
    let text = serde_json::to_string_pretty(&file).unwrap();

    let (status, written) = post_catalog(&c, &server, &admin, text.clone()).await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(
        written,
        json!({ "moviesCreated": 2, "moviesUpdated": 0, "moviesUnchanged": 0,
                "showsCreated": 3, "showsUpdated": 0, "showsUnchanged": 0 })
    );
    let late_show = file["shows"][1]["showId"].as_str().unwrap();
    let (_, map) = get(
        &c,
        &server,
        &format!("/api/v1/shows/{late_show}/seatmap"),
        None,
    )
    .await;
    assert_eq!(
        map["categories"][1]["priceCents"], 1800,
        "the show's own price"
    );
    let (_, garden) = get(
        &c,
        &server,
        &format!(
            "/api/v1/shows/{}/seatmap",
            file["shows"][2]["showId"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(
        garden["summary"]["blocked"], 0,
        "the show's own blocked list"
    );

    // Again: nothing changes.
    let (status, again) = post_catalog(&c, &server, &admin, text).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (
            again["moviesUnchanged"].as_u64(),
            again["showsUnchanged"].as_u64()
        ),
        (Some(2), Some(3))
    );

    // A file with one bad show among new movies writes none of it.
    let mut broken = catalog_file(0x43);
    broken["shows"][2]["startsAt"] = json!("next tuesday");
    let (status, refused) = post_catalog(
        &c,
        &server,
        &admin,
        serde_json::to_string_pretty(&broken).unwrap(),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let issue = &refused["error"]["details"]["issues"][0];
    assert_eq!(issue["field"], "shows[2].startsAt", "{refused}");
    assert!(issue["line"].as_u64().unwrap() > 1, "{refused}");
    let mut semantic = catalog_file(0x44);
    semantic["shows"][0]["hall"] = json!("Screen 99");
    semantic["movies"][1]["title"] = json!("");
    let (status, refused) = post_catalog(&c, &server, &admin, semantic.to_string()).await;
    assert_eq!(status, 422, "{refused}");
    let fields: Vec<&str> = refused["error"]["details"]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["movies[1].title", "shows[0].hall"]);
    for file in [&broken, &semantic] {
        let movie = file["movies"][0]["movieId"].as_str().unwrap();
        let (status, _) = get(&c, &server, &format!("/api/v1/movies/{movie}"), None).await;
        assert_eq!(status, 404, "nothing of a refused file is written");
    }
    let (status, refused) = post_catalog(&c, &server, &admin, "{\n  \"movies\": [\n".into()).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]["details"]["issues"][0]["line"].is_number(),
        "{refused}"
    );
}

/// `seatbook import FILE` writes into the store the server then opens (so the demo is not
/// seeded), says what it did, repeats as a no-op, and names the line of a broken file.
#[test]
fn seatbook_import_loads_the_catalog_the_server_serves() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("catalog.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&catalog_file(0x45)).unwrap(),
    )
    .unwrap();
    let import = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_seatbook"))
            .arg("import")
            .arg(path)
            .env("DATA_DIR", data.path())
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run seatbook import")
    };
    let first = import(&file);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("movies 2 new") && stdout.contains("shows 3 new"),
        "{stdout}"
    );
    let second = import(&file);
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("shows 0 new, 0 changed, 3 unchanged")
    );

    let bad = data.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"movies\": [\n    { \"movieId\": 7 }\n  ]\n}\n").unwrap();
    let refused = import(&bad);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("line 3") && stderr.contains("movies[0].movieId"),
        "{stderr}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Server::start_in(data, &[]);
        let c = client();
        let (_, movies) = get(&c, &server, "/api/v1/movies", None).await;
        let titles: Vec<&str> = movies["movies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["title"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            ["Day Boat", "Night Train"],
            "the imported catalog, no demo"
        );
    });
}
