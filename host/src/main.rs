//! `scream-ice`: the ScreamRouter ICE daemon and its operator CLI.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use scream_ice_host::cli::{Cli, Command, ConfigCommand, RolloutCommand, StunCommand};
use scream_ice_host::config::{Config, LocatedError, Origin, Sourced, parse_stun_listen};

/// Print each error as one line on stderr.
fn report(errors: &[LocatedError]) -> ExitCode {
    for e in errors {
        eprintln!("{e}");
    }
    ExitCode::FAILURE
}

fn env_lookup(var: &str) -> Option<String> {
    std::env::var_os(var).map(|v| v.to_string_lossy().into_owned())
}

/// File (or embedded default), then environment; every error located.
fn load(config: Option<&PathBuf>) -> Result<(Config, Vec<String>), Vec<LocatedError>> {
    let mut c = match config {
        Some(path) => Config::from_file(path)?,
        None => Config::embedded_default(),
    };
    let warnings = c.apply_env(env_lookup).map_err(|e| vec![e])?;
    let problems = c.problems();
    if problems.is_empty() {
        Ok((c, warnings))
    } else {
        Err(problems)
    }
}

fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn serve(
    config: Option<PathBuf>,
    http_listen: Option<SocketAddr>,
    stun_listen: Option<String>,
) -> ExitCode {
    let stun_listen = match stun_listen.map(|s| parse_stun_listen(&s)).transpose() {
        Ok(s) => s,
        Err(m) => {
            eprintln!("scream-ice: --stun-listen: {m}");
            return ExitCode::FAILURE;
        }
    };
    // The same load at start and on every SIGHUP: file (or default),
    // environment, then the flags.
    let loader: scream_ice_host::reload::Loader = Box::new(move || {
        let (mut c, warnings) = load(config.as_ref())?;
        if let Some(a) = http_listen {
            c.server.http_listen = Sourced {
                value: a,
                origin: Origin::Flag {
                    flag: "--http-listen",
                },
            };
        }
        if let Some(a) = stun_listen {
            c.server.stun_listen = Sourced {
                value: a,
                origin: Origin::Flag {
                    flag: "--stun-listen",
                },
            };
        }
        Ok((c, warnings))
    });
    let (c, warnings) = match loader() {
        Ok(r) => r,
        Err(errors) => return report(&errors),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scream-ice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Bind before logging anything, so that a failure is one line.
    let listeners = match runtime.block_on(scream_ice_host::serve::Listeners::bind(&c)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("scream-ice: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging();
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(w) = c.deprecation_warning() {
        tracing::warn!("{w}");
    }
    for line in c.provenance_lines() {
        tracing::info!("config: {line}");
    }
    let result = runtime.block_on(scream_ice_host::serve::run_with_reload(
        c,
        listeners,
        Some(loader),
    ));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scream-ice: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The single-threaded runtime of the one-shot commands (probe, connect,
/// rollout); on failure the one-line error is printed and the exit code
/// returned.
fn small_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("scream-ice: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn probe(target: &str, timeout_ms: u64) -> ExitCode {
    let runtime = match small_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let r = runtime.block_on(scream_ice_host::probe::probe(
        target,
        Duration::from_millis(timeout_ms),
    ));
    match r {
        Ok(p) => {
            let retx = if p.retransmissions > 0 {
                format!(" after {} retransmissions", p.retransmissions)
            } else {
                String::new()
            };
            let software = p
                .software
                .map(|s| format!(" (software: {})", s.escape_debug()))
                .unwrap_or_default();
            println!(
                "{}: mapped address {} rtt {:.3} ms{retx}{software}",
                p.server,
                p.mapped,
                p.rtt.as_secs_f64() * 1000.0
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scream-ice: stun probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn connect(opts: scream_ice_host::connect::ConnectOptions) -> ExitCode {
    let runtime = match small_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let mut out = std::io::stdout();
    match runtime.block_on(scream_ice_host::connect::run(&opts, &mut out)) {
        Ok(r)
            if r.audio
                .as_ref()
                .is_some_and(|a| a.receive.stats.received == 0) =>
        {
            eprintln!("scream-ice: connect: connected, but no audio came from the sink");
            ExitCode::FAILURE
        }
        Ok(r) if r.sent > 0 && r.echoed == 0 => {
            eprintln!(
                "scream-ice: connect: connected, but none of the {} datagrams came back (100 % loss)",
                r.sent
            );
            ExitCode::FAILURE
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scream-ice: connect: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run one async operator command on a small runtime; print its output
/// or its one-line error.
fn rollout_command(f: impl std::future::Future<Output = Result<String, String>>) -> ExitCode {
    let runtime = match small_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(f) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scream-ice: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(opts: scream_ice_host::migrate::MigrateOptions) -> ExitCode {
    let mut out = std::io::stdout();
    match scream_ice_host::migrate::migrate(&scream_ice_host::atomic::OsFs, &opts, &mut out) {
        Ok(m) => {
            for n in &m.notes {
                eprintln!("scream-ice: migrate: note: {n}");
            }
            if opts.dry_run {
                eprintln!(
                    "scream-ice: migrate: --dry-run: nothing written ({} unchanged)",
                    m.target.display()
                );
            } else if m.changed {
                let backup = m
                    .backup
                    .map(|b| format!(" (backup: {})", b.display()))
                    .unwrap_or_default();
                println!(
                    "migrated {} -> {}{backup}; check it with `scream-ice config check {}`, reload the daemon with `systemctl reload scream-ice`",
                    opts.input.display(),
                    m.target.display(),
                    m.target.display()
                );
            } else {
                println!("{}: already migrated, nothing changed", m.target.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scream-ice: migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn rollback(config: &std::path::Path, reason: Option<&str>, restore_backup: bool) -> ExitCode {
    use scream_ice_host::migrate::{HookOutcome, notify_rollback_hook, rollback};
    match rollback(
        &scream_ice_host::atomic::OsFs,
        config,
        reason,
        restore_backup,
    ) {
        Ok(ev) => {
            let what = match &ev.restored {
                Some(b) => format!("restored {} into", b.display()),
                None if ev.changed => "legacy_mode: true persisted in".to_string(),
                None => "already legacy (nothing changed):".to_string(),
            };
            let backup = ev
                .backup
                .as_ref()
                .map(|b| format!("; previous file kept as {}", b.display()))
                .unwrap_or_default();
            eprintln!(
                "scream-ice: rollback: {what} {}{backup}; reason: {}",
                config.display(),
                reason.unwrap_or("(none given)")
            );
            match notify_rollback_hook(&ev) {
                HookOutcome::Notified(line) => eprintln!("scream-ice: rollback: {line}"),
                _ => eprintln!(
                    "scream-ice: rollback: reload the running daemon: `systemctl reload scream-ice` (or `kill -HUP PID`)"
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("scream-ice: rollback: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "scream-ice: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Serve {
            config,
            http_listen,
            stun_listen,
        } => serve(config, http_listen, stun_listen),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::from_file(&file) {
            Ok(c) => {
                if let Some(w) = c.deprecation_warning() {
                    eprintln!("scream-ice: warning: {w}");
                }
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => report(&errors),
        },
        Command::Migrate {
            file,
            output,
            dry_run,
            drop_unknown,
        } => migrate(scream_ice_host::migrate::MigrateOptions {
            input: file,
            output,
            dry_run,
            drop_unknown,
        }),
        Command::Rollback {
            config,
            reason,
            restore_backup,
        } => rollback(&config, reason.as_deref(), restore_backup),
        Command::Config {
            command:
                ConfigCommand::Show {
                    config,
                    show_secrets,
                },
        } => match load(config.as_ref()) {
            Ok((c, warnings)) => {
                for w in warnings {
                    eprintln!("scream-ice: warning: {w}");
                }
                print!("{}", c.to_yaml_with_origins(show_secrets));
                ExitCode::SUCCESS
            }
            Err(errors) => report(&errors),
        },
        Command::Stun {
            command: StunCommand::Probe { target, timeout_ms },
        } => probe(&target, timeout_ms),
        Command::Report {
            config,
            since,
            json,
        } => match load(config.as_ref()) {
            Ok((c, _)) => rollout_command(scream_ice_host::rollout_cli::report(c, since, json)),
            Err(errors) => report(&errors),
        },
        Command::Rollout {
            command,
            config,
            url,
        } => match load(config.as_ref()) {
            Ok((c, _)) => {
                let action = match command {
                    RolloutCommand::Status => None,
                    RolloutCommand::Advance => Some(r#"{"action":"advance"}"#.to_string()),
                    RolloutCommand::Set { stage } => {
                        Some(format!(r#"{{"action":"set","stage":{stage}}}"#))
                    }
                    RolloutCommand::Pause => Some(r#"{"action":"pause"}"#.to_string()),
                    RolloutCommand::Resume => Some(r#"{"action":"resume"}"#.to_string()),
                };
                rollout_command(scream_ice_host::rollout_cli::rollout(c, url, action))
            }
            Err(errors) => report(&errors),
        },
        Command::Scream { command } => scream_ice_host::scream_cli::run(command),
        Command::Connect {
            url,
            count,
            interval_ms,
            bind,
            stun,
            timeout_ms,
            sink,
            wav,
            seconds,
            idle_stop_ms,
            target_ms,
            max_correction_ppm,
            restart_after_ms,
        } => {
            let mut o = scream_ice_host::connect::ConnectOptions::new(url);
            o.count = count;
            o.interval = Duration::from_millis(interval_ms);
            o.bind = bind;
            o.stun = stun;
            o.timeout = Duration::from_millis(timeout_ms);
            if let (Some(sink), Some(wav)) = (sink, wav) {
                let mut a = scream_ice_host::connect::AudioOptions::new(sink, wav);
                a.duration = Duration::from_secs_f64(seconds.max(0.0));
                a.idle_stop = Duration::from_millis(idle_stop_ms);
                a.playout.target = scream_ice_core::Duration::from_millis(target_ms);
                a.playout.max_correction_ppm = max_correction_ppm;
                a.restart_after = restart_after_ms.map(Duration::from_millis);
                o.audio = Some(a);
            }
            connect(o)
        }
    }
}
