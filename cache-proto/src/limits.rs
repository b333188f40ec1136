//! The limits both sides of the wire agree on: page sizes, member weights, and how large a
//! `Members` answer may be. The wire codec and the ring check against these; config validation
//! (in `cache-client`) reports them under the key that broke them.

/// Smallest page size a volume may use (JuiceFS blocks are 64 KiB to 16 MiB).
pub const MIN_PAGE_SIZE: u64 = 64 << 10;
/// Largest page size a volume may use.
pub const MAX_PAGE_SIZE: u64 = 16 << 20;
/// Default page size: one JuiceFS block.
pub const DEFAULT_PAGE_SIZE: u64 = 4 << 20;
/// Largest weight a member may have (weights are small relative numbers; 0 drains a node).
pub const MAX_WEIGHT: u32 = 100;
/// Most members a `Members` answer may list.
pub const MAX_MEMBERS: usize = 4096;
/// Most total weight a `Members` answer may carry: the ring holds 1024 points (16 bytes each)
/// per unit, so this bounds a ring built from one answer to 64 MiB.
pub const MAX_TOTAL_WEIGHT: u64 = 4096;
