//! The WebSocket messages of the contract (docs/API.md), byte for byte the same locally and on
//! API Gateway. Kept in the core so every notifier adapter serialises the one definition.

use crate::engine::SeatChange;
use crate::ids::{HoldId, OrderId, RequestId, SeatId, ShowId};
use crate::model::{RequestStatus, SeatStatus};
use crate::order::OrderStatus;
use serde::{Deserialize, Serialize};

/// `{"type":"BOOKING_RESULT", ...}`: a request's outcome, to its owner only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingResult {
    pub request_id: RequestId,
    pub status: RequestStatus,
    pub hold_id: Option<HoldId>,
    pub seat_ids: Vec<SeatId>,
    pub message: String,
}

/// One seat in a `SEATS_CHANGED` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatState {
    pub seat_id: SeatId,
    pub status: SeatStatus,
}

impl From<SeatChange> for SeatState {
    fn from(c: SeatChange) -> Self {
        Self {
            seat_id: c.seat_id,
            status: c.status,
        }
    }
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    #[serde(rename = "BOOKING_RESULT")]
    BookingResult(BookingResult),
    #[serde(rename = "SEATS_CHANGED", rename_all = "camelCase")]
    SeatsChanged {
        show_id: ShowId,
        seats: Vec<SeatState>,
    },
    /// A hold of the recipient's ran out; its seats are free again.
    #[serde(rename = "HOLD_EXPIRED", rename_all = "camelCase")]
    HoldExpired {
        hold_id: HoldId,
        show_id: ShowId,
        seat_ids: Vec<SeatId>,
    },
    /// An order of the recipient's changed state (confirmed, failed, expired, cancelled).
    #[serde(rename = "ORDER_UPDATED", rename_all = "camelCase")]
    OrderUpdated {
        order_id: OrderId,
        status: OrderStatus,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        ticket_code: Option<String>,
    },
    /// A show the recipient had a request, a hold or an order for was cancelled: their requests
    /// ended FAILED, their holds were released, their orders cancelled (paid ones refunded), each
    /// also told in its own message.
    #[serde(rename = "SHOW_CANCELLED", rename_all = "camelCase")]
    ShowCancelled { show_id: ShowId, reason: String },
    /// The recipient's place in a show's waiting room: sent when they are let in (with the
    /// admission token), and while they wait, now and then (coalesced: not at every admission).
    #[serde(rename = "WAITING_ROOM_POSITION", rename_all = "camelCase")]
    WaitingRoomPosition {
        show_id: ShowId,
        ticket: u64,
        /// WAITING or ADMITTED.
        state: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        position: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        estimated_wait_seconds: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        admission_token: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        admission_expires_at: Option<chrono::DateTime<chrono::Utc>>,
        /// ADMITTED: ask for seats before this, or the admission lapses.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        admitted_until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Acknowledges a `subscribe`: from now on this connection gets the show's SEATS_CHANGED.
    #[serde(rename = "SUBSCRIBED", rename_all = "camelCase")]
    Subscribed { show_id: ShowId },
    #[serde(rename = "pong")]
    Pong,
    /// A client message that could not be understood; the connection stays open.
    #[serde(rename = "ERROR")]
    Error { code: String, message: String },
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum ClientMessage {
    #[serde(rename_all = "camelCase")]
    Subscribe {
        show_id: ShowId,
    },
    #[serde(rename_all = "camelCase")]
    Unsubscribe {
        show_id: ShowId,
    },
    Ping,
}

/// Most shows one WebSocket connection may watch at once (the local hub and the deployed registry
/// alike): a page shows one show, a few tabs a few; a script watching every show is refused.
pub const MAX_SUBSCRIPTIONS: usize = 32;

/// Most WebSocket connections one user may hold at once, unless configured
/// (`MAX_SOCKETS_PER_USER`): a fan has a phone and a laptop; a script opening thousands is
/// refused.
pub const DEFAULT_MAX_SOCKETS_PER_USER: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn messages_match_the_contract() {
        let r = RequestId::new_random();
        let msg = ServerMessage::BookingResult(BookingResult {
            request_id: r,
            status: RequestStatus::Failed,
            hold_id: None,
            seat_ids: vec!["A1".parse().unwrap()],
            message: "Seat A1 is no longer available".into(),
        });
        assert_eq!(
            serde_json::to_value(&msg).unwrap(),
            json!({"type":"BOOKING_RESULT","requestId":r.to_string(),"status":"FAILED","holdId":null,"seatIds":["A1"],"message":"Seat A1 is no longer available"})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::Pong).unwrap(),
            json!({"type":"pong"})
        );
        let s = ShowId::new_random();
        let parsed: ClientMessage =
            serde_json::from_value(json!({"action":"subscribe","showId":s.to_string()})).unwrap();
        assert_eq!(parsed, ClientMessage::Subscribe { show_id: s });
        assert_eq!(
            serde_json::from_str::<ClientMessage>(r#"{"action":"ping"}"#).unwrap(),
            ClientMessage::Ping
        );
        let changed = ServerMessage::SeatsChanged {
            show_id: s,
            seats: vec![SeatState {
                seat_id: "B2".parse().unwrap(),
                status: SeatStatus::Held,
            }],
        };
        let o = OrderId::new_random();
        assert_eq!(
            serde_json::to_value(ServerMessage::OrderUpdated {
                order_id: o,
                status: OrderStatus::Confirmed,
                ticket_code: Some("TKT-1".into()),
            })
            .unwrap(),
            json!({"type":"ORDER_UPDATED","orderId":o.to_string(),"status":"CONFIRMED","ticketCode":"TKT-1"})
        );
        let h = HoldId::new_random();
        assert_eq!(
            serde_json::to_value(ServerMessage::HoldExpired {
                hold_id: h,
                show_id: s,
                seat_ids: vec!["A1".parse().unwrap()],
            })
            .unwrap(),
            json!({"type":"HOLD_EXPIRED","holdId":h.to_string(),"showId":s.to_string(),"seatIds":["A1"]})
        );
        assert_eq!(
            serde_json::to_value(changed).unwrap(),
            json!({"type":"SEATS_CHANGED","showId":s.to_string(),"seats":[{"seatId":"B2","status":"HELD"}]})
        );
    }

    /// The published schema of the WebSocket messages (docs/websocket-messages.schema.json).
    const SCHEMA: &str = include_str!("../../../docs/websocket-messages.schema.json");

    /// Checks `value` against `node` of the schema, for the keywords the schema uses (`$ref`,
    /// `oneOf`, `const`, `enum`, `type` (object, array, string, integer, null), `properties`, `required`, `additionalProperties`,
    /// `items`); patterns are left to the id types' own parsers.
    fn conforms(root: &Value, node: &Value, value: &Value) -> Result<(), String> {
        if let Some(reference) = node.get("$ref").and_then(Value::as_str) {
            let name = reference.strip_prefix("#/$defs/").expect("local reference");
            return conforms(root, &root["$defs"][name], value);
        }
        if let Some(choices) = node.get("oneOf").and_then(Value::as_array) {
            let fits = choices
                .iter()
                .filter(|c| conforms(root, c, value).is_ok())
                .count();
            return if fits == 1 {
                Ok(())
            } else {
                Err(format!("{value} fits {fits} of {} choices", choices.len()))
            };
        }
        if let Some(want) = node.get("const")
            && want != value
        {
            return Err(format!("{value} is not {want}"));
        }
        if let Some(allowed) = node.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            return Err(format!("{value} is not one of {allowed:?}"));
        }
        let fits_type = match node.get("type").and_then(Value::as_str) {
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_u64() || value.is_i64(),
            Some("null") => value.is_null(),
            Some(other) => panic!("the checker does not know type {other}"),
        };
        if !fits_type {
            return Err(format!("{value} is not of type {}", node["type"]));
        }
        if let (Some(object), Some(properties)) = (value.as_object(), node.get("properties")) {
            for key in node["required"].as_array().into_iter().flatten() {
                let key = key.as_str().expect("key");
                if !object.contains_key(key) {
                    return Err(format!("{value} lacks {key}"));
                }
            }
            for (key, field) in object {
                match properties.get(key) {
                    Some(schema) => {
                        conforms(root, schema, field).map_err(|e| format!("{key}: {e}"))?
                    }
                    None if node["additionalProperties"] == false => {
                        return Err(format!("{value} has {key}, which the schema does not name"));
                    }
                    None => {}
                }
            }
        }
        if let (Some(items), Some(schema)) = (value.as_array(), node.get("items")) {
            for item in items {
                conforms(root, schema, item)?;
            }
        }
        Ok(())
    }

    fn one_of_each_server_message() -> Vec<ServerMessage> {
        let show = ShowId::new_random();
        let seat: SeatId = "C7".parse().unwrap();
        let mut messages = vec![];
        for status in [
            RequestStatus::Success,
            RequestStatus::Failed,
            RequestStatus::Expired,
        ] {
            messages.push(ServerMessage::BookingResult(BookingResult {
                request_id: RequestId::new_random(),
                status,
                hold_id: (status == RequestStatus::Success).then(HoldId::new_random),
                seat_ids: vec![seat],
                message: "m".into(),
            }));
        }
        messages.push(ServerMessage::SeatsChanged {
            show_id: show,
            seats: SeatStatus::ALL
                .iter()
                .map(|&status| SeatState {
                    seat_id: seat,
                    status,
                })
                .collect(),
        });
        messages.push(ServerMessage::HoldExpired {
            hold_id: HoldId::new_random(),
            show_id: show,
            seat_ids: vec![seat],
        });
        for &status in OrderStatus::ALL {
            messages.push(ServerMessage::OrderUpdated {
                order_id: OrderId::new_random(),
                status,
                ticket_code: (status == OrderStatus::Confirmed)
                    .then(|| "TKT-4QK7-ZC1M-X0DP-B2N9".to_owned()),
            });
        }
        messages.push(ServerMessage::ShowCancelled {
            show_id: show,
            reason: String::new(),
        });
        messages.push(ServerMessage::WaitingRoomPosition {
            show_id: show,
            ticket: 7,
            state: "WAITING".into(),
            position: Some(3),
            estimated_wait_seconds: Some(1),
            admission_token: None,
            admission_expires_at: None,
            admitted_until: None,
        });
        messages.push(ServerMessage::WaitingRoomPosition {
            show_id: show,
            ticket: 8,
            state: "ADMITTED".into(),
            position: None,
            estimated_wait_seconds: None,
            admission_token: Some("a.b.c".into()),
            admission_expires_at: Some(chrono::DateTime::UNIX_EPOCH),
            admitted_until: Some(chrono::DateTime::UNIX_EPOCH),
        });
        messages.push(ServerMessage::Subscribed { show_id: show });
        messages.push(ServerMessage::Pong);
        messages.push(ServerMessage::Error {
            code: "INVALID_MESSAGE".into(),
            message: "m".into(),
        });
        messages
    }

    #[test]
    fn every_server_message_conforms_to_the_published_schema_and_every_type_there_is_sent() {
        let root: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
        let server = &root["$defs"]["ServerMessage"];
        let mut types_sent = std::collections::BTreeSet::new();
        for message in one_of_each_server_message() {
            let value = serde_json::to_value(&message).unwrap();
            conforms(&root, server, &value).unwrap_or_else(|e| panic!("{value}: {e}"));
            types_sent.insert(value["type"].as_str().unwrap().to_owned());
        }
        let described: std::collections::BTreeSet<String> = server["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["$ref"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("#/$defs/")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            types_sent, described,
            "the schema describes exactly the messages sent"
        );
        // And it is not a schema that takes anything.
        for wrong in [
            json!({"type": "SUBSCRIBED"}),
            json!({"type": "pong", "extra": 1}),
            json!({"type": "ORDER_UPDATED", "orderId": "x", "status": "PAID"}),
            json!({"type": "NOPE"}),
        ] {
            assert!(conforms(&root, server, &wrong).is_err(), "{wrong} passed");
        }
    }

    #[test]
    fn every_client_message_the_schema_describes_is_understood() {
        let root: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
        let show = ShowId::new_random();
        let client = &root["$defs"]["ClientMessage"];
        for message in [
            ClientMessage::Subscribe { show_id: show },
            ClientMessage::Unsubscribe { show_id: show },
            ClientMessage::Ping,
        ] {
            let value = serde_json::to_value(&message).unwrap();
            conforms(&root, client, &value).unwrap_or_else(|e| panic!("{value}: {e}"));
            let back: ClientMessage = serde_json::from_value(value).unwrap();
            assert_eq!(back, message);
        }
        assert_eq!(client["oneOf"].as_array().unwrap().len(), 3);
    }
}
