//! mirrorcache cache node: a QUIC server over a foyer hybrid cache, reading through to the
//! volumes' object stores on a miss.
//!
//! ```text
//!             ┌──────────── Node (node.rs: build, then run until shutdown) ───────────────┐
//! client ─QUIC─► server.rs ─► service/ (one file per request) ─► lookup.rs ─► store/        │
//!             │   (mTLS,       get, peek, warm, ops:              memory ─► disk ─► fill:   │
//!             │   1 stream     auth, answers (answer.rs)          handoff, or origin ───────┼─► S3
//!             │   per page)                                       (cache_client::origin),  │
//!             │                                                   told to fill_tap.rs      │
//!  scrape ───►│ admin.rs (/metrics, /healthz)          metrics.rs (every name, one registry)│
//!             └───────────────────────────────────────────────────────────────────────────┘
//! ```
//! Beside the read path: `copy/` keeps a volume's regional copy filled (objects a fill had to
//! read from a source are queued durably and copied in the background), and `cost.rs` turns
//! what was sent to each origin into an estimate of what it cost.
//!
//! `main.rs` parses flags, loads the config, calls [`Node::build`] and runs it until a signal.
//! Nothing a config file or the environment sets can make a node misbehave: faults come from
//! [`Hooks`], which only a test installs.

pub mod admin;
pub mod answer;
pub mod config;
pub mod copy;
pub mod cost;
pub mod fill_tap;
pub mod lookup;
pub mod membership;
pub mod metrics;
mod node;
pub mod node_id;
pub mod resync;
pub mod server;
pub mod service;
pub mod store;

pub use crate::{
    answer::Hooks,
    node::{Node, RunningNode, StartError},
};
