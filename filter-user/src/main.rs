//! `floodgate`: the daemon (`run`) and the operator CLI. Errors print as one line naming the
//! problem; exit codes are listed in `--help` and the man page.

#![allow(
    unused_crate_dependencies,
    reason = "the binary links the library and shares its dependency list"
)]

use std::process::ExitCode;

use clap::Parser as _;
use filter_user::{
    bpf::{attach::AttachError, maps::MapsError, pins::PinsError},
    cli::{ImportError, Unprotected, args::Cli, dispatch},
    config::{ConfigError, DurationError},
    control::{ClientError, ControlError},
    target::TargetError,
};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = err.print();
                return ExitCode::from(
                    if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                        2
                    } else {
                        0
                    },
                );
            }
            // One line naming the problem.
            let text = err.render().to_string();
            let line = text
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            eprintln!("floodgate: {line}");
            return ExitCode::from(2);
        }
    };
    if !matches!(cli.command, filter_user::cli::args::Command::Run(_)) {
        filter_user::logging::init(log::LevelFilter::Warn);
    }
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = exit_code(&err);
            let hint = if code == 4 {
                " (run as root, or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
            } else {
                ""
            };
            eprintln!("floodgate: {}{hint}", one_line(&err));
            ExitCode::from(code)
        }
    }
}

/// The error and its causes on one line, each cause once: a cause whose text its parent
/// already shows is left out.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string().replace('\n', " ");
        if parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    }) || format!("{err:#}").contains("Operation not permitted")
    {
        return 4;
    }
    if matches!(
        err.downcast_ref::<MapsError>(),
        Some(MapsError::NotLoaded(_))
    ) {
        return 3;
    }
    if matches!(
        err.downcast_ref::<ClientError>(),
        Some(ClientError::DaemonDown { .. })
    ) {
        return 5;
    }
    if matches!(
        err.downcast_ref::<ClientError>(),
        Some(ClientError::Refused(ControlError::BadConfig { .. }))
    ) {
        return 2;
    }
    if err.downcast_ref::<Unprotected>().is_some() {
        return 6;
    }
    if err.downcast_ref::<ConfigError>().is_some()
        || err.downcast_ref::<TargetError>().is_some()
        || err.downcast_ref::<DurationError>().is_some()
        || matches!(
            err.downcast_ref::<ImportError>(),
            Some(ImportError::Unusable { .. })
        )
        || matches!(
            err.downcast_ref::<PinsError>(),
            Some(PinsError::ForeignLayout { .. })
        )
        || matches!(
            err.downcast_ref::<AttachError>(),
            Some(AttachError::UnknownInterface { .. } | AttachError::NoNativeXdp { .. })
        )
    {
        return 2;
    }
    1
}
