//! `seatbook watch`: a minimal WebSocket client for trying the API by hand, so the walkthrough
//! needs no extra tool. Prints every message the server pushes, one JSON document per line.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

pub fn run(args: &[String]) -> Result<(), String> {
    let mut url = "ws://127.0.0.1:3000".to_owned();
    let mut token = None;
    let mut shows = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--url" => url = value()?,
            "--token" => token = Some(value()?),
            "--show" => shows.push(value()?),
            other => {
                return Err(format!(
                    "unknown option {other:?}; usage: seatbook watch --token JWT [--show ID]... [--url ws://HOST:PORT]"
                ));
            }
        }
    }
    let token = token.ok_or("watch needs --token (mint one with `seatbook token <user>`)")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!(
            "{}/ws?token={token}",
            url.trim_end_matches('/')
        ))
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        for show in shows {
            let subscribe =
                serde_json::json!({ "action": "subscribe", "showId": show }).to_string();
            ws.send(Message::Text(subscribe.into()))
                .await
                .map_err(|e| e.to_string())?;
        }
        eprintln!("connected; printing pushes (Ctrl-C to stop)");
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => println!("{text}"),
                    Some(Ok(Message::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                },
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })
}
