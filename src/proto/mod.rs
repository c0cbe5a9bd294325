//! MQTT 3.1.1 client core (placeholder docs, see below).
pub mod codec;
pub mod engine;
pub mod rc;
pub mod url;

pub use codec::{validate_topic_filter, validate_topic_name, ConnectParams, QoS, Sink, Will};
pub use engine::{
    validate_connect_params, Action, Config, Engine, Entry, EntryState, Event, Inbox, Instant, Kind,
    LostReason, Queue, Request,
};
pub use rc::{description, lost_reason_text};
