//! The control server. It accepts and reads requests on tasks of its own and hands each
//! parsed [`Request`] to the daemon loop over a channel with a oneshot for the [`Reply`]: a
//! slow or silent client never delays the loop, which only ever answers complete requests.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, Result, bail};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc, oneshot},
};

use super::metrics as m;
use crate::control::{ControlError, MAX_REQUEST_BYTES, Reply, Request, parse_request};

/// Connections served at once; more are closed at once and counted.
const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One request for the loop to answer.
pub(super) struct Call {
    /// What is asked.
    pub(super) request: Request,
    /// Where the answer goes.
    pub(super) reply: oneshot::Sender<Reply>,
}

/// Binds the control socket (mode 0600), replacing a stale one left by a crashed daemon.
pub(super) fn bind(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another floodgate daemon answers on {}", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("remove stale {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("bind control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    Ok(listener)
}

/// Accepts connections until the loop goes away.
pub(super) async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                log::warn!("control socket accept: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if calls.is_closed() {
            return;
        }
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!(m::CONTROL_REFUSED, "why" => "busy").increment(1);
            continue;
        };
        let calls = calls.clone();
        tokio::spawn(async move {
            answer(stream, &calls).await;
            drop(permit);
        });
    }
}

async fn answer(stream: UnixStream, calls: &mpsc::Sender<Call>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES as u64));
    let read = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line)).await;
    if !matches!(read, Ok(Ok(n)) if n > 0) {
        return;
    }
    let reply = match parse_request(&line) {
        Ok(request) => {
            let (reply, answer) = oneshot::channel();
            if calls.send(Call { request, reply }).await.is_err() {
                return;
            }
            match answer.await {
                Ok(reply) => reply,
                Err(_) => return,
            }
        }
        Err(error) => {
            metrics::counter!(m::CONTROL_REFUSED, "why" => "bad_request").increment(1);
            Reply::Error { error }
        }
    };
    let text = serde_json::to_string(&reply).unwrap_or_else(|e| {
        serde_json::to_string(&Reply::Error {
            error: ControlError::Failed {
                message: e.to_string(),
            },
        })
        .unwrap_or_default()
    });
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        write.write_all(format!("{text}\n").as_bytes()),
    )
    .await;
}
