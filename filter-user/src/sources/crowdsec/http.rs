//! The HTTP/1.1 client of the LAPI: one connection per poll (hyper), a bounded answer, a
//! timeout over the whole exchange. The key goes in `X-Api-Key` and nowhere else (never in
//! an error or a log line).

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode, Uri, body::Bytes, header};
use hyper_util::rt::TokioIo;

/// Largest stream answer read (a community blocklist of some 100,000 decisions is ~25 MB).
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// Where the LAPI listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address (no brackets).
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Path prefix before `/v1/…`, without trailing slash.
    base: String,
}

/// Why a LAPI URL or exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http://HOST[:PORT][/PREFIX]`.
    #[error("'{url}' is not a LAPI URL like http://127.0.0.1:8080 ({problem})")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Name resolution, connect, send or receive failed.
    #[error("{op} {authority}: {message}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Host and port.
        authority: String,
        /// The cause.
        message: String,
    },
    /// No answer within the timeout.
    #[error("no answer from {authority} within {timeout:?}")]
    Timeout {
        /// Host and port.
        authority: String,
        /// `[crowdsec] timeout`.
        timeout: Duration,
    },
    /// The LAPI answered with an error status.
    #[error("{authority} answered {status}{hint}")]
    Status {
        /// Host and port.
        authority: String,
        /// The status.
        status: StatusCode,
        /// What it usually means.
        hint: &'static str,
    },
}

impl Endpoint {
    /// Parses the `[crowdsec] lapi_url`.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = |problem| HttpError::BadUrl {
            url: url.to_owned(),
            problem,
        };
        let uri: Uri = url.parse().map_err(|_| bad("does not parse"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported yet: reach the LAPI over http on loopback or a \
                     private network",
                ));
            }
            _ => return Err(bad("the scheme must be http://")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not used; set api_key_file"));
        }
        if uri.query().is_some() {
            return Err(bad("a query is not allowed"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            host,
            port: authority.port_u16().unwrap_or(80),
            authority: authority.as_str().to_owned(),
            base: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `GET base + path_and_query` with the key; the answer body when the status is 200.
    pub(crate) async fn get(
        &self,
        path_and_query: &str,
        api_key: &str,
        timeout: Duration,
    ) -> Result<Bytes, HttpError> {
        tokio::time::timeout(timeout, self.exchange(path_and_query, api_key))
            .await
            .map_err(|_| HttpError::Timeout {
                authority: self.authority.clone(),
                timeout,
            })?
    }

    async fn exchange(&self, path_and_query: &str, api_key: &str) -> Result<Bytes, HttpError> {
        let io = |op| {
            let authority = self.authority.clone();
            move |err: &dyn std::fmt::Display| HttpError::Io {
                op,
                authority,
                message: err.to_string(),
            }
        };
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| io("connect to")(&e))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| io("HTTP handshake with")(&e))?;
        let driver = tokio::spawn(connection);
        let request = Request::get(format!("{}{path_and_query}", self.base))
            .header(header::HOST, &self.authority)
            .header(
                header::USER_AGENT,
                concat!("floodgate/", env!("CARGO_PKG_VERSION")),
            )
            .header("X-Api-Key", api_key)
            .body(Empty::<Bytes>::new())
            .map_err(|e| io("build a request for")(&e))?;
        let answer = sender
            .send_request(request)
            .await
            .map_err(|e| io("request to")(&e));
        let result = match answer {
            Ok(response) if response.status() == StatusCode::OK => {
                Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .map_err(|e| io("read the answer of")(&*e))
            }
            Ok(response) => Err(HttpError::Status {
                authority: self.authority.clone(),
                status: response.status(),
                hint: match response.status() {
                    StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                        " (the API key is wrong: `cscli bouncers add NAME` makes one)"
                    }
                    _ => "",
                },
            }),
            Err(err) => Err(err),
        };
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base.as_str()),
            ("127.0.0.1", 8080, "")
        );
        let e = Endpoint::parse("http://[2001:2::1]:8080/lapi/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.base.as_str()),
            ("2001:2::1", 8080, "/lapi")
        );
        assert_eq!(Endpoint::parse("http://lapi.local").unwrap().port, 80);
        for bad in [
            "127.0.0.1:8080",
            "https://x",
            "ftp://x",
            "http://u:p@x",
            "http://x/?a=1",
            "",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
