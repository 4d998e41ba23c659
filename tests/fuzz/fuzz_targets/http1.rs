//! HTTP/1 from both sides: the fast path's request and response head parsers, its body
//! framer (chunked and Content-Length), and the hyper path's raw-byte smuggling scanner.
//! First byte: which parser, and where the scanner's input is split in two reads.
#![no_main]
use http::Method;
use libfuzzer_sys::fuzz_target;
use tandem::dataplane::l7::framing::H1Scanner;
use tandem::dataplane::l7::h1::body::BodyFramer;
use tandem::dataplane::l7::h1::head::{
    parse_request, parse_response, valid_host, BodyKind, RequestHead, ResponseHead,
};

fn frame_body(kind: BodyKind, mut body: &[u8]) {
    let mut framer = BodyFramer::new(kind);
    // Feed in uneven pieces: state must carry across reads.
    let mut step = 1;
    while !body.is_empty() && !framer.done() {
        let piece = &body[..step.min(body.len())];
        match framer.advance(piece) {
            Ok(used) => {
                assert!(used <= piece.len(), "framer used more than it was given");
                if used == 0 {
                    break;
                }
                body = &body[used..];
            }
            Err(_) => return,
        }
        step = step * 3 % 17 + 1;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => {
            let mut head = RequestHead::default();
            if parse_request(rest, 100, &mut head).is_ok() {
                assert!(head.len <= rest.len(), "head longer than input");
                // Spans must lie inside the input.
                let _ = head.path_str(rest);
                let _ = head.query_str(rest);
                if let Some(h) = head.host_str(rest) {
                    assert!(
                        valid_host(h.as_bytes()).is_ok(),
                        "accepted invalid host {h:?}"
                    );
                }
                for _ in head.fields(rest).pairs() {}
                frame_body(head.body, &rest[head.len..]);
            }
        }
        1 | 2 => {
            let method = if sel % 4 == 1 {
                Method::GET
            } else {
                Method::HEAD
            };
            let mut head = ResponseHead::default();
            if parse_response(rest, &method, &mut head).is_ok() {
                assert!(head.len <= rest.len(), "head longer than input");
                for _ in head.fields(rest).pairs() {}
                frame_body(head.body, &rest[head.len..]);
            }
        }
        _ => {
            let cut = usize::from(sel >> 2).min(rest.len());
            let mut scanner = H1Scanner::default();
            scanner.feed(&rest[..cut]);
            scanner.feed(&rest[cut..]);
            for n in 0..4 {
                let _ = scanner.violation(n);
            }
        }
    }
});
