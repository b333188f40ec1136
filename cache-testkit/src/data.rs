//! What tests and benches read and write: object contents that can be recomputed from a seed,
//! and keys shaped like JuiceFS's blocks.

/// Deterministic pseudo-random bytes (splitmix64): incompressible, and reproducible from `seed`,
/// so a test, a bench or a checker can recompute what an object holds.
pub fn content(seed: u64, len: u64) -> bytes::Bytes {
    let mut state = seed;
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len as usize);
    out.into()
}

/// A JuiceFS-shaped block key: `myjfs/chunks/<id/1000/1000>/<id/1000>/<id>_<index>_<size>`.
pub fn block_key(slice: u64, index: u64, size: u64) -> String {
    format!("myjfs/chunks/{}/{}/{slice}_{index}_{size}", slice / 1_000_000, slice / 1000)
}
