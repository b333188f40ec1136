//! `cachectl`'s library half: what the command-line tool serves beside a mount and what it makes
//! for a cluster, kept out of `cache-client` so that a mount links no S3 server, certificate
//! generator or CLI.
//!
//! - [`gateway`]: a read-only S3 endpoint (s3s) over [`cache_client::Client`], for mounts that
//!   cannot link the Rust client (JuiceFS is a Go program);
//! - [`certs`]: a cluster CA and node and client certificates (rcgen).
//!
//! The commands themselves (`get`, `status`, `drain`, `warmup`, `gateway`, `certs`) are in
//! `src/cmd/`, one file each, dispatched by `main.rs`.

pub mod certs;
pub mod gateway;
