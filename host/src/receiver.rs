//! The speaker's receive pipeline on the host: RTP datagrams in, through
//! `core::playout` (the same jitter buffer the firmware runs), out to WAV
//! files in the stream's format, with the statistics a speaker reports.
//!
//! [`Receiver`] is sans-IO like the core: feed it datagrams with
//! [`Receiver::handle_datagram`] and call [`Receiver::tick`] often (every
//! few milliseconds); it pulls from the playout what a DAC would have
//! consumed by then, at the local clock, and writes it. [`receive_udp`]
//! is the plain-socket loop around it (`scream-ice scream receive`); the
//! ICE session feeds the same `Receiver` from its selected pair.
//!
//! What is written is what the speaker would play: audio and concealment;
//! not the silence before the first datagram or between talk spurts, and
//! not the fade-out tail when the stream ends (underrun frames are held
//! back until audio follows them). A format change starts a new file
//! (`NAME.wav`, then `NAME-1.wav`, ...).

use std::fs::File;
use std::io::BufWriter;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};

use scream_ice_core::Instant;
use scream_ice_core::playout::{Config, FrameKind, Playout, Stats};
use scream_ice_core::scream::{MAX_FRAME_BYTES, ScreamFormat};

/// Slots of the host receiver's buffer: 256 datagrams. Capacity in time
/// depends on the format (a datagram is 6 ms of 48 kHz/16-bit stereo but
/// only 1.45 ms of 44.1 kHz/24-bit 5.1): 370 ms at the smallest common
/// datagram, room for a 250 ms target.
pub const SLOTS: usize = 256;

/// One WAV file written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Its path.
    pub path: PathBuf,
    /// Its format.
    pub format: ScreamFormat,
    /// Frames in it.
    pub frames: u64,
}

/// What a receive run saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The playout's counters at the end.
    pub stats: Stats,
    /// The files written, in order.
    pub segments: Vec<Segment>,
    /// Mean buffer depth while playing, in ms (the latency the buffer adds).
    pub mean_latency_ms: f64,
    /// Interarrival jitter at the end, in ms.
    pub jitter_ms: f64,
}

impl Report {
    /// One line per figure, as `scream-ice` prints them.
    pub fn lines(&self) -> Vec<String> {
        let s = &self.stats;
        let mut v = vec![
            format!(
                "received {} datagrams, lost {}, late {}, duplicates {}, invalid {}, overruns {}",
                s.received, s.lost, s.late, s.duplicates, s.invalid, s.overruns
            ),
            format!(
                "played {} frames, concealed {} (loss), underrun {}",
                s.played_frames, s.concealed_frames, s.underrun_frames
            ),
            format!(
                "jitter {:.2} ms, latency {:.1} ms (mean buffer depth), drift {} ppm, drift corrections: dropped {}, repeated {}",
                self.jitter_ms,
                self.mean_latency_ms,
                s.drift_ppm,
                s.dropped_frames,
                s.repeated_frames
            ),
        ];
        for g in &self.segments {
            v.push(format!(
                "wrote {} ({} Hz, {}-bit, {} ch, {} frames)",
                g.path.display(),
                g.format.sample_rate(),
                g.format.bits(),
                g.format.channels(),
                g.frames
            ));
        }
        v
    }
}

/// The receive pipeline: playout plus WAV writer, driven by the caller.
pub struct Receiver {
    playout: Box<Playout<SLOTS>>,
    base: PathBuf,
    writer: Option<(hound::WavWriter<BufWriter<File>>, ScreamFormat)>,
    segments: Vec<Segment>,
    /// Underrun frames not yet known to be followed by audio.
    pending: Vec<u8>,
    /// The device clock: frames pulled since `anchor`.
    anchor: Option<(Instant, u32)>,
    pulled_since_anchor: u64,
    buf: Vec<u8>,
    depth_sum: f64,
    depth_n: u64,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("stats", &self.playout.stats())
            .finish()
    }
}

impl Receiver {
    /// A receiver writing to `wav` (and siblings on format changes).
    pub fn new(config: Config, wav: &Path) -> Receiver {
        Receiver {
            playout: Box::new(Playout::new(config)),
            base: wav.to_path_buf(),
            writer: None,
            segments: Vec::new(),
            pending: Vec::new(),
            anchor: None,
            pulled_since_anchor: 0,
            buf: vec![0; 4096 * MAX_FRAME_BYTES],
            depth_sum: 0.0,
            depth_n: 0,
        }
    }

    /// Whether the playout is playing (not waiting for audio).
    pub fn is_playing(&self) -> bool {
        self.playout.is_playing()
    }

    /// One datagram from the network at `now`.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        self.playout.handle_packet(now, datagram);
    }

    /// The playout's counters now.
    pub fn stats(&self) -> Stats {
        self.playout.stats()
    }

    /// Play (and write) everything due by `now` at the local clock.
    pub fn tick(&mut self, now: Instant) -> std::io::Result<()> {
        loop {
            let rate = self.playout.format().map_or(48_000, |f| f.sample_rate());
            let (t0, r0) = *self.anchor.get_or_insert((now, rate));
            if r0 != rate {
                // A new rate: the DAC restarts at it.
                self.anchor = Some((now, rate));
                self.pulled_since_anchor = 0;
                continue;
            }
            let due = now.saturating_duration_since(t0).total_micros() as u128 * u128::from(rate)
                / 1_000_000;
            let want = (due as u64).saturating_sub(self.pulled_since_anchor);
            if want == 0 {
                return Ok(());
            }
            let max = (want as usize).min(4096);
            let mut buf = std::mem::take(&mut self.buf);
            let got = self.playout.pull(now, max, &mut buf);
            let result = self.consume(&got, &buf);
            self.buf = buf;
            result?;
            if got.kind == FrameKind::Silence || got.frames == 0 {
                // Not playing: the device is idle, its clock restarts
                // with the next audio.
                self.anchor = None;
                self.pulled_since_anchor = 0;
                self.pending.clear();
                return Ok(());
            }
            self.pulled_since_anchor += got.frames as u64;
            let f = got.format.unwrap_or(ScreamFormat::STEREO_48K_16);
            self.depth_sum +=
                f64::from(self.playout.stats().depth_frames) * 1000.0 / f64::from(f.sample_rate());
            self.depth_n += 1;
        }
    }

    fn consume(
        &mut self,
        got: &scream_ice_core::playout::Pulled,
        buf: &[u8],
    ) -> std::io::Result<()> {
        let Some(format) = got.format else {
            return Ok(());
        };
        let bytes = &buf[..got.frames * format.frame_bytes()];
        match got.kind {
            FrameKind::Underrun => {
                self.pending.extend_from_slice(bytes);
                Ok(())
            }
            FrameKind::Played | FrameKind::Concealed => {
                let pending = std::mem::take(&mut self.pending);
                self.write(format, &pending)?;
                self.write(format, bytes)
            }
            _ => Ok(()),
        }
    }

    fn write(&mut self, format: ScreamFormat, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.writer.as_ref().is_none_or(|(_, f)| *f != format) {
            self.finish_segment()?;
            let path = if self.segments.is_empty() {
                self.base.clone()
            } else {
                let stem = self.base.file_stem().unwrap_or_default().to_string_lossy();
                self.base
                    .with_file_name(format!("{stem}-{}.wav", self.segments.len()))
            };
            let spec = hound::WavSpec {
                channels: u16::from(format.channels()),
                sample_rate: format.sample_rate(),
                bits_per_sample: u16::from(format.bits()),
                sample_format: hound::SampleFormat::Int,
            };
            let w = hound::WavWriter::create(&path, spec).map_err(to_io)?;
            self.segments.push(Segment {
                path,
                format,
                frames: 0,
            });
            self.writer = Some((w, format));
        }
        let (w, _) = self.writer.as_mut().expect("set above");
        write_pcm(w, &format, bytes).map_err(to_io)?;
        if let Some(s) = self.segments.last_mut() {
            s.frames += (bytes.len() / format.frame_bytes()) as u64;
        }
        Ok(())
    }

    fn finish_segment(&mut self) -> std::io::Result<()> {
        if let Some((w, _)) = self.writer.take() {
            w.finalize().map_err(to_io)?;
        }
        Ok(())
    }

    /// Close the files and report.
    pub fn finish(mut self) -> std::io::Result<Report> {
        self.finish_segment()?;
        let stats = self.playout.stats();
        let rate = self
            .playout
            .format()
            .map_or(48_000.0, |f| f64::from(f.sample_rate()));
        Ok(Report {
            stats,
            segments: self.segments,
            mean_latency_ms: if self.depth_n == 0 {
                0.0
            } else {
                self.depth_sum / self.depth_n as f64
            },
            jitter_ms: f64::from(stats.jitter_frames) * 1000.0 / rate,
        })
    }
}

fn to_io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(e) => e,
        e => std::io::Error::other(e.to_string()),
    }
}

/// Write interleaved little-endian PCM of `format` as WAV samples.
pub fn write_pcm<W: std::io::Write + std::io::Seek>(
    w: &mut hound::WavWriter<W>,
    format: &ScreamFormat,
    bytes: &[u8],
) -> hound::Result<()> {
    match format.sample_bytes() {
        2 => {
            for s in bytes.chunks_exact(2) {
                w.write_sample(i16::from_le_bytes([s[0], s[1]]))?;
            }
        }
        3 => {
            for s in bytes.chunks_exact(3) {
                w.write_sample(i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8)?;
            }
        }
        _ => {
            for s in bytes.chunks_exact(4) {
                w.write_sample(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))?;
            }
        }
    }
    Ok(())
}

/// Options of [`receive_udp`].
#[derive(Clone, Debug)]
pub struct ReceiveOptions {
    /// The playout tuning.
    pub config: Config,
    /// The first WAV file.
    pub wav: PathBuf,
    /// Stop after this long (None: until `idle_stop`).
    pub duration: Option<std::time::Duration>,
    /// Stop once audio was played and then nothing arrived for this long.
    pub idle_stop: Option<std::time::Duration>,
}

/// Receive RTP on a plain UDP socket until the duration or the idle stop,
/// writing WAV; returns the report.
pub fn receive_udp(socket: &UdpSocket, opts: &ReceiveOptions) -> std::io::Result<Report> {
    socket.set_read_timeout(Some(std::time::Duration::from_millis(2)))?;
    let mut r = Receiver::new(opts.config, &opts.wav);
    let start = std::time::Instant::now();
    let mut last_rx: Option<std::time::Instant> = None;
    let mut buf = [0u8; 2048];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => {
                last_rx = Some(std::time::Instant::now());
                r.handle_datagram(crate::sinks::now(), &buf[..n]);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        r.tick(crate::sinks::now())?;
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        if let (Some(idle), Some(t)) = (opts.idle_stop, last_rx)
            && t.elapsed() >= idle
            && !r.playout.is_playing()
        {
            break;
        }
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use scream_ice_core::Duration;
    use scream_ice_core::scream::{MAX_PREFIX_LEN, Packetizer};

    /// Packetize Scream datagrams as the router does and feed the RTP to a
    /// receiver on a virtual clock: the WAV holds exactly the PCM sent, in
    /// one file per format.
    #[test]
    fn virtual_clock_stream_is_written_exactly_per_format() {
        let dir = std::env::temp_dir().join(format!("scream-ice-rx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("out.wav");
        let config = Config {
            max_correction_ppm: 0,
            ..Config::default()
        };
        let mut rx = Receiver::new(config, &wav);
        let mut pk = Packetizer::new(1, 0, 0, Duration::from_millis(50));
        let formats = [
            ScreamFormat::new(48_000, 16, 2, 3).unwrap(),
            ScreamFormat::new(44_100, 24, 6, 0x060F).unwrap(),
        ];
        let mut sent: Vec<Vec<u8>> = vec![Vec::new(), Vec::new()];
        let mut t = 0u64;
        let mut prefix = [0u8; MAX_PREFIX_LEN];
        for (fi, f) in formats.iter().enumerate() {
            for k in 0..100u32 {
                let mut d = vec![0u8; 5 + 1152];
                d[..5].copy_from_slice(&f.to_header());
                for (i, b) in d[5..].iter_mut().enumerate() {
                    *b = (i as u32 * 31 + k * 7 + fi as u32) as u8;
                }
                sent[fi].extend_from_slice(&d[5..]);
                let now = Instant::from_micros(t);
                let p = pk.packetize(now, &d, &mut prefix).unwrap();
                let mut rtp = prefix[..p.prefix_len].to_vec();
                rtp.extend_from_slice(&d[5..]);
                rx.handle_datagram(now, &rtp);
                let step = f.duration_of(f.frames_in(1152).unwrap()).total_micros();
                // Tick every millisecond up to the next datagram.
                let next = t + step;
                while t < next {
                    t += 1000.min(next - t);
                    rx.tick(Instant::from_micros(t)).unwrap();
                }
            }
        }
        for _ in 0..500 {
            t += 1000;
            rx.tick(Instant::from_micros(t)).unwrap();
        }
        let report = rx.finish().unwrap();
        assert_eq!(report.segments.len(), 2, "{:?}", report.lines());
        assert_eq!(report.stats.lost, 0);
        assert_eq!(report.stats.concealed_frames, 0);
        for (seg, (f, pcm)) in report.segments.iter().zip(formats.iter().zip(&sent)) {
            assert_eq!(seg.format, *f);
            let mut r = hound::WavReader::open(&seg.path).unwrap();
            assert_eq!(r.spec().sample_rate, f.sample_rate());
            let mut bytes = Vec::new();
            for s in r.samples::<i32>() {
                bytes.extend_from_slice(&s.unwrap().to_le_bytes()[..f.sample_bytes()]);
            }
            assert!(bytes == *pcm, "{} differs", seg.path.display());
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
