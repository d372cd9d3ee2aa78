//! Parsing the HTTP/1.x request start a kernel sample carries (request line, Host,
//! User-Agent) with `httparse`. A sample may be cut mid-header: what is complete is used.

use filter_common::SAMPLE_PAYLOAD_MAX;

/// The parts of a request start the rules look at, borrowed from a scratch buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestStart<'a> {
    /// Method token.
    pub method: &'a str,
    /// Request target (path).
    pub path: &'a str,
    /// Host header, if complete in the sample.
    pub host: Option<&'a str>,
    /// User-Agent header, if complete in the sample.
    pub user_agent: Option<&'a str>,
    /// `HTTP/1.0` or `HTTP/1.1`, when the request line was complete.
    pub protocol: Option<&'static str>,
}

/// Parses a request start. `scratch` must hold the payload plus two bytes; a header cut off
/// by the sample's end is ignored, complete lines are used. `None` when not even the request
/// line is complete and valid.
pub fn parse_request<'a>(
    payload: &[u8],
    scratch: &'a mut [u8; SAMPLE_PAYLOAD_MAX + 2],
) -> Option<RequestStart<'a>> {
    // Keep complete lines only, and terminate the head so httparse sees a complete request.
    let end = payload.windows(2).rposition(|w| w == b"\r\n")? + 2;
    scratch[..end].copy_from_slice(&payload[..end]);
    let head_end = if payload[..end].windows(4).any(|w| w == b"\r\n\r\n") {
        end
    } else {
        scratch[end..end + 2].copy_from_slice(b"\r\n");
        end + 2
    };
    let scratch: &'a [u8] = &scratch[..head_end];
    let mut headers = [httparse::EMPTY_HEADER; 24];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(scratch) {
        Ok(httparse::Status::Complete(_)) => {}
        // Too many headers: the request line is still there; use it.
        Err(httparse::Error::TooManyHeaders) => return parse_request_line(scratch),
        _ => return None,
    }
    let mut host = None;
    let mut user_agent = None;
    for h in request.headers.iter() {
        if h.name.eq_ignore_ascii_case("host") {
            host = std::str::from_utf8(h.value).ok();
        } else if h.name.eq_ignore_ascii_case("user-agent") {
            user_agent = std::str::from_utf8(h.value).ok();
        }
    }
    Some(RequestStart {
        method: request.method?,
        path: request.path?,
        host,
        user_agent,
        protocol: match request.version {
            Some(0) => Some("HTTP/1.0"),
            Some(1) => Some("HTTP/1.1"),
            _ => None,
        },
    })
}

/// How many requests a segment carries: the request heads complete in the captured bytes
/// (each ends with an empty line), plus one for a head cut by the capture. When the capture
/// is shorter than the segment and it holds at least two complete heads followed directly by
/// the start of another (pipelining), the rest of the segment is assumed to hold requests of
/// the same average size (pipelining clients send alike requests): the count is then
/// `segment length / average head length`. A request with a body is not extrapolated from:
/// its body is not a head. At least 1.
#[must_use]
pub(crate) fn requests_in(captured: &[u8], segment_len: usize) -> u32 {
    let mut complete = 0u32;
    let mut end_of_last = 0usize;
    let mut i = 0;
    while i + 4 <= captured.len() {
        if &captured[i..i + 4] == b"\r\n\r\n" {
            complete += 1;
            end_of_last = i + 4;
            i += 4;
        } else {
            i += 1;
        }
    }
    if complete == 0 {
        return 1;
    }
    let trailing = captured.len() > end_of_last && starts_with_method(&captured[end_of_last..]);
    let cut = captured.len() < segment_len;
    if !cut || complete < 2 || !trailing {
        return complete + u32::from(trailing);
    }
    let average = end_of_last / complete as usize;
    let estimate = segment_len / average.max(1);
    u32::try_from(estimate.max(complete as usize)).unwrap_or(u32::MAX)
}

fn starts_with_method(bytes: &[u8]) -> bool {
    filter_common::HTTP_METHODS
        .iter()
        .any(|m| bytes.len() >= m.len() && &bytes[..m.len()] == *m)
        || filter_common::HTTP_METHODS
            .iter()
            .any(|m| bytes.len() < m.len() && m.starts_with(bytes))
}

fn parse_request_line(head: &[u8]) -> Option<RequestStart<'_>> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split(' ');
    let (method, path) = (parts.next()?, parts.next()?);
    Some(RequestStart {
        method,
        path,
        host: None,
        user_agent: None,
        protocol: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Option<(String, String, Option<String>, Option<String>)> {
        let mut scratch = [0u8; SAMPLE_PAYLOAD_MAX + 2];
        parse_request(text, &mut scratch).map(|r| {
            (
                r.method.to_owned(),
                r.path.to_owned(),
                r.host.map(str::to_owned),
                r.user_agent.map(str::to_owned),
            )
        })
    }

    #[test]
    fn complete_request() {
        let r =
            parse(b"GET /api/login HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8\r\n\r\n")
                .unwrap();
        assert_eq!(
            r,
            (
                "GET".into(),
                "/api/login".into(),
                Some("shop.example".into()),
                Some("curl/8".into())
            )
        );
    }

    #[test]
    fn cut_mid_header_keeps_complete_lines() {
        let r = parse(b"POST /checkout HTTP/1.1\r\nHost: a.example\r\nUser-Ag").unwrap();
        assert_eq!(
            r,
            (
                "POST".into(),
                "/checkout".into(),
                Some("a.example".into()),
                None
            )
        );
        let r = parse(b"GET / HTTP/1.1\r\n").unwrap();
        assert_eq!(r.1, "/");
    }

    #[test]
    fn pipelined_requests_are_counted_and_extrapolated() {
        let one = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(requests_in(one, one.len()), 1);
        let three: Vec<u8> = one.repeat(3);
        assert_eq!(requests_in(&three, three.len()), 3);
        // 30 pipelined requests in one segment, the sample cut at 256 bytes.
        let thirty: Vec<u8> = one.repeat(30);
        let n = requests_in(&thirty[..256], thirty.len());
        assert_eq!(n, 30, "{n}");
        // A POST with a body counts once; a half head at the end of a complete capture counts.
        let post = b"POST /l HTTP/1.1\r\nContent-Length: 5\r\n\r\nu=abc";
        assert_eq!(requests_in(post, post.len()), 1);
        assert_eq!(requests_in(post, 1400), 1, "an upload is one request");
        let mut tail = one.to_vec();
        tail.extend_from_slice(b"GET /b HT");
        assert_eq!(requests_in(&tail, tail.len()), 2);
        assert_eq!(requests_in(b"GET / HTTP/1.1\r\nHost", 4000), 1);
        assert_eq!(requests_in(b"", 0), 1);
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for bad in [
            &b""[..],
            b"GET",
            b"\r\n",
            b"GET /x",
            b"\x00\xff\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n",
        ] {
            let _ = parse(bad);
        }
        assert!(parse(b"GET /x").is_none());
        assert!(parse(&[b'A'; 256]).is_none());
    }
}
