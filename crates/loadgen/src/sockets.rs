//! The users' WebSockets during a run: connecting each one (ping/pong verified, subscribed when
//! asked), reading what the server pushes, where every BOOKING_RESULT's arrival time is the end
//! of that request's POST → result latency, and connecting again when a `--kill` restart
//! dropped them.

use crate::run::{Ctx, SETUP_TIMEOUT, Ws};
use crate::stats::{Outcome, Stats};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

/// Each socket's read buffer. tungstenite's default, 128 KiB a socket, made the tool's own
/// sockets cost 1.3 GiB at 10,000 users; the server's messages are a few KiB at most, and a
/// larger one is simply read in several chunks.
const READ_BUFFER: usize = 4 * 1024;

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(rename = "requestId", default, borrow)]
    request_id: Option<&'a str>,
    #[serde(default, borrow)]
    status: Option<&'a str>,
    #[serde(rename = "holdId", default, borrow)]
    hold_id: Option<&'a str>,
}

/// Reads messages until one of type `kind` arrives (others, e.g. stale results, are skipped).
async fn wait_for(ws: &mut Ws, kind: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| format!("no {kind} within {SETUP_TIMEOUT:?}"))?
            .ok_or_else(|| format!("closed before {kind}"))?
            .map_err(|e| format!("error before {kind}: {e}"))?;
        if let Message::Text(t) = msg
            && serde_json::from_str::<Incoming>(t.as_str()).is_ok_and(|m| m.kind == kind)
        {
            return Ok(());
        }
    }
}

/// Opens one user's WebSocket and proves it live with ping → pong (and subscribes it to
/// `subscribe_to`, if given). `who` names the user in errors.
pub(crate) async fn open(
    ws_base: &str,
    token: &str,
    who: &str,
    subscribe_to: Option<&str>,
) -> Result<Ws, String> {
    let url = format!("{ws_base}/ws?token={token}");
    let (mut ws, _) = tokio::time::timeout(
        SETUP_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(
            url,
            Some(WebSocketConfig::default().read_buffer_size(READ_BUFFER)),
            true,
        ),
    )
    .await
    .map_err(|_| format!("{who}: WebSocket connect timed out"))?
    .map_err(|e| format!("{who}: WebSocket connect: {e}"))?;
    ws.send(Message::text(r#"{"action":"ping"}"#))
        .await
        .map_err(|e| format!("{who}: send ping: {e}"))?;
    wait_for(&mut ws, "pong")
        .await
        .map_err(|e| format!("{who}: {e}"))?;
    if let Some(show) = subscribe_to {
        let sub = serde_json::json!({"action": "subscribe", "showId": show}).to_string();
        ws.send(Message::text(sub))
            .await
            .map_err(|e| format!("{who}: send subscribe: {e}"))?;
        wait_for(&mut ws, "SUBSCRIBED")
            .await
            .map_err(|e| format!("{who}: {e}"))?;
    }
    Ok(ws)
}

/// A flash-sale user's WebSocket: opened, and its task running (it reads what the server
/// pushes, reconnects after a `--kill` restart, and closes the socket when the run ends).
pub(crate) async fn connect_user(
    ctx: Arc<Ctx>,
    index: usize,
    token: String,
) -> Result<JoinHandle<()>, String> {
    let who = format!("{}{}", ctx.opts.user_prefix, index + 1);
    let subscribe = ctx.opts.subscribe.then_some(ctx.opts.show.as_str());
    let ws = open(&ctx.opts.ws_base, &token, &who, subscribe).await?;
    Ok(tokio::spawn(serve_user(ctx, who, token, ws)))
}

async fn serve_user(ctx: Arc<Ctx>, who: String, token: String, mut ws: Ws) {
    let mut closing = ctx.closing.subscribe();
    loop {
        let ended = loop {
            tokio::select! {
                msg = ws.next() => {
                    let received = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(text))) => on_message(&ctx.stats, text.as_str(), received),
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break true,
                        Some(Ok(_)) => {}
                    }
                }
                _ = closing.wait_for(|c| *c) => break false,
            }
        };
        if !ended {
            close(&mut ws).await;
            return;
        }
        if ctx.finished.load(Ordering::Relaxed) {
            return;
        }
        if ctx.opts.faults.kills == 0 {
            ctx.stats.ws_closed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The server is restarting (--kill): connect again once it listens, until the run ends.
        ctx.stats.ws_reconnects.fetch_add(1, Ordering::Relaxed);
        let subscribe = ctx.opts.subscribe.then_some(ctx.opts.show.as_str());
        ws = loop {
            if ctx.finished.load(Ordering::Relaxed) || *closing.borrow() {
                return;
            }
            match open(&ctx.opts.ws_base, &token, &who, subscribe).await {
                Ok(ws) => break ws,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
    }
}

/// The run is over: close, and read on to the server's close frame (bounded), so that the
/// server sees a clean close.
pub(crate) async fn close(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Books a pushed message: a BOOKING_RESULT completes its request's record in `stats`.
pub(crate) fn on_message(stats: &Stats, text: &str, received: Instant) {
    let Ok(msg) = serde_json::from_str::<Incoming>(text) else {
        stats.ws_unparsed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if msg.kind != "BOOKING_RESULT" {
        return;
    }
    match msg.request_id.map(Uuid::parse_str) {
        Some(Ok(id)) => {
            let outcome = Outcome::parse(msg.status.unwrap_or(""));
            let hold_id = msg.hold_id.and_then(|h| Uuid::parse_str(h).ok());
            stats.result(id, outcome, hold_id, received);
        }
        _ => {
            stats.ws_unparsed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
