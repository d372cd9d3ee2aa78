//! The request-log format Floodgate defines for the TLS-terminating proxy, and its parser.
//! nginx (`log_format … escape=json`) and HAProxy (`log-format`) both write one flat JSON
//! object per request; [`nginx_snippet`] and [`haproxy_snippet`] print the exact lines from
//! the same field list the parser reads, so the two cannot drift.
//!
//! A datagram may carry a syslog header before the object (nginx always sends one); the parser
//! starts at the object's marker. The parser is a small hand-written one for a flat object of
//! string values: it never allocates for unescaped values, and a datagram cut by the sender's
//! size limit still yields its complete leading fields (the client address comes first, the
//! attacker-sized URI and user agent last), so a long URI is no way around a rule.

use std::{borrow::Cow, net::IpAddr};

/// Version tag of the format (the object's first member, `"fg":"1"`).
pub(crate) const FORMAT_VERSION: &str = "1";
/// Where the object starts.
const MARKER: &[u8] = b"{\"fg\":\"";
/// Longest datagram accepted (bytes); longer ones are refused.
pub const MAX_DATAGRAM: usize = 16 * 1024;

/// One field of the format: its JSON key and what nginx and HAProxy write for it.
struct Field {
    key: &'static str,
    nginx: &'static str,
    haproxy: &'static str,
    /// Attacker-controlled text: HAProxy must quote and escape it (`%{+Q,+E}`); the others
    /// (addresses, numbers, protocol tokens) go between literal quotes.
    free_text: bool,
}

/// The fields in order: the short, proxy-controlled ones first, the attacker-sized ones last.
const FIELDS: [Field; 13] = [
    Field {
        key: "fg",
        nginx: FORMAT_VERSION,
        haproxy: FORMAT_VERSION,
        free_text: false,
    },
    Field {
        key: "client",
        nginx: "$remote_addr",
        haproxy: "%ci",
        free_text: false,
    },
    Field {
        key: "time",
        nginx: "$msec",
        haproxy: "%Ts.%ms",
        free_text: false,
    },
    Field {
        key: "status",
        nginx: "$status",
        haproxy: "%ST",
        free_text: false,
    },
    Field {
        key: "request_time",
        nginx: "$request_time",
        haproxy: "%Ta",
        free_text: false,
    },
    Field {
        key: "upstream_time",
        nginx: "$upstream_response_time",
        haproxy: "%Tr",
        free_text: false,
    },
    Field {
        key: "protocol",
        nginx: "$server_protocol",
        haproxy: "%HV",
        free_text: false,
    },
    Field {
        key: "tls",
        nginx: "$ssl_protocol",
        haproxy: "%sslv",
        free_text: false,
    },
    Field {
        key: "bytes",
        nginx: "$bytes_sent",
        haproxy: "%B",
        free_text: false,
    },
    Field {
        key: "method",
        nginx: "$request_method",
        haproxy: "%HM",
        free_text: true,
    },
    Field {
        key: "host",
        nginx: "$host",
        haproxy: "%[capture.req.hdr(0)]",
        free_text: true,
    },
    Field {
        key: "uri",
        nginx: "$request_uri",
        haproxy: "%HU",
        free_text: true,
    },
    Field {
        key: "user_agent",
        nginx: "$http_user_agent",
        haproxy: "%[capture.req.hdr(1)]",
        free_text: true,
    },
];

/// Which proxy a template is for (nginx writes seconds, HAProxy milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proxy {
    /// nginx (`ngx_http_log_module`, `escape=json`).
    Nginx,
    /// HAProxy (`log-format`, `format raw`).
    Haproxy,
}

/// The one-line JSON template `proxy` fills in per request (the body of nginx's `log_format`
/// and of HAProxy's `log-format`).
#[must_use]
pub fn template(proxy: Proxy) -> String {
    let mut out = String::from("{");
    for (i, field) in FIELDS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let value = match proxy {
            // escape=json: nginx escapes every variable's value as a JSON string.
            Proxy::Nginx => format!("\"{}\"", field.nginx),
            // HAProxy quotes and escapes `"`, `\\` itself with +Q,+E.
            Proxy::Haproxy if field.free_text => {
                let (first, rest) = field.haproxy.split_at(1);
                format!("{first}{{+Q,+E}}{rest}")
            }
            Proxy::Haproxy => format!("\"{}\"", field.haproxy),
        };
        out.push_str(&format!("\"{}\":{value}", field.key));
    }
    out.push('}');
    out
}

/// Where the proxy sends the feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via<'a> {
    /// A file nginx appends to with a buffered `access_log` (`[proxy] file`).
    File(&'a str),
    /// The datagram socket (`[proxy] socket`).
    Socket(&'a str),
}

/// nginx's buffer for the file feed, and how long a line may wait in it.
const NGINX_BUFFER: &str = "buffer=64k flush=100ms";

/// The lines to paste into nginx's `http` context.
#[must_use]
pub(crate) fn nginx_snippet(via: Via<'_>) -> String {
    let (how, access_log) = match via {
        Via::File(file) => (
            "appended to a file the daemon follows (one write per 64 KiB or 100 ms).",
            format!("access_log {file} floodgate {NGINX_BUFFER};"),
        ),
        Via::Socket(socket) => (
            "sent as a syslog datagram to the daemon.",
            format!("access_log syslog:server=unix:{socket},nohostname,tag=floodgate floodgate;"),
        ),
    };
    format!(
        "# Floodgate request feed: one line per request, {how}\n\
         # Paste into the http {{}} context (or include /usr/share/floodgate/nginx-floodgate.conf).\n\
         log_format floodgate escape=json '{}';\n\
         {access_log}\n",
        template(Proxy::Nginx)
    )
}

/// The lines to paste into an HAProxy `frontend` (HTTP mode).
#[must_use]
pub(crate) fn haproxy_snippet(socket: &str) -> String {
    // HAProxy writes `%` in a log-format literally as `%%`; the template has none.
    format!(
        "    # Floodgate request feed: one event per request, sent as a raw datagram to the daemon.\n\
         # Paste into a frontend section (mode http).\n\
         http-request capture req.hdr(host) len 128\n\
         http-request capture req.hdr(user-agent) len 256\n\
         log {socket} len 8192 format raw local0 info\n\
         log-format '{}'\n",
        template(Proxy::Haproxy)
    )
    .replace("\n#", "\n    #")
    .replace("\nhttp-request", "\n    http-request")
    .replace("\nlog", "\n    log")
}

/// The snippet for `proxy` (HAProxy cannot write a file: it always uses the socket, which
/// must then be given).
pub fn snippet(proxy: Proxy, via: Via<'_>) -> Result<String, &'static str> {
    match (proxy, via) {
        (Proxy::Nginx, via) => Ok(nginx_snippet(via)),
        (Proxy::Haproxy, Via::Socket(socket)) => Ok(haproxy_snippet(socket)),
        (Proxy::Haproxy, Via::File(_)) => {
            Err("HAProxy logs only to sockets: it needs the feed socket ([proxy] socket)")
        }
    }
}

/// Why a datagram was not an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyParseError {
    /// Longer than [`MAX_DATAGRAM`].
    #[error("datagram longer than {MAX_DATAGRAM} bytes")]
    Oversized,
    /// No object of this format in it.
    #[error("no Floodgate request object (another log format?)")]
    UnknownFormat,
    /// Another version of the format.
    #[error("unsupported format version")]
    Version,
    /// Not JSON of the expected shape, or cut before the client address.
    #[error("malformed request object")]
    Malformed,
    /// The client field is not an address.
    #[error("client is not an IP address")]
    BadClient,
}

/// One request as the proxy logged it. Text fields borrow from the datagram where they need
/// no unescaping.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyRecord<'a> {
    /// Client address (IPv4-mapped addresses folded to IPv4).
    pub client: Option<IpAddr>,
    /// Wall-clock seconds since the epoch when the proxy logged it.
    pub time: Option<f64>,
    /// Response status.
    pub status: Option<u16>,
    /// Total request time, seconds.
    pub request_secs: Option<f64>,
    /// Upstream (backend) response time, seconds (summed over retried upstreams).
    pub upstream_secs: Option<f64>,
    /// `HTTP/1.1`, `HTTP/2.0`, `HTTP/3.0`.
    pub protocol: Option<Cow<'a, str>>,
    /// `TLSv1.3` etc.; `None` for plaintext.
    pub tls: Option<Cow<'a, str>>,
    /// Bytes sent.
    pub bytes: Option<u64>,
    /// Request method.
    pub method: Option<Cow<'a, str>>,
    /// Host.
    pub host: Option<Cow<'a, str>>,
    /// Request URI.
    pub uri: Option<Cow<'a, str>>,
    /// User-Agent.
    pub user_agent: Option<Cow<'a, str>>,
    /// The datagram was cut: the fields after the cut are missing.
    pub cut: bool,
}

/// Parses one datagram.
pub fn parse(datagram: &[u8]) -> Result<ProxyRecord<'_>, ProxyParseError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(ProxyParseError::Oversized);
    }
    let start = memchr::memmem::find(datagram, MARKER).ok_or(ProxyParseError::UnknownFormat)?;
    let body = &datagram[start + 1..];
    // One UTF-8 check for the whole object: every string below is cut at ASCII quotes, so its
    // slice is valid too. A datagram cut inside a character ends before it (it is cut anyway);
    // an invalid byte anywhere else makes it malformed.
    let text = match std::str::from_utf8(body) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&body[..e.valid_up_to()]).map_err(|_| ProxyParseError::Malformed)?
        }
        Err(_) => return Err(ProxyParseError::Malformed),
    };
    // JSON allows no raw control character inside a string; when the line has none at all
    // (what both proxies write), the strings need not be checked one by one.
    let plain = !text.bytes().any(|b| b < 0x20);
    let mut reader = Reader {
        text,
        pos: 0,
        plain,
    };
    let mut record = ProxyRecord::default();
    let mut first = true;
    loop {
        reader.skip_space();
        match reader.peek() {
            None => {
                record.cut = true;
                break;
            }
            Some(b'}') => break,
            Some(b',') if !first => reader.pos += 1,
            Some(_) if first => {}
            Some(_) => return Err(ProxyParseError::Malformed),
        }
        reader.skip_space();
        let Some(key) = reader.string()? else {
            record.cut = true;
            break;
        };
        reader.skip_space();
        match reader.peek() {
            Some(b':') => reader.pos += 1,
            None => {
                record.cut = true;
                break;
            }
            Some(_) => return Err(ProxyParseError::Malformed),
        }
        reader.skip_space();
        let Some(value) = reader.string()? else {
            record.cut = true;
            break;
        };
        if first {
            if key != "fg" {
                return Err(ProxyParseError::UnknownFormat);
            }
            if value != FORMAT_VERSION {
                return Err(ProxyParseError::Version);
            }
            first = false;
            continue;
        }
        record.set(&key, value)?;
    }
    if record.client.is_none() {
        return Err(if record.cut {
            ProxyParseError::Malformed
        } else {
            ProxyParseError::BadClient
        });
    }
    Ok(record)
}

/// "-" and "" mean "not known" in both proxies' logs.
fn known(value: &str) -> Option<&str> {
    let value = value.trim_ascii();
    (!value.is_empty() && value != "-").then_some(value)
}

impl<'a> ProxyRecord<'a> {
    fn set(&mut self, key: &str, value: Cow<'a, str>) -> Result<(), ProxyParseError> {
        let text = known(&value);
        match key {
            "client" => {
                let ip: IpAddr = text
                    .and_then(|t| t.parse().ok())
                    .ok_or(ProxyParseError::BadClient)?;
                self.client = Some(crate::target::canonical(ip));
            }
            "time" => self.time = text.and_then(|t| t.parse().ok()),
            "status" => self.status = text.and_then(|t| t.parse().ok()),
            "request_time" => self.request_secs = text.and_then(duration_secs),
            "upstream_time" => self.upstream_secs = text.and_then(duration_secs),
            "bytes" => self.bytes = text.and_then(|t| t.parse().ok()),
            _ => {
                let value = text.is_some().then_some(value);
                match key {
                    "protocol" => self.protocol = value,
                    "tls" => self.tls = value,
                    "method" => self.method = value,
                    "host" => self.host = value,
                    "uri" => self.uri = value,
                    "user_agent" => self.user_agent = value,
                    // A newer proxy template may carry more: ignored.
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A duration as the proxies write it: nginx seconds with a fraction ("0.012"), HAProxy whole
/// milliseconds ("12", -1 when there was none); nginx lists retried upstreams ("0.010, 0.020"
/// or "0.010 : 0.020"): their sum.
fn duration_secs(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for part in text.split([',', ':']) {
        let part = part.trim_ascii();
        if part.is_empty() || part == "-" {
            continue;
        }
        let secs = if part.contains('.') {
            part.parse::<f64>().ok()?
        } else {
            let ms = part.parse::<i64>().ok()?;
            if ms < 0 {
                continue;
            }
            ms as f64 / 1000.0
        };
        if !(secs.is_finite() && secs >= 0.0) {
            return None;
        }
        total += secs;
        any = true;
    }
    any.then_some(total)
}

struct Reader<'a> {
    /// The object after its opening brace, valid UTF-8.
    text: &'a str,
    pos: usize,
    /// `text` holds no control character.
    plain: bool,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    /// A JSON string; `Ok(None)` when the input ends inside it (a cut datagram).
    fn string(&mut self) -> Result<Option<Cow<'a, str>>, ProxyParseError> {
        match self.peek() {
            Some(b'"') => self.pos += 1,
            None => return Ok(None),
            Some(_) => return Err(ProxyParseError::Malformed),
        }
        let start = self.pos;
        let bytes = self.text.as_bytes();
        // Most strings have no escape: find the closing quote at once and borrow the slice.
        let Some(stop) = memchr::memchr2(b'"', b'\\', &bytes[start..]) else {
            return if !self.plain && bytes[start..].iter().any(|b| *b < 0x20) {
                Err(ProxyParseError::Malformed)
            } else {
                Ok(None)
            };
        };
        // Control characters are not allowed raw in JSON.
        if !self.plain && bytes[start..start + stop].iter().any(|b| *b < 0x20) {
            return Err(ProxyParseError::Malformed);
        }
        if bytes[start + stop] == b'"' {
            self.pos = start + stop + 1;
            return Ok(Some(Cow::Borrowed(&self.text[start..start + stop])));
        }
        self.pos = start + stop;
        let mut buf = bytes[start..start + stop].to_vec();
        loop {
            let Some(byte) = self.peek() else {
                return Ok(None);
            };
            self.pos += 1;
            match byte {
                b'"' => {
                    let text = String::from_utf8(buf).map_err(|_| ProxyParseError::Malformed)?;
                    return Ok(Some(Cow::Owned(text)));
                }
                b'\\' => {
                    let Some(escaped) = self.peek() else {
                        return Ok(None);
                    };
                    self.pos += 1;
                    match escaped {
                        b'"' | b'\\' | b'/' => buf.push(escaped),
                        b'b' => buf.push(8),
                        b'f' => buf.push(12),
                        b'n' => buf.push(b'\n'),
                        b'r' => buf.push(b'\r'),
                        b't' => buf.push(b'\t'),
                        b'u' => {
                            let Some(hex) = bytes.get(self.pos..self.pos + 4) else {
                                return Ok(None);
                            };
                            self.pos += 4;
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or(ProxyParseError::Malformed)?;
                            // Surrogates (a pair split over two escapes) become U+FFFD.
                            let c = char::from_u32(code).unwrap_or('\u{fffd}');
                            let mut utf8 = [0u8; 4];
                            buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                        }
                        _ => return Err(ProxyParseError::Malformed),
                    }
                }
                // Control characters are not allowed raw in JSON.
                0..0x20 => return Err(ProxyParseError::Malformed),
                _ => buf.push(byte),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NGINX: &[u8] = br#"<190>Dec  1 20:47:20 floodgate: {"fg":"1","client":"198.18.0.7","time":"1733085040.123","status":"401","request_time":"0.012","upstream_time":"0.010, 0.002","protocol":"HTTP/2.0","tls":"TLSv1.3","bytes":"512","method":"POST","host":"api.example","uri":"/login?u=\"x\"","user_agent":"curl/8.0 \u00e9"}"#;

    #[test]
    fn an_nginx_line_with_its_syslog_header() {
        let r = parse(NGINX).unwrap();
        assert_eq!(r.client, Some("198.18.0.7".parse().unwrap()));
        assert_eq!(r.status, Some(401));
        assert_eq!(r.request_secs, Some(0.012));
        assert!((r.upstream_secs.unwrap() - 0.012).abs() < 1e-9);
        assert_eq!(r.protocol.as_deref(), Some("HTTP/2.0"));
        assert_eq!(r.tls.as_deref(), Some("TLSv1.3"));
        assert_eq!(r.method.as_deref(), Some("POST"));
        assert_eq!(r.uri.as_deref(), Some("/login?u=\"x\""));
        assert_eq!(r.user_agent.as_deref(), Some("curl/8.0 é"));
        assert_eq!(r.bytes, Some(512));
        assert!(!r.cut);
    }

    #[test]
    fn a_haproxy_raw_line_plaintext_and_ipv6() {
        let line = br#"{"fg":"1","client":"2001:2::9","time":"1733085040.5","status":"200","request_time":"3","upstream_time":"-1","protocol":"HTTP/1.1","tls":"-","bytes":"90","method":"GET","host":"-","uri":"/","user_agent":"-"}"#;
        let r = parse(line).unwrap();
        assert_eq!(r.client, Some("2001:2::9".parse().unwrap()));
        assert_eq!(r.request_secs, Some(0.003));
        assert_eq!(r.upstream_secs, None, "-1: no upstream");
        assert_eq!(r.tls, None);
        assert_eq!(r.host, None);
        let mapped = br#"{"fg":"1","client":"::ffff:198.18.0.9"}"#;
        assert_eq!(
            parse(mapped).unwrap().client,
            Some("198.18.0.9".parse().unwrap())
        );
    }

    #[test]
    fn a_cut_datagram_keeps_its_leading_fields() {
        let cut = &NGINX[..NGINX.len() - 30];
        let r = parse(cut).unwrap();
        assert!(r.cut);
        assert_eq!(r.client, Some("198.18.0.7".parse().unwrap()));
        assert_eq!(r.status, Some(401));
        assert_eq!(r.user_agent, None);
        // Cut before the client: nothing to count.
        assert_eq!(
            parse(br#"<190>x: {"fg":"1","cli"#),
            Err(ProxyParseError::Malformed)
        );
    }

    #[test]
    fn bytes_that_are_not_json_text_are_malformed_and_a_cut_character_is_a_cut() {
        let malformed = [
            // A raw control character, closed or cut.
            &b"{\"fg\":\"1\",\"client\":\"198.18.0.1\",\"uri\":\"\x01\"}"[..],
            b"{\"fg\":\"1\",\"client\":\"198.18.0.1\",\"uri\":\"/a\x01",
            // A byte that is not UTF-8, in a value and outside one.
            b"{\"fg\":\"1\",\"client\":\"198.18.0.1\",\"uri\":\"\xff\"}",
            b"{\"fg\":\"1\",\"client\":\"198.18.0.1\",\xff\"uri\":\"/\"}",
        ];
        for bad in malformed {
            assert_eq!(parse(bad), Err(ProxyParseError::Malformed), "{bad:?}");
        }
        // "é" cut after its first byte: the datagram was cut there, the fields before it stay.
        let r = parse(
            b"{\"fg\":\"1\",\"client\":\"198.18.0.1\",\"status\":\"200\",\"user_agent\":\"caf\xc3",
        )
        .unwrap();
        assert!(r.cut);
        assert_eq!(r.status, Some(200));
        assert_eq!(r.user_agent, None);
        // An escape after plain text keeps both.
        let r = parse(br#"{"fg":"1","client":"198.18.0.1","uri":"/a\"b\u00e9c"}"#).unwrap();
        assert_eq!(r.uri.as_deref(), Some("/a\"b\u{e9}c"));
    }

    #[test]
    fn bad_datagrams_are_errors_not_panics() {
        assert_eq!(parse(b"hello"), Err(ProxyParseError::UnknownFormat));
        assert_eq!(
            parse(br#"{"fg":"2","client":"198.18.0.1"}"#),
            Err(ProxyParseError::Version)
        );
        assert_eq!(
            parse(br#"{"fg":"1","client":"nobody"}"#),
            Err(ProxyParseError::BadClient)
        );
        assert_eq!(
            parse(&vec![b'a'; MAX_DATAGRAM + 1]),
            Err(ProxyParseError::Oversized)
        );
        for bad in [
            &br#"{"fg":"1","client":"198.18.0.1" "x":"y"}"#[..],
            br#"{"fg":"1","client":198}"#,
            br#"{"fg":"1","client":"198.18.0.1","uri":"\q"}"#,
            b"{\"fg\":\"1\",\"client\":\"198.18.0.1\",\"uri\":\"\x01\"}",
            b"{\"fg\":\"1\",\"client\":\"198.18.0.1\",\"uri\":\"\xff\"}",
            br#"{"fg":"1","client":"198.18.0.1","uri":"\u12"}"#,
        ] {
            let _ = parse(bad);
        }
        assert!(parse(br#"{"fg":"1","client":"198.18.0.1" "x":"y"}"#).is_err());
    }

    #[test]
    fn the_snippets_carry_every_field_the_parser_reads() {
        let nginx = nginx_snippet(Via::Socket("/run/floodgate/requests.sock"));
        let nginx_file = nginx_snippet(Via::File("/run/floodgate/requests.log"));
        let haproxy = haproxy_snippet("/run/floodgate/requests.sock");
        for field in &FIELDS {
            assert!(
                nginx.contains(&format!("\"{}\":", field.key)),
                "{}",
                field.key
            );
            assert!(
                haproxy.contains(&format!("\"{}\":", field.key)),
                "{}",
                field.key
            );
        }
        assert!(nginx.contains("access_log syslog:server=unix:/run/floodgate/requests.sock"));
        assert!(nginx_file.contains("access_log /run/floodgate/requests.log floodgate buffer="));
        assert_eq!(
            nginx.lines().nth(2),
            nginx_file.lines().nth(2),
            "one log_format for both"
        );
        assert!(haproxy.contains("log /run/floodgate/requests.sock"));
        // What nginx would send for this template parses (variables filled in by hand).
        let filled = template(Proxy::Nginx)
            .replace("$remote_addr", "198.18.0.3")
            .replace("$status", "200")
            .replace('$', "");
        assert_eq!(
            parse(filled.as_bytes()).unwrap().client,
            Some("198.18.0.3".parse().unwrap())
        );
    }
}
