//! The config loader: any text gives a config or errors that name a place, never a panic.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = tandem::config::parse(Path::new("fuzz.toml"), text) {
        let shown = errors.to_string();
        assert!(!shown.is_empty(), "an error with nothing to say");
    }
});
