//! The `scream-ice` command line, as clap types: the binary parses with
//! [`Cli`], and tests parse every command the docs show with
//! `Cli::try_parse_from`, so the docs and the CLI cannot drift apart.
//!
//! Field doc comments are the `--help` text.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The ScreamRouter ICE daemon and its operator tools.
#[derive(Parser, Debug)]
#[command(name = "scream-ice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    /// The subcommand.
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
#[allow(clippy::exhaustive_enums)] // the binary handles every subcommand
pub enum Command {
    /// Run the daemon: the STUN responder and the HTTP API, until
    /// SIGINT/SIGTERM; SIGHUP re-reads the config file.
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
        /// `check` or `show`.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// STUN tools.
    Stun {
        /// `probe`.
        #[command(subcommand)]
        command: StunCommand,
    },
    /// Scream audio tools: test senders, a fixed-destination relay, the
    /// receive pipeline.
    Scream {
        /// `send`, `tone`, `relay` or `receive`.
        #[command(subcommand)]
        command: crate::scream_cli::ScreamCommand,
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
        /// Play this router sink (POST ?sink=NAME) instead of sending test
        /// datagrams; needs --wav.
        #[arg(long, value_name = "NAME", requires = "wav")]
        sink: Option<String>,
        /// With --sink: write what would play here (format changes add
        /// NAME-1.wav, ...).
        #[arg(long, value_name = "FILE", requires = "sink")]
        wav: Option<std::path::PathBuf>,
        /// With --sink: receive at most this many seconds.
        #[arg(long, value_name = "N", default_value_t = 10.0)]
        seconds: f64,
        /// With --sink: stop once the stream has ended for this many ms.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        idle_stop_ms: u64,
        /// With --sink: playout target latency in ms.
        #[arg(long, value_name = "N", default_value_t = 40)]
        target_ms: u64,
        /// With --sink: drift correction limit in frames per million (0: off).
        #[arg(long, value_name = "N", default_value_t = 1000)]
        max_correction_ppm: u32,
        /// With --sink: restart ICE (PATCH new ufrag/pwd) this many ms after
        /// connecting, mid-stream; the audio gap shows as "largest gap".
        #[arg(long, value_name = "N", requires = "sink")]
        restart_after_ms: Option<u64>,
    },
    /// Migrate a legacy ICE config to the new YAML (mode auto).
    ///
    /// Reads a JSON RTCConfiguration, a JSON iceServers list, or an old
    /// YAML config with legacy_mode; writes mode auto, local priority on,
    /// every server kept. Backs the target up first (FILE.TIMESTAMP.migrate.bak)
    /// and replaces it atomically; never loses a file.
    Migrate {
        /// The legacy file (.json or .yaml). A YAML file is migrated in place.
        file: PathBuf,
        /// Where to write the new YAML (default: in place for YAML, the
        /// same name with .yaml for JSON).
        #[arg(long, value_name = "PATH")]
        output: Option<PathBuf>,
        /// Print the new YAML and a unified diff; touch nothing.
        #[arg(long)]
        dry_run: bool,
        /// Drop keys the migration does not understand (each is named)
        /// instead of refusing the file.
        #[arg(long)]
        drop_unknown: bool,
    },
    /// Switch back to legacy ICE, persisted in the config file.
    ///
    /// Sets legacy_mode: true (or restores the newest migration backup)
    /// through the same atomic path as migrate; then reload the running
    /// daemon (systemctl reload scream-ice, or SIGHUP).
    Rollback {
        /// The daemon's config file.
        #[arg(
            long,
            value_name = "FILE",
            default_value = "/var/lib/scream-ice/config.yaml"
        )]
        config: PathBuf,
        /// Why (logged, and passed to the rollout hook).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Restore the newest backup `scream-ice migrate` made instead of
        /// editing the file.
        #[arg(long)]
        restore_backup: bool,
    },
    /// The seed's monitoring queries and KPI targets over the outcome store.
    Report {
        /// YAML config file (its store.url or data_dir; default: the embedded default).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Only outcomes newer than this (30m, 24h, 7d, ...).
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        since: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Steer the staged rollout of a running daemon (admin API).
    Rollout {
        /// `status`, `advance`, `set`, `pause` or `resume`.
        #[command(subcommand)]
        command: RolloutCommand,
        /// YAML config file of the daemon (for its address and data dir).
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// The daemon's base URL (default: the config's server.http_listen).
        #[arg(long, value_name = "URL", global = true)]
        url: Option<String>,
    },
}

/// `scream-ice rollout ...`.
#[derive(Subcommand, Debug)]
#[allow(clippy::exhaustive_enums)] // the binary handles every subcommand
pub enum RolloutCommand {
    /// Print the stage, the state and the monitor's last decision.
    Status,
    /// Move to the next stage.
    Advance,
    /// Move to stage PERCENT (never below the one in force).
    Set {
        /// One of the configured stages, e.g. 50.
        stage: u8,
    },
    /// Everybody on legacy ICE until resume (no rollback, no webhook).
    Pause,
    /// Undo pause.
    Resume,
}

/// `scream-ice config ...`.
#[derive(Subcommand, Debug)]
#[allow(clippy::exhaustive_enums)] // the binary handles every subcommand
pub enum ConfigCommand {
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

/// `scream-ice stun ...`.
#[derive(Subcommand, Debug)]
#[allow(clippy::exhaustive_enums)] // the binary handles every subcommand
pub enum StunCommand {
    /// Send one Binding request; print the mapped address and the RTT.
    Probe {
        /// The server, HOST:PORT.
        target: String,
        /// Give up after this long.
        #[arg(long, value_name = "N", default_value_t = 3000)]
        timeout_ms: u64,
    },
}
