//! `scream-ice`: the ScreamRouter ICE daemon and its operator CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use scream_ice_host::config::{Config, LocatedError, Origin, Sourced, parse_stun_listen};

/// The ScreamRouter ICE daemon and its operator tools.
#[derive(Parser, Debug)]
#[command(name = "scream-ice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: the STUN responder and the HTTP API, until SIGINT/SIGTERM.
    Serve {
        /// YAML config file (default: the embedded default config).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Override server.http_listen, e.g. 0.0.0.0:8188 to serve the LAN.
        #[arg(long, value_name = "ADDR")]
        http_listen: Option<SocketAddr>,
        /// Override server.stun_listen: IP:PORT, or "off".
        #[arg(long, value_name = "ADDR")]
        stun_listen: Option<String>,
    },
    /// Check or show configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// STUN tools.
    Stun {
        #[command(subcommand)]
        command: StunCommand,
    },
    /// Scream audio tools: test senders, a fixed-destination relay, the
    /// receive pipeline.
    Scream {
        #[command(subcommand)]
        command: scream_ice_host::scream_cli::ScreamCommand,
    },
    /// Speaker simulator: open an ICE session with a running daemon, send
    /// test datagrams it echoes, report loss and round-trip times.
    Connect {
        /// The daemon's base URL, e.g. http://127.0.0.1:8188.
        url: String,
        /// Test datagrams to send once connected.
        #[arg(long, value_name = "N", default_value_t = 10)]
        count: u32,
        /// Milliseconds between test datagrams.
        #[arg(long, value_name = "N", default_value_t = 20)]
        interval_ms: u64,
        /// Bind host sockets on this address (repeatable; default: all
        /// interfaces).
        #[arg(long, value_name = "IP")]
        bind: Vec<std::net::IpAddr>,
        /// A STUN server the policy may use (`stun:HOST[:PORT]`; repeatable).
        #[arg(long, value_name = "URL")]
        stun: Vec<String>,
        /// Give up if not connected within this many milliseconds.
        #[arg(long, value_name = "N", default_value_t = 10000)]
        timeout_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a config file (ignores the environment); one line per error.
    Check {
        /// The YAML file.
        file: PathBuf,
    },
    /// Print the effective config (file or default, plus environment) as
    /// YAML, with the origin of each value as a comment.
    Show {
        /// YAML config file (default: the embedded default config).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print TURN credentials instead of redacting them.
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Subcommand, Debug)]
enum StunCommand {
    /// Send one Binding request; print the mapped address and the RTT.
    Probe {
        /// The server, HOST:PORT.
        target: String,
        /// Give up after this long.
        #[arg(long, value_name = "N", default_value_t = 3000)]
        timeout_ms: u64,
    },
}

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
    let (mut c, warnings) = match load(config.as_ref()) {
        Ok(r) => r,
        Err(errors) => return report(&errors),
    };
    if let Some(a) = http_listen {
        c.server.http_listen = Sourced {
            value: a,
            origin: Origin::Flag {
                flag: "--http-listen",
            },
        };
    }
    if let Some(s) = stun_listen {
        match parse_stun_listen(&s) {
            Ok(a) => {
                c.server.stun_listen = Sourced {
                    value: a,
                    origin: Origin::Flag {
                        flag: "--stun-listen",
                    },
                }
            }
            Err(m) => {
                eprintln!("scream-ice: --stun-listen: {m}");
                return ExitCode::FAILURE;
            }
        }
    }
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
    for line in c.provenance_lines() {
        tracing::info!("config: {line}");
    }
    let result = runtime.block_on(scream_ice_host::serve::run(c, listeners));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scream-ice: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe(target: &str, timeout_ms: u64) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scream-ice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
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
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("scream-ice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(scream_ice_host::connect::run(&opts, &mut out)) {
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
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(errors) => report(&errors),
        },
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
        Command::Scream { command } => scream_ice_host::scream_cli::run(command),
        Command::Connect {
            url,
            count,
            interval_ms,
            bind,
            stun,
            timeout_ms,
        } => {
            let mut o = scream_ice_host::connect::ConnectOptions::new(url);
            o.count = count;
            o.interval = Duration::from_millis(interval_ms);
            o.bind = bind;
            o.stun = stun;
            o.timeout = Duration::from_millis(timeout_ms);
            connect(o)
        }
    }
}
