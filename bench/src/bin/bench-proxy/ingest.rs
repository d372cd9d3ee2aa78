//! Part 1: the feed's ingest on one core. 1,000,000 datagrams as nginx sends them (the
//! `log_format` of `floodgate proxy-snippet nginx` filled in, behind nginx's syslog header),
//! through `proxy::parse` + `proxy::event` + `Detector::observe` with the default rules, beside
//! a generic JSON parse (`serde_json::Value`) of the same objects alone; and the feed's parser
//! alone (parse + event), to split the cost between parsing and the detector.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Instant,
};

use filter_user::{
    config,
    detect::Detector,
    sensor::{proxy, proxy_format},
};
use floodgate_bench::results::median;
use serde_json::json;

const DATAGRAMS: u32 = 1_000_000;
const CLIENTS: u32 = 100_000;
const RUNS: usize = 5;
/// nginx's header with `syslog:…,nohostname,tag=floodgate` (priority local7.info).
const SYSLOG_HEADER: &str = "<190>Dec  1 20:47:20 floodgate: ";

/// Client `n`: three in four IPv4 from 198.18.0.0/15, the rest IPv6 from 2001:2::/48.
fn client(n: u32) -> IpAddr {
    if n % 4 == 3 {
        Ipv6Addr::new(0x2001, 2, 0, (n >> 16) as u16, 0, 0, 0, n as u16).into()
    } else {
        Ipv4Addr::from(0xc612_0000 | (n & 0x1_ffff)).into()
    }
}

/// The JSON template nginx fills in, from the product's own format definition.
fn nginx_template() -> String {
    proxy_format::template(proxy_format::Proxy::Nginx)
}

/// `text` escaped as nginx's `escape=json` writes a variable.
fn nginx_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The values of request `i`: clients, paths, statuses, protocols and agents vary.
fn variable(name: &str, i: u32) -> String {
    const PATHS: [&str; 8] = [
        "/api/items",
        "/login",
        "/",
        "/static/app.js",
        "/api/cart?id=42",
        "/search?q=a%20b",
        "/health",
        "/api/checkout",
    ];
    const STATUSES: [&str; 8] = ["200", "200", "200", "304", "200", "404", "401", "500"];
    const AGENTS: [&str; 4] = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15",
        "curl/8.5.0",
        "bot \"quoted\" \\ agent",
    ];
    let value = match name {
        "remote_addr" => client(i % CLIENTS).to_string(),
        "msec" => format!("1733085040.{:03}", i % 1000),
        "status" => STATUSES[(i % 8) as usize].to_owned(),
        "request_time" => format!("0.{:03}", i % 50),
        "upstream_response_time" => {
            if i.is_multiple_of(3) {
                "-".to_owned()
            } else {
                format!("0.{:03}", i % 40)
            }
        }
        "server_protocol" => if i.is_multiple_of(5) {
            "HTTP/1.1"
        } else {
            "HTTP/2.0"
        }
        .to_owned(),
        "ssl_protocol" => if i.is_multiple_of(7) {
            "TLSv1.2"
        } else {
            "TLSv1.3"
        }
        .to_owned(),
        "bytes_sent" => (200 + i % 5000).to_string(),
        "request_method" => if i % 6 == 1 { "POST" } else { "GET" }.to_owned(),
        "host" => "shop.example".to_owned(),
        "request_uri" => PATHS[((i / 3) % 8) as usize].to_owned(),
        "http_user_agent" => AGENTS[((i / 7) % 4) as usize].to_owned(),
        other => panic!("the nginx template uses ${other}, which this benchmark does not fill"),
    };
    nginx_escape(&value)
}

/// One datagram: the template with every `$variable` filled in, behind the syslog header.
fn datagram(template: &str, i: u32) -> Vec<u8> {
    let mut out = String::from(SYSLOG_HEADER);
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let name_len = rest[at + 1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len() - at - 1);
        out.push_str(&variable(&rest[at + 1..at + 1 + name_len], i));
        rest = &rest[at + 1 + name_len..];
    }
    out.push_str(rest);
    out.into_bytes()
}

/// The rates (medians of 5 runs) as JSON.
pub(crate) fn run() -> serde_json::Value {
    let settings = config::parse("", "bench").expect("default config");
    let template = nginx_template();
    let datagrams: Vec<Vec<u8>> = (0..DATAGRAMS).map(|i| datagram(&template, i)).collect();
    let bytes: usize = datagrams.iter().map(Vec::len).sum();
    // Every datagram is one event (no parse errors in the input).
    for d in datagrams.iter().take(1000) {
        let record = proxy::parse(d).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(d));
        });
        assert!(!record.cut && record.client.is_some());
    }
    let mut rates = Vec::new();
    let mut events = 0usize;
    let mut decisions = 0usize;
    for _ in 0..RUNS {
        let mut detector = Detector::new(&settings);
        let t = Instant::now();
        for (i, d) in datagrams.iter().enumerate() {
            // 1,000,000 events/s in all over 100,000 clients (10/s each), as bench detect.
            let now = 1_000_000_000 + i as u64 * 1_000;
            if let Ok(record) = proxy::parse(d)
                && let Some(event) = proxy::event(&record, now)
            {
                events += 1;
                decisions += detector.observe(&event).len();
            }
        }
        rates.push(datagrams.len() as f64 / t.elapsed().as_secs_f64());
    }
    assert_eq!(events, datagrams.len() * RUNS, "every datagram is an event");
    let per_sec = median(&mut rates.clone());
    // Baseline: a generic JSON parse of the object alone (after the syslog header).
    let mut base_rates = Vec::new();
    let mut parsed = 0usize;
    for _ in 0..RUNS {
        let t = Instant::now();
        for d in &datagrams {
            let value = serde_json::from_slice::<serde_json::Value>(&d[SYSLOG_HEADER.len()..]);
            parsed += usize::from(value.is_ok_and(|v| v.is_object()));
        }
        base_rates.push(datagrams.len() as f64 / t.elapsed().as_secs_f64());
    }
    assert_eq!(
        parsed,
        datagrams.len() * RUNS,
        "serde_json parses every object"
    );
    let base_per_sec = median(&mut base_rates.clone());
    // The feed's parser alone (parse + event, no detector), to split the cost.
    let mut parse_rates = Vec::new();
    let mut clients = 0usize;
    for _ in 0..RUNS {
        let t = Instant::now();
        for d in &datagrams {
            if let Ok(record) = proxy::parse(d) {
                clients += usize::from(proxy::event(&record, 0).is_some());
            }
        }
        parse_rates.push(datagrams.len() as f64 / t.elapsed().as_secs_f64());
    }
    assert_eq!(clients, datagrams.len() * RUNS);
    let parse_per_sec = median(&mut parse_rates.clone());
    json!({
        "datagrams": datagrams.len(),
        "clients": CLIENTS,
        "mean_datagram_bytes": bytes as f64 / datagrams.len() as f64,
        "example": String::from_utf8_lossy(&datagrams[1]),
        "events_per_sec_median": per_sec,
        "runs": rates,
        "decisions": decisions / RUNS,
        "serde_json_value_per_sec_median": base_per_sec,
        "serde_json_runs": base_rates,
        "ratio_to_serde_json": per_sec / base_per_sec,
        "parse_alone_per_sec_median": parse_per_sec,
        "parse_alone_runs": parse_rates,
        "parse_alone_ratio_to_serde_json": parse_per_sec / base_per_sec,
        "target_events_per_sec": 500_000,
    })
}
