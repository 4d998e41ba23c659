//! Admin API request bodies (backend drain/enable/disable/weight, VRRP priority).
#![no_main]
use http::Method;
use libfuzzer_sys::fuzz_target;
use tandem::admin::{backend_action, priority_body};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let (method, action) = match sel % 6 {
        0 => (Method::POST, "drain"),
        1 => (Method::POST, "enable"),
        2 => (Method::POST, "disable"),
        3 => (Method::PUT, "weight"),
        4 => (Method::GET, "weight"),
        _ => {
            let _ = priority_body(body);
            return;
        }
    };
    if let Err((code, msg)) = backend_action(&method, action, body) {
        assert!(code.is_client_error(), "{code} for a bad body");
        assert!(!msg.is_empty());
    }
});
