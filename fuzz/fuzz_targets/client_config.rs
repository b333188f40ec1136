//! A client's config file: parsing and validation never panic on any text, and a config that
//! validates gives a usable member list.
#![no_main]

use cache_client::config::{ClientConfig, parse_toml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = parse_toml::<ClientConfig>(text) else { return };
    if config.validate().is_err() {
        return;
    }
    let view = config.cluster.static_ring();
    assert_eq!(view.members.len(), config.cluster.members.len());
});
