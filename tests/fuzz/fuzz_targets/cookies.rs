//! Cookie and Set-Cookie parsing used by sticky sessions. Input: lines; the first line is
//! the cookie name, lines starting with 'S' are Set-Cookie values, the rest Cookie values.
#![no_main]
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use tandem::dataplane::l7::sticky::{cookie_value_in, learn_set_cookie_in, valid_cookie_name};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let Some(name) = lines.next().and_then(|n| std::str::from_utf8(n).ok()) else {
        return;
    };
    let _ = valid_cookie_name(name);
    let (set, get): (Vec<&[u8]>, Vec<&[u8]>) = lines.partition(|l| l.first() == Some(&b'S'));
    if let Some(v) = cookie_value_in(get.iter().copied(), name) {
        assert!(!v.contains(';'), "a cookie value spans a separator: {v:?}");
    }
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let _ = learn_set_cookie_in(set.iter().map(|l| &l[1..]), name, now);
});
