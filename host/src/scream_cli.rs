//! `scream-ice scream ...`: Scream test senders, a standalone sink relay
//! and the receive pipeline on a plain socket.
//!
//! The senders pace like the Scream driver: one datagram of 1152 PCM bytes
//! each time that much audio has elapsed, on absolute deadlines (no drift
//! from sleep overshoot), optionally with a clock error in ppm to test the
//! speaker's drift correction.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Subcommand;
use scream_ice_core::scream::{self, PCM_PAYLOAD_LEN, ScreamFormat};

use crate::relay::{Relay, Route};
use crate::sinks::{Sink, SinkConfig, SinkListen};

/// Where a test sender sends, and how its clock runs.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// Destination (a sink's listen address).
    #[arg(long, value_name = "IP:PORT")]
    pub to: SocketAddr,
    /// Clock error of this sender: positive runs fast.
    #[arg(
        long,
        value_name = "PPM",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    pub ppm: f64,
}

/// `scream-ice scream` subcommands.
#[derive(Subcommand, Debug)]
#[non_exhaustive]
pub enum ScreamCommand {
    /// Send WAV files as a Scream stream, paced like the Scream driver
    /// (several files play back to back: a format change mid-stream).
    Send {
        /// 16-, 24- or 32-bit integer PCM WAV files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Destination and clock error.
        #[command(flatten)]
        target: Target,
    },
    /// Send a sine tone as a Scream stream.
    Tone {
        /// Destination and clock error.
        #[command(flatten)]
        target: Target,
        /// Seconds of tone.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Tone frequency in Hz.
        #[arg(long, default_value_t = 440.0)]
        freq: f64,
        /// Sample rate (a multiple of 44100 or 48000).
        #[arg(long, default_value_t = 48_000)]
        rate: u32,
        /// Bits per sample (16, 24, 32).
        #[arg(long, default_value_t = 16)]
        bits: u8,
        /// Channels (1..=8).
        #[arg(long, default_value_t = 2)]
        channels: u8,
    },
    /// Ingest one sink and relay its RTP to fixed destinations (no ICE):
    /// for tests and for a speaker on a known address.
    Relay {
        /// Where the sink listens: IP:PORT or a multicast group.
        #[arg(long, value_name = "ADDR")]
        listen: String,
        /// Speaker addresses (repeatable).
        #[arg(long, value_name = "IP:PORT", required = true)]
        to: Vec<SocketAddr>,
        /// Stop after this many seconds (default: run until killed).
        #[arg(long)]
        seconds: Option<f64>,
        /// Stop once the stream has run and then paused this many ms.
        #[arg(long, value_name = "MS")]
        idle_stop_ms: Option<u64>,
    },
    /// Receive the router's RTP on a plain UDP socket through the playout
    /// buffer, write what would play to WAV, print the statistics.
    Receive {
        /// Local address to receive on.
        #[arg(long, value_name = "IP:PORT")]
        listen: SocketAddr,
        /// The WAV file (format changes add NAME-1.wav, ...).
        #[arg(long, value_name = "FILE")]
        wav: PathBuf,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<f64>,
        /// Stop once the stream has ended for this many ms (default 1000).
        #[arg(long, default_value_t = 1000)]
        idle_stop_ms: u64,
        /// Playout target latency in ms.
        #[arg(long, default_value_t = 40)]
        target_ms: u64,
        /// Drift correction limit in frames per million (0: off).
        #[arg(long, default_value_t = 1000)]
        max_correction_ppm: u32,
    },
}

/// Run a `scream` subcommand; prints one line on error.
pub fn run(cmd: ScreamCommand) -> ExitCode {
    let result = match cmd {
        ScreamCommand::Send { files, target } => send_files(&files, target.to, target.ppm),
        ScreamCommand::Tone {
            target,
            seconds,
            freq,
            rate,
            bits,
            channels,
        } => ScreamFormat::new(rate, bits, channels, default_mask(channels))
            .map_err(|e| e.to_string())
            .and_then(|f| {
                let pcm = tone(&f, freq, seconds);
                let mut pacer = Pacer::new(target.to, target.ppm).map_err(|e| e.to_string())?;
                pacer.send(&f, &pcm).map_err(|e| e.to_string())?;
                println!("sent {} datagrams", pacer.sent);
                Ok(())
            }),
        ScreamCommand::Relay {
            listen,
            to,
            seconds,
            idle_stop_ms,
        } => relay(
            &listen,
            &to,
            seconds,
            idle_stop_ms.map(Duration::from_millis),
        ),
        ScreamCommand::Receive {
            listen,
            wav,
            seconds,
            idle_stop_ms,
            target_ms,
            max_correction_ppm,
        } => receive(
            listen,
            wav,
            seconds,
            idle_stop_ms,
            target_ms,
            max_correction_ppm,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scream-ice: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The WAVEFORMATEXTENSIBLE mask Windows uses for `channels`.
pub fn default_mask(channels: u8) -> u16 {
    match channels {
        1 => 0x0004,
        2 => 0x0003,
        4 => 0x0033,
        6 => 0x060F,
        8 => 0x063F,
        n => (1u16 << n) - 1,
    }
}

/// A sine at `freq` for `seconds`, every channel the same, as Scream PCM.
pub fn tone(format: &ScreamFormat, freq: f64, seconds: f64) -> Vec<u8> {
    let frames = (seconds * f64::from(format.sample_rate())) as usize;
    let w = format.sample_bytes();
    let peak = 0.5 * ((1i64 << (8 * w - 1)) - 1) as f64;
    let mut out = Vec::with_capacity(frames * format.frame_bytes());
    for i in 0..frames {
        let v = (peak
            * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(format.sample_rate()))
                .sin()) as i32;
        for _ in 0..format.channels() {
            out.extend_from_slice(&v.to_le_bytes()[..w]);
        }
    }
    out
}

/// Read an integer PCM WAV file as its Scream format and little-endian PCM.
pub fn read_wav(path: &std::path::Path) -> Result<(ScreamFormat, Vec<u8>), String> {
    let mut r = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = r.spec();
    if spec.sample_format != hound::SampleFormat::Int {
        return Err(format!("{}: only integer PCM is supported", path.display()));
    }
    let channels = u8::try_from(spec.channels).unwrap_or(0);
    let bits = u8::try_from(spec.bits_per_sample).unwrap_or(0);
    let format = ScreamFormat::new(spec.sample_rate, bits, channels, default_mask(channels))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let w = format.sample_bytes();
    let mut pcm = Vec::with_capacity(r.len() as usize * w);
    for s in r.samples::<i32>() {
        let s = s.map_err(|e| format!("{}: {e}", path.display()))?;
        pcm.extend_from_slice(&s.to_le_bytes()[..w]);
    }
    Ok((format, pcm))
}

/// A paced Scream sender on its own socket.
#[derive(Debug)]
pub struct Pacer {
    socket: UdpSocket,
    to: SocketAddr,
    /// Scale of the sender's clock: >1 sends faster.
    speed: f64,
    start: Option<Instant>,
    /// Audio already sent, in seconds of the sender's clock.
    sent_secs: f64,
    /// Datagrams sent.
    pub sent: u64,
}

impl Pacer {
    /// A sender to `to` whose clock runs `ppm` fast.
    pub fn new(to: SocketAddr, ppm: f64) -> std::io::Result<Pacer> {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        Ok(Pacer {
            socket: UdpSocket::bind(bind)?,
            to,
            speed: 1.0 + ppm / 1e6,
            start: None,
            sent_secs: 0.0,
            sent: 0,
        })
    }

    /// Send `pcm` of `format` as the Scream driver does: 1152-byte
    /// datagrams whatever the format (with 5 or 7 channels a frame
    /// straddles two), the last one shorter, each when its audio is due.
    /// A partial frame at the end of `pcm` is not sent.
    pub fn send(&mut self, format: &ScreamFormat, pcm: &[u8]) -> std::io::Result<()> {
        let start = *self.start.get_or_insert_with(Instant::now);
        let fb = format.frame_bytes();
        let pcm = &pcm[..pcm.len() / fb * fb];
        let mut d = vec![0u8; scream::HEADER_LEN + PCM_PAYLOAD_LEN];
        for piece in pcm.chunks(PCM_PAYLOAD_LEN) {
            let due = start + Duration::from_secs_f64(self.sent_secs / self.speed);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let n = scream::emit(format, piece, &mut d).expect("buffer sized for a chunk");
            self.socket.send_to(&d[..n], self.to)?;
            self.sent += 1;
            self.sent_secs += piece.len() as f64 / fb as f64 / f64::from(format.sample_rate());
        }
        Ok(())
    }
}

fn send_files(files: &[PathBuf], to: SocketAddr, ppm: f64) -> Result<(), String> {
    // Read everything first: reading between files would pause the stream.
    let streams = files
        .iter()
        .map(|f| read_wav(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pacer = Pacer::new(to, ppm).map_err(|e| e.to_string())?;
    for (format, pcm) in &streams {
        pacer.send(format, pcm).map_err(|e| e.to_string())?;
    }
    println!("sent {} datagrams", pacer.sent);
    Ok(())
}

fn relay(
    listen: &str,
    to: &[SocketAddr],
    seconds: Option<f64>,
    idle_stop: Option<Duration>,
) -> Result<(), String> {
    let listen: SinkListen = listen.parse()?;
    let v4 = to.first().is_none_or(|a| a.is_ipv4());
    let out =
        UdpSocket::bind(if v4 { "0.0.0.0:0" } else { "[::]:0" }).map_err(|e| e.to_string())?;
    let relay = Relay::new(vec![Arc::new(out)]).map_err(|e| e.to_string())?;
    for &destination in to {
        relay
            .subscribe(Route {
                socket: 0,
                destination,
            })
            .map_err(|e| e.to_string())?;
    }
    let sink = Sink::start(
        &SinkConfig {
            name: "cli".into(),
            listen,
        },
        relay,
    )
    .map_err(|e| format!("cannot listen: {e}"))?;
    println!("relaying {} to {} speaker(s)", sink.local_addr(), to.len());
    let end = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s));
    let mut last = (0, Instant::now());
    while end.is_none_or(|e| Instant::now() < e) {
        std::thread::sleep(Duration::from_millis(20));
        let n = sink.stats().datagrams;
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && idle_stop.is_some_and(|d| last.1.elapsed() >= d) {
            break;
        }
    }
    let s = sink.stats();
    let r = sink.relay().stats();
    println!(
        "ingested {} datagrams ({} invalid, {} format changes, {} silences); sent {} messages, {} errors",
        s.datagrams, s.invalid, s.format_changes, s.silences, r.messages, r.errors
    );
    Ok(())
}

fn receive(
    listen: SocketAddr,
    wav: PathBuf,
    seconds: Option<f64>,
    idle_stop_ms: u64,
    target_ms: u64,
    max_correction_ppm: u32,
) -> Result<(), String> {
    let socket = UdpSocket::bind(listen).map_err(|e| format!("cannot bind {listen}: {e}"))?;
    crate::relay::grow_receive_buffer(&socket, 1 << 20);
    let config = scream_ice_core::playout::Config {
        target: scream_ice_core::Duration::from_millis(target_ms),
        max_correction_ppm,
        ..Default::default()
    };
    let opts = crate::receiver::ReceiveOptions {
        config,
        wav,
        duration: seconds.map(Duration::from_secs_f64),
        idle_stop: Some(Duration::from_millis(idle_stop_ms)),
    };
    println!(
        "receiving on {}",
        socket.local_addr().map_err(|e| e.to_string())?
    );
    let report = crate::receiver::receive_udp(&socket, &opts).map_err(|e| e.to_string())?;
    for l in report.lines() {
        println!("{l}");
    }
    Ok(())
}
