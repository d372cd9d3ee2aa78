//! The terminal side of `--watch`: a full-screen view (alternate screen, hidden cursor) that a
//! guard restores on every way out (the end of `--count`, Ctrl-C, SIGTERM, SIGHUP, an error,
//! a panic), and the stop signals turned into a flag the refresh loop polls. Plain ANSI
//! sequences, understood by every terminal emulator in use; nothing here runs when stdout is
//! not a terminal.

use std::{
    io::{self, Write as _},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// Enter the alternate screen, hide the cursor.
const ENTER: &str = "\x1b[?1049h\x1b[?25l";
/// Show the cursor, leave the alternate screen (the shell's screen comes back as it was).
pub(crate) const RESTORE: &str = "\x1b[?25h\x1b[?1049l";
/// Cursor to the top left.
const HOME: &str = "\x1b[H";
/// Clear to the end of the line.
const CLEAR_LINE: &str = "\x1b[K";
/// Clear from the cursor to the end of the screen.
const CLEAR_BELOW: &str = "\x1b[J";

/// Set by the stop signals; the refresh loop polls it.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT, SIGTERM and SIGHUP set the stop flag instead of killing the process, so that
/// the screen guard runs.
pub(super) fn catch_stop_signals() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is a valid value; the handler only stores to an atomic,
        // which is async-signal-safe; sigemptyset and sigaction get valid pointers.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(signal, &raw const action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sleeps for `span` unless a stop signal arrives first; false when one did.
pub(super) fn sleep_unless_stopped(span: Duration) -> bool {
    let end = Instant::now() + span;
    loop {
        if STOP.load(Ordering::Relaxed) {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// The full-screen view; restores the terminal when dropped.
pub(super) struct Screen {
    out: io::Stdout,
}

impl Screen {
    /// Switches stdout (a terminal) to the alternate screen with the cursor hidden.
    pub(super) fn enter() -> io::Result<Self> {
        let mut out = io::stdout();
        out.write_all(ENTER.as_bytes())?;
        out.flush()?;
        Ok(Self { out })
    }

    /// Redraws the whole screen with `lines`, cut to the terminal's width and height.
    pub(super) fn draw(&mut self, lines: &[String]) -> io::Result<()> {
        let (columns, rows) = size();
        let mut text = String::from(HOME);
        for line in lines.iter().take(rows) {
            text.extend(line.chars().take(columns));
            text.push_str(CLEAR_LINE);
            text.push_str("\r\n");
        }
        text.push_str(CLEAR_BELOW);
        let mut out = self.out.lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = self.out.lock();
        let _ = out.write_all(RESTORE.as_bytes());
        let _ = out.flush();
    }
}

/// Columns and rows of the terminal on stdout (80×24 when the kernel cannot tell).
fn size() -> (usize, usize) {
    // SAFETY: a zeroed winsize is a valid value for TIOCGWINSZ to fill in; the pointer is
    // valid for the call.
    let (rc, size) = unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        let rc = libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &raw mut size);
        (rc, size)
    };
    if rc != 0 || size.ws_col == 0 || size.ws_row == 0 {
        return (80, 24);
    }
    (usize::from(size.ws_col), usize::from(size.ws_row))
}
