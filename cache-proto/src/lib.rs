//! The mirrorcache protocol, pure: what crosses the wire and how both sides agree on where a
//! page lives. No runtime, no sockets, no files, no clocks (CI checks that none appear), like
//! Quinn's proto crate beside its runtime: the client library and the node both build on it, and the fuzz
//! targets and the codec and ring benches drive it directly.
//!
//! ```text
//!  key.rs      Volume, ObjectKey, NodeId: validated names (never file paths)
//!  page.rs     a byte range → one piece per page
//!  ring.rs     owner of a page: hash(volume, key, page) on weighted virtual nodes
//!  members.rs  a member list → its ring and epoch (RingView)
//!  digest.rs   CRC-64/NVME of a piece, bound to its volume, key, page and offset
//!  wire/       request and response frames: check, then parse; typed errors
//!  limits.rs   page sizes, weights, answer sizes both sides check
//!  units.rs    byte sizes and durations as config files write them
//! ```

pub mod digest;
pub mod key;
pub mod limits;
pub mod members;
pub mod page;
pub mod ring;
pub mod units;
pub mod wire;
