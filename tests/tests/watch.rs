//! `floodgate top --watch` and `stats --watch` against the real daemon during a small flood:
//! piped output is plain timestamped refreshes with the flooders and their rates, `--json`
//! is one object per line, a real pty gets the full-screen view that SIGINT restores, and a
//! daemon that dies mid-watch ends the watch with exit 5.

use std::{
    io::Read as _,
    net::IpAddr,
    os::fd::{FromRawFd as _, OwnedFd},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use floodgate_tests::{
    ChildGuard, TempPins, floodgate, floodgate_bin,
    net::{Testbed, test_config},
    unique, wait_until,
};

/// A rule the flood (200 requests/s per source) never crosses but comes within the tenth of its
/// threshold that makes a talker: the flooders stay listed instead of being blocked.
const CONFIG: &str = "[aggregation]\nmin_addresses = 0\n\
    [[rules]]\nname = \"per-source\"\nkey = \"source\"\nthreshold_rps = 1000.0\nwindow = \"1s\"\nmin_samples = 8\nttl = \"1m\"\n";

const ENTER_SCREEN: &str = "\x1b[?1049h";
const RESTORE_SCREEN: &str = "\x1b[?25h\x1b[?1049l";

fn flooders(tb: &Testbed) -> Vec<IpAddr> {
    let list: Vec<IpAddr> = (1..=4)
        .map(|n| format!("198.18.2.{n}").parse().unwrap())
        .collect();
    tb.add_client_addrs(&list);
    list
}

/// The rate `top` shows for `addr` on a line of a plain refresh.
fn listed_rate(refresh: &str, addr: IpAddr) -> Option<f64> {
    refresh.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == addr.to_string())
            .then(|| fields.next()?.parse().ok())
            .flatten()
    })
}

#[test]
fn piped_json_and_pty_views_of_a_flood() {
    let tb = Testbed::new();
    let flooders = flooders(&tb);
    let _nginx = tb.start_nginx();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &test_config(CONFIG));
    std::thread::scope(|scope| {
        let flood = scope.spawn(|| tb.loadgen(env!("CARGO_BIN_EXE_loadgen"), &flooders, 200, 6));
        let mut seen = String::new();
        assert!(
            wait_until(Duration::from_secs(10), || {
                let out = floodgate(&pins, &["top", "--json"]);
                seen = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                seen.contains("198.18.2.")
            }),
            "the daemon sees the flood: {seen}\n{}",
            daemon.process.log()
        );

        // Piped: three plain refreshes, no escape codes, the flooders with their rates.
        let out = floodgate(
            &pins,
            &["top", "--watch", "--count", "3", "--interval", "300ms"],
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "top --watch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !text.contains('\x1b'),
            "no escape codes when piped: {text:?}"
        );
        let refreshes: Vec<&str> = text.split("--- floodgate top ").skip(1).collect();
        assert_eq!(refreshes.len(), 3, "three refreshes: {text}");
        for refresh in &refreshes {
            assert!(
                refresh.starts_with("20"),
                "a timestamp heads each refresh: {refresh}"
            );
            assert!(refresh.contains("sampling 1 in "), "{refresh}");
            assert!(refresh.contains("drops/s"), "{refresh}");
            assert!(refresh.contains("evidence/s  kernel "), "{refresh}");
        }
        let last = refreshes[2];
        for flooder in &flooders {
            let rate = listed_rate(last, *flooder)
                .unwrap_or_else(|| panic!("{flooder} listed with a rate: {last}"));
            assert!(rate > 0.0, "{flooder} at {rate} req/s: {last}");
        }

        // --json: one object per line.
        let out = floodgate(
            &pins,
            &[
                "top",
                "--watch",
                "--json",
                "--count",
                "2",
                "--interval",
                "300ms",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert!(line["time"].is_string(), "{line}");
            assert!(line["sample_every"].as_u64().unwrap() >= 1, "{line}");
            assert!(line["evidence_per_sec"]["kernel"].is_number(), "{line}");
            assert!(line["drops_per_sec"]["exact"].is_number(), "{line}");
            assert!(
                line["top"].as_array().unwrap().iter().any(|t| t["key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("198.18.2."))),
                "{line}"
            );
        }

        // stats --watch, piped: counters with rates.
        let out = floodgate(
            &pins,
            &["stats", "--watch", "--count", "2", "--interval", "200ms"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(text.matches("--- floodgate stats ").count(), 2, "{text}");
        assert!(
            text.contains("request_starts") && !text.contains('\x1b'),
            "{text}"
        );

        // A real terminal: full screen, restored on SIGINT, clean exit.
        let (output, status) = run_on_pty(&pins, &["top", "--watch", "--interval", "300ms"]);
        assert!(
            status.success(),
            "exit on SIGINT: {status}; output {output:?}"
        );
        let entered = output
            .find(ENTER_SCREEN)
            .unwrap_or_else(|| panic!("enters the alternate screen: {output:?}"));
        let restored = output
            .rfind(RESTORE_SCREEN)
            .unwrap_or_else(|| panic!("restores the terminal: {output:?}"));
        assert!(entered < restored, "{output:?}");
        assert!(
            output[entered..restored].contains("198.18.2."),
            "{output:?}"
        );
        flood.join().unwrap();
    });
}

/// Runs floodgate on a fresh pty until it has drawn a refresh with a talker, then sends it
/// SIGINT; returns everything it wrote and its exit status.
fn run_on_pty(pins: &TempPins, args: &[&str]) -> (String, std::process::ExitStatus) {
    let (mut master, slave) = open_pty();
    let mut cmd = Command::new(floodgate_bin());
    cmd.args(args)
        .env("FLOODGATE_PIN_ROOT", pins.root())
        .env("FLOODGATE_CONTROL_SOCKET", pins.control_socket())
        .stdin(Stdio::null())
        .stdout(Stdio::from(slave.try_clone().expect("dup pty")))
        .stderr(Stdio::from(slave));
    let mut child = ChildGuard {
        child: cmd.spawn().expect("spawn floodgate on the pty"),
        name: unique("top-pty"),
    };
    // The parent's slave ends are closed now: reading the master ends with EIO once the
    // child is gone.
    drop(cmd);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = master.read(&mut buf) {
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(
        wait_until(Duration::from_secs(15), || text().contains("198.18.2.")),
        "a refresh with the flooders on the pty: {:?}",
        text()
    );
    child.signal(libc::SIGINT);
    let status = child
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("exits on SIGINT: {:?}", text()));
    reader.join().unwrap();
    (text(), status)
}

/// A pty pair (120×40): the master for reading, the slave for the child.
fn open_pty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty fills in two fds; the name buffer may be null; termios null means
    // default settings; size points to a valid winsize.
    let rc = unsafe {
        libc::openpty(
            &raw mut master,
            &raw mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &raw const size,
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened by openpty and are owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

#[test]
fn a_daemon_that_dies_mid_watch_ends_it_with_exit_5() {
    let tb = Testbed::new();
    let pins = TempPins::new();
    let daemon = tb.start_daemon(&pins, &test_config(CONFIG));
    let name = unique("top-watch");
    let mut watch = ChildGuard::spawn(
        &name,
        Command::new(floodgate_bin())
            .args(["top", "--watch", "--interval", "200ms"])
            .env("FLOODGATE_PIN_ROOT", pins.root())
            .env("FLOODGATE_CONTROL_SOCKET", pins.control_socket()),
    );
    watch.wait_for_log("--- floodgate top ", Duration::from_secs(10));
    daemon.process.signal(libc::SIGKILL);
    let status = watch
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the watch ends when the daemon dies: {}", watch.log()));
    let log = watch.log();
    assert_eq!(status.code(), Some(5), "exit 5: {log}");
    assert!(
        log.contains("the daemon went away during `top --watch`"),
        "a clear message: {log}"
    );
}
