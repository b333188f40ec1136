//! mirrorcache client library: everything a file-system mount links to read blocks through the
//! cache cluster, plus the pure protocol and ring code the nodes share.
//!
//! ```text
//!  Client::read(volume, key, offset, len)
//!     │ page.rs     split the range into pages
//!     │ ring.rs     owner of each page: hash(volume, key, page) on weighted virtual nodes
//!     │ pool.rs     pooled QUIC connection to the owner, one bidirectional stream per page
//!     │ wire/       Get frame out; response header + raw bytes back (pure codec, no I/O)
//!     │ digest.rs   verify the page digest, bound to its key, before a byte is returned
//!     └ origin.rs   on any cache failure: next owner, then the object store itself
//! ```
//!
//! `wire`, `ring`, `members`, `page`, `digest`, `key`, `units` and `config` do no I/O.

pub mod certs;
pub mod client;
pub mod config;
pub mod digest;
pub mod gateway;
pub mod hedge;
pub mod key;
pub mod members;
pub mod node_cert;
pub mod origin;
pub mod page;
pub mod pool;
pub mod ring;
pub mod ring_source;
pub mod stats;
pub mod tls;
pub mod tls_reload;
pub mod units;
pub mod warm;
pub mod wire;

pub use client::{Client, ClientError, ObjectRead, PageTrace, ReadError};
