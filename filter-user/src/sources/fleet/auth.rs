//! The fleet's credentials and connection options: secrets read from files that only root
//! may read (a file readable by group or others is refused, as CrowdSec's key file is), and
//! the async-nats options built from them. No error or log line carries a secret.

use std::{path::Path, time::Duration};

use crate::config::fleet::Fleet;

/// Why the fleet cannot start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A credentials file cannot be read.
    #[error("fleet.{key} {path}: {source}")]
    Read {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Group or others may access a credentials file.
    #[error(
        "fleet.{key} {path}: refusing a credentials file that group or others can access \
         (mode {mode:o}; chmod 600)"
    )]
    Insecure {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A credentials file holds nothing usable.
    #[error("fleet.{key} {path}: no usable secret in it")]
    Empty {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
    },
    /// The host name is not usable as a fleet host name.
    #[error(
        "fleet.host: '{host}' cannot name this host in the fleet (1..=63 letters, digits, '-', \
         '_' or '.'); set fleet.host"
    )]
    BadHost {
        /// The name found.
        host: String,
    },
}

/// How this host authenticates to NATS.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Auth {
    /// No credentials.
    None,
    /// User and password.
    UserPassword(String, String),
    /// A token.
    Token(String),
    /// The text of a credentials file (JWT and nkey seed).
    Credentials(String),
    /// An nkey seed.
    Nkey(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::UserPassword(..) => "user and password",
            Self::Token(_) => "token",
            Self::Credentials(_) => "credentials file",
            Self::Nkey(_) => "nkey",
        })
    }
}

/// Reads a secret file (mode 0600/0400 only); `whole`: the full text, else its first line.
fn read_secret(key: &'static str, path: &Path, whole: bool) -> Result<String, FleetError> {
    use std::os::unix::fs::PermissionsExt as _;
    let read = |source| FleetError::Read {
        key,
        path: path.into(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FleetError::Insecure {
            key,
            path: path.into(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let secret = if whole {
        text.trim().to_owned()
    } else {
        text.lines().next().unwrap_or("").trim().to_owned()
    };
    if secret.is_empty() {
        return Err(FleetError::Empty {
            key,
            path: path.into(),
        });
    }
    Ok(secret)
}

/// The credentials `[fleet]` names, read and checked (also the TLS key's mode).
pub(crate) fn load(settings: &Fleet) -> Result<Auth, FleetError> {
    if let Some(path) = &settings.tls_key_file {
        read_secret("tls_key_file", path, true)?;
    }
    if !settings.user.is_empty() {
        let password = match &settings.password_file {
            Some(path) => read_secret("password_file", path, false)?,
            None => settings.password.0.clone(),
        };
        return Ok(Auth::UserPassword(settings.user.clone(), password));
    }
    if let Some(path) = &settings.token_file {
        return Ok(Auth::Token(read_secret("token_file", path, false)?));
    }
    if !settings.token.0.is_empty() {
        return Ok(Auth::Token(settings.token.0.clone()));
    }
    if let Some(path) = &settings.credentials_file {
        return Ok(Auth::Credentials(read_secret(
            "credentials_file",
            path,
            true,
        )?));
    }
    if let Some(path) = &settings.nkey_seed_file {
        return Ok(Auth::Nkey(read_secret("nkey_seed_file", path, false)?));
    }
    Ok(Auth::None)
}

/// This host's fleet name: `fleet.host`, else the kernel's host name.
pub(crate) fn host_name(settings: &Fleet) -> Result<String, FleetError> {
    let host = if settings.host.is_empty() {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes into a buffer we own.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if rc == 0 {
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        }
    } else {
        settings.host.clone()
    };
    if crate::config::fleet::host_ok(&host) {
        Ok(host)
    } else {
        Err(FleetError::BadHost { host })
    }
}

/// The client options: credentials, TLS, timeouts and a reconnection back-off that doubles
/// from 100 ms up to 5 s; connection events go to `events`.
pub(super) fn options(
    settings: &Fleet,
    auth: &Auth,
    host: &str,
    events: tokio::sync::mpsc::UnboundedSender<async_nats::Event>,
) -> Result<async_nats::ConnectOptions, std::io::Error> {
    let mut options = match auth {
        Auth::None => async_nats::ConnectOptions::new(),
        Auth::UserPassword(user, password) => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Auth::Token(token) => async_nats::ConnectOptions::with_token(token.clone()),
        Auth::Credentials(text) => async_nats::ConnectOptions::with_credentials(text)?,
        Auth::Nkey(seed) => async_nats::ConnectOptions::with_nkey(seed.clone()),
    };
    if settings.tls_required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &settings.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options
        .name(format!("floodgate {host}"))
        .connection_timeout(settings.connect_timeout.0)
        .request_timeout(Some(Duration::from_secs(5)))
        .ping_interval(Duration::from_secs(10))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            let shift = u32::try_from(attempts.min(6)).unwrap_or(6);
            Duration::from_millis(100 << shift).min(Duration::from_secs(5))
        })
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                let _ = events.send(event);
            }
        }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn secret_files_readable_by_others_are_refused_without_showing_the_secret() {
        let dir = std::env::temp_dir().join(format!("floodgate-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pass");
        std::fs::write(&file, "s3cret-pass\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut settings = Fleet {
            user: "fg".into(),
            password_file: Some(file.clone()),
            ..Fleet::default()
        };
        let err = load(&settings).unwrap_err();
        assert!(
            matches!(err, FleetError::Insecure { mode: 0o640, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("s3cret"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let auth = load(&settings).unwrap();
        assert_eq!(auth, Auth::UserPassword("fg".into(), "s3cret-pass".into()));
        assert!(!format!("{auth:?}").contains("s3cret"));
        settings.host = "edge-a".into();
        assert_eq!(host_name(&settings).unwrap(), "edge-a");
        settings.host = String::new();
        assert!(host_name(&settings).is_ok_and(|h| !h.is_empty()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
