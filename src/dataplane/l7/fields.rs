//! Header fields as the router, stickiness and the framing checks read them,
//! from either representation the proxy holds: an `http::HeaderMap` (HTTP/2
//! through hyper) or the raw field lines of an HTTP/1 head parsed in place
//! by the fast path (spans into the connection's read buffer, no copy).

use http::HeaderMap;

/// Byte range of one field line's name and value inside a head buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldSpan {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

impl FieldSpan {
    pub fn name<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.name.0 as usize..self.name.1 as usize]
    }
    pub fn value<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.value.0 as usize..self.value.1 as usize]
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Fields<'a> {
    Map(&'a HeaderMap),
    Raw(&'a [u8], &'a [FieldSpan]),
}

impl<'a> Fields<'a> {
    /// Every value of the (lower-case) field `name`, in order.
    pub fn get_all(self, name: &'a str) -> FieldValues<'a> {
        match self {
            Fields::Map(m) => FieldValues::Map(m.get_all(name).into_iter()),
            Fields::Raw(buf, spans) => FieldValues::Raw {
                buf,
                spans: spans.iter(),
                name: name.as_bytes(),
            },
        }
    }

    /// The first value of `name`.
    pub fn get(self, name: &'a str) -> Option<&'a [u8]> {
        self.get_all(name).next()
    }

    pub fn contains(self, name: &'a str) -> bool {
        self.get(name).is_some()
    }

    /// Every (name, value) pair in order; names as received (any case) for
    /// raw fields, lower case for a map.
    pub fn pairs(self) -> FieldPairs<'a> {
        match self {
            Fields::Map(m) => FieldPairs::Map(m.iter()),
            Fields::Raw(buf, spans) => FieldPairs::Raw(buf, spans.iter()),
        }
    }
}

pub enum FieldValues<'a> {
    Map(http::header::ValueIter<'a, http::HeaderValue>),
    Raw {
        buf: &'a [u8],
        spans: std::slice::Iter<'a, FieldSpan>,
        name: &'a [u8],
    },
}

impl<'a> Iterator for FieldValues<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        match self {
            FieldValues::Map(it) => it.next().map(|v| v.as_bytes()),
            FieldValues::Raw { buf, spans, name } => spans
                .find(|s| s.name(buf).eq_ignore_ascii_case(name))
                .map(|s| s.value(buf)),
        }
    }
}

pub enum FieldPairs<'a> {
    Map(http::header::Iter<'a, http::HeaderValue>),
    Raw(&'a [u8], std::slice::Iter<'a, FieldSpan>),
}

impl<'a> Iterator for FieldPairs<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            FieldPairs::Map(it) => it
                .next()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
            FieldPairs::Raw(buf, it) => it.next().map(|s| (s.name(buf), s.value(buf))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_map_agree() {
        let buf = b"Host: a\r\ncookie: x=1\r\nCookie: y=2\r\n";
        let spans = [
            FieldSpan {
                name: (0, 4),
                value: (6, 7),
            },
            FieldSpan {
                name: (9, 15),
                value: (17, 20),
            },
            FieldSpan {
                name: (22, 28),
                value: (30, 33),
            },
        ];
        let raw = Fields::Raw(buf, &spans);
        let mut m = HeaderMap::new();
        m.append("host", "a".parse().unwrap());
        m.append("cookie", "x=1".parse().unwrap());
        m.append("cookie", "y=2".parse().unwrap());
        let map = Fields::Map(&m);
        for f in [raw, map] {
            assert_eq!(f.get("host"), Some(&b"a"[..]));
            let c: Vec<&[u8]> = f.get_all("cookie").collect();
            assert_eq!(c, vec![&b"x=1"[..], &b"y=2"[..]]);
            assert!(!f.contains("te"));
            assert_eq!(f.pairs().count(), 3);
        }
    }
}
