//! The test harness: real parts to test mirrorcache against, used only as a dev-dependency and
//! by `bench` (never by a binary a user runs, except `mirror-origin`, the demo origin).
//!
//! - [`cluster`]: `cache-node` processes on loopback with an origin, certificates and configs,
//!   for the node's integration tests;
//! - [`s3`]: an S3-compatible server (s3s + s3s-fs, SigV4) on a loopback port, in-process, that
//!   counts its GETs and can be told to fail them ([`s3::Fault`]);
//! - [`faults`]: faults a node is built with, through its own hooks;
//! - [`data`]: object contents reproducible from a seed, JuiceFS-shaped keys;
//! - `mirror-origin` (`src/bin`): the S3 server as a process, for the local demo cluster.

pub mod cluster;
pub mod data;
pub mod faults;
pub mod s3;

pub use data::{block_key, content};
pub use s3::{Fault, PutFault, S3Origin};
