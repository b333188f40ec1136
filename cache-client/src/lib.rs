//! mirrorcache client library: everything a file-system mount links to read blocks through the
//! cache cluster. The protocol it speaks (wire, ring, keys, digests, page maths) is the pure
//! `cache-proto` crate; this crate adds the I/O: QUIC, the origin, TLS files.
//!
//! ```text
//!  Client::read(volume, key, offset, len)        client.rs (read_stream: stream.rs, page by page)
//!     │ cache_proto::page   split the range into pages
//!     │ cache_proto::ring   owner of each page: hash(volume, key, page) on weighted virtual nodes
//!     │ read_piece.rs       owner, next node, hedge, then the origin: one piece of the read
//!     │ pool.rs             pooled QUIC connection to the owner, one bidirectional stream per page
//!     │ cache_proto::digest verify the page digest, bound to its key, before a byte is returned
//!     │ chunks.rs           the page as it came off the stream, in parts (not copied)
//!     └ origin/             on any cache failure: the object store itself
//! ```
//!
//! Beside the read path: `ring_source.rs` keeps the ring (static, or asked of the nodes) and
//! refreshes it; `stats.rs` counts sources and [`Fallback`]s; `warm.rs` asks owners to fill,
//! check or evict pages (`cachectl warmup`); `tls.rs` loads the PEM files and builds the one
//! server and one client QUIC config, given a certificate resolver (`tls_reload.rs`: a node's
//! certificate replaced without a restart) or a server-certificate verifier (`node_cert.rs`:
//! any node of the cluster, for seeds and gossip).
//!
//! `config` and `hedge` do no I/O either; they live here because only processes that do I/O
//! read config files.

pub mod chunks;
pub mod client;
pub mod config;
pub mod hedge;
pub mod latency;
pub mod node_cert;
pub mod origin;
pub mod pool;
mod read_piece;
pub mod ring_source;
pub mod signal;
pub mod stats;
pub mod stream;
pub mod sync;
pub mod tls;
pub mod tls_reload;
pub mod warm;

pub use chunks::Chunks;
pub use client::{Client, ClientError, ObjectRead, PageTrace, ReadError, StatusError};
pub use ring_source::RefreshError;
pub use stats::Fallback;
pub use stream::ObjectStream;
