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
    use serde_json::json;

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
}
