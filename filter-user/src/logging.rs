//! Logging to stderr: with syslog priority prefixes (`<6>…`) under journald, with timestamps
//! otherwise. `RUST_LOG` overrides the configured level.

use std::io::Write as _;

/// Installs the logger once; later calls are ignored.
pub fn init(level: log::LevelFilter) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    if journald {
        builder.format(|f, record| {
            let prio = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(f, "<{prio}>{}", record.args())
        });
    } else {
        builder.format(|f, record| {
            writeln!(
                f,
                "{} {:<5} {}",
                f.timestamp_millis(),
                record.level(),
                record.args()
            )
        });
    }
    let _ = builder.try_init();
}
