//! The speaker's jitter buffer: RTP datagrams from the router in, PCM frames
//! for the DAC out.
//!
//! [`Playout`] sits between the socket and the audio device. Datagrams go in
//! with [`Playout::handle_packet`] as they arrive (any order); the device
//! pulls frames with [`Playout::pull`] at its own clock. Both take `now`,
//! the caller's monotonic time; the buffer reads no clock itself.
//!
//! Guarantees:
//!
//! - **Fixed capacity, no allocation**: `SLOTS` datagrams of at most
//!   `BYTES` PCM bytes each, all inside the struct.
//! - **Target latency**: after silence (or at start) playback begins
//!   [`Config::target`] after the first datagram arrived, so that much
//!   jitter is absorbed. Datagrams reordered within the buffer are played in
//!   sequence order.
//! - **Late and lost**: a datagram whose turn has passed is dropped and
//!   counted as late; a missing datagram is concealed when its turn comes
//!   and a later one is already buffered. Loss is counted as RFC 3550 A.3
//!   does: expected (highest − first + 1) minus received.
//! - **Concealment without clicks**: a gap plays the last frame, faded
//!   linearly to zero over [`Config::fade_frames`], then zeros; the first
//!   real frames after it fade back in over the same length. Nothing is
//!   ever cut from signal to silence in one sample.
//! - **Drift**: a sender whose clock runs faster or slower than the DAC
//!   fills or drains the buffer. The smoothed depth is held within
//!   [`Config::target`] ± a hysteresis by dropping or repeating a single
//!   frame, at most [`Config::max_correction_ppm`] frames per million
//!   played. The drift itself is estimated from arrival times against RTP
//!   timestamps and reported in ppm.
//!
//! Drain rule: after each [`Playout::handle_packet`] nothing is pending;
//! the device calls [`Playout::pull`] whenever it needs frames, and a pull
//! that returns fewer frames than asked (a format boundary or a change of
//! [`FrameKind`]) should be repeated for the rest.

use crate::scream::{self, MAX_FRAME_BYTES, ScreamFormat, rtp};
use crate::time::{Duration, Instant};

/// Tuning of a [`Playout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Latency from first arrival to first play (default 40 ms).
    pub target: Duration,
    /// How far the smoothed depth may stray from the target before a frame
    /// is dropped or repeated (default 20 ms).
    pub hysteresis: Duration,
    /// Most frames dropped or repeated per million played (default 1000,
    /// i.e. at most one per 1000 frames); 0 turns drift correction off.
    pub max_correction_ppm: u32,
    /// Length of the fade out into and in after concealment (default 48
    /// frames, 1 ms at 48 kHz).
    pub fade_frames: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            target: Duration::from_millis(40),
            hysteresis: Duration::from_millis(20),
            max_correction_ppm: 1000,
            fade_frames: 48,
        }
    }
}

/// Counters and gauges of a [`Playout`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Distinct datagrams received (late ones included).
    pub received: u64,
    /// Datagrams expected from the sequence numbers but never received.
    pub lost: u64,
    /// Datagrams that arrived after their turn and were dropped.
    pub late: u64,
    /// Datagrams received twice.
    pub duplicates: u64,
    /// Datagrams that were not RTP carrying Scream PCM, or too long.
    pub invalid: u64,
    /// Times the buffer overflowed (a datagram too far ahead) and restarted.
    pub overruns: u64,
    /// Frames concealed for missing datagrams.
    pub concealed_frames: u64,
    /// Frames concealed because the buffer ran dry.
    pub underrun_frames: u64,
    /// Frames played from datagrams.
    pub played_frames: u64,
    /// Frames dropped by drift correction.
    pub dropped_frames: u64,
    /// Frames repeated by drift correction.
    pub repeated_frames: u64,
    /// Buffered frames ahead of the play position right now.
    pub depth_frames: u32,
    /// Interarrival jitter (RFC 3550 §6.4.1), in frames.
    pub jitter_frames: u32,
    /// Sender clock against ours (positive: sender fast), in ppm.
    pub drift_ppm: i32,
}

/// What a [`Pulled`] batch of frames is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameKind {
    /// Audio from datagrams (possibly faded in after concealment).
    Played,
    /// Concealment of a lost or late datagram.
    Concealed,
    /// Concealment because nothing was buffered.
    Underrun,
    /// Not playing (before the first datagram, or after the stream
    /// stopped): no frames were written.
    Silence,
}

/// The result of one [`Playout::pull`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pulled {
    /// Frames written to the start of the output.
    pub frames: usize,
    /// Their format (`None` only for [`FrameKind::Silence`] before any
    /// datagram).
    pub format: Option<ScreamFormat>,
    /// What they are.
    pub kind: FrameKind,
}

#[derive(Clone, Copy, Debug)]
struct Slot<const BYTES: usize> {
    seq: u64,
    valid: bool,
    format: ScreamFormat,
    len: u16,
    data: [u8; BYTES],
}

/// The jitter buffer: `SLOTS` datagrams of up to `BYTES` PCM bytes.
///
/// 16 slots of [`scream::MAX_RTP_PCM_LEN`] = 1,184 bytes by default (a
/// driver datagram's 1152 plus a partial frame carried by the router's
/// [`scream::Reframer`] for 5- and 7-channel streams; about 19 KiB) hold
/// 96 ms of 48 kHz/16-bit stereo, enough for the default 40 ms target and
/// 20 ms hysteresis.
/// Capacity is counted in datagrams, so it is shorter in time for formats
/// with more bytes per frame (a 1152-byte datagram of 44.1 kHz/24-bit 5.1
/// is 1.45 ms): size `SLOTS` for the largest frame a speaker accepts, at
/// least (target + hysteresis + jitter) / datagram duration. A datagram
/// beyond the capacity restarts the buffer and is counted in
/// [`Stats::overruns`].
#[derive(Clone, Debug)]
pub struct Playout<const SLOTS: usize = 16, const BYTES: usize = { scream::MAX_RTP_PCM_LEN }> {
    config: Config,
    slots: [Slot<BYTES>; SLOTS],
    stats: Stats,
    ssrc: Option<u32>,
    first_seq: u64,
    max_seq: u64,
    read_seq: u64,
    read_off: usize,
    playing: bool,
    buffering_since: Option<Instant>,
    underrun_since: Option<Instant>,
    format: Option<ScreamFormat>,
    frames_per_packet: u32,
    conceal_left: u32,
    last_frame: [u8; MAX_FRAME_BYTES],
    fade_out_pos: u32,
    fade_in_left: u32,
    frames_since_correction: u64,
    depth_ema: i64,
    transit: Option<i64>,
    jitter_q4: u64,
    drift_ref: Option<DriftRef>,
}

/// The drift estimator's window, in microseconds.
const DRIFT_WINDOW_US: i64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
struct DriftRef {
    t0: Instant,
    ts0: u32,
    rate: u32,
    first_min: i64,
    window_start: Instant,
    window_min: i64,
}

impl<const SLOTS: usize, const BYTES: usize> Playout<SLOTS, BYTES> {
    /// An empty buffer.
    pub fn new(config: Config) -> Self {
        Playout {
            config,
            slots: [Slot {
                seq: 0,
                valid: false,
                format: ScreamFormat::STEREO_48K_16,
                len: 0,
                data: [0; BYTES],
            }; SLOTS],
            stats: Stats::default(),
            ssrc: None,
            first_seq: 0,
            max_seq: 0,
            read_seq: 0,
            read_off: 0,
            playing: false,
            buffering_since: None,
            underrun_since: None,
            format: None,
            frames_per_packet: 0,
            conceal_left: 0,
            last_frame: [0; MAX_FRAME_BYTES],
            fade_out_pos: 0,
            fade_in_left: 0,
            frames_since_correction: 0,
            depth_ema: 0,
            transit: None,
            jitter_q4: 0,
            drift_ref: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters and gauges (depth and drift as of the last call).
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        let expected = if self.ssrc.is_some() {
            self.max_seq - self.first_seq + 1
        } else {
            0
        };
        s.lost = expected.saturating_sub(s.received);
        s.depth_frames = self.depth_frames() as u32;
        s.jitter_frames = (self.jitter_q4 >> 4) as u32;
        s
    }

    /// The format being played (or last played).
    pub fn format(&self) -> Option<ScreamFormat> {
        self.format
    }

    /// Whether frames are being played (not buffering, not idle).
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    fn slot_index(seq: u64) -> usize {
        (seq % SLOTS as u64) as usize
    }

    /// The sequence number closest to the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let reference = self.max_seq;
        let cand = (reference & !0xffff) | u64::from(seq);
        let mut best = cand;
        for c in [cand.wrapping_sub(0x1_0000), cand + 0x1_0000] {
            if c.abs_diff(reference) < best.abs_diff(reference) {
                best = c;
            }
        }
        best
    }

    fn reset(&mut self, seq: u64) {
        for s in self.slots.iter_mut() {
            s.valid = false;
        }
        self.first_seq = seq;
        self.max_seq = seq;
        self.read_seq = seq;
        self.read_off = 0;
        self.playing = false;
        self.buffering_since = None;
        self.underrun_since = None;
        self.conceal_left = 0;
        self.transit = None;
        self.drift_ref = None;
    }

    /// One datagram from the socket, received at `now`. Never panics; bad
    /// input is counted in [`Stats::invalid`].
    pub fn handle_packet(&mut self, now: Instant, datagram: &[u8]) {
        let Ok((h, payload)) = rtp::Header::parse(datagram) else {
            self.stats.invalid += 1;
            return;
        };
        let Ok((format, pcm)) = scream::split_payload(h.payload_type, payload) else {
            self.stats.invalid += 1;
            return;
        };
        if pcm.len() > BYTES {
            self.stats.invalid += 1;
            return;
        }
        if self.ssrc != Some(h.ssrc) {
            // A new stream (or the first): start over around it.
            self.ssrc = Some(h.ssrc);
            self.reset((1 << 32) | u64::from(h.sequence));
        }
        let seq = self.extend(h.sequence);
        if seq < self.read_seq {
            if self.playing || self.underrun_since.is_some() {
                self.stats.late += 1;
                self.stats.received += 1;
                return;
            }
            // Still buffering: an earlier datagram reordered before the
            // first one; play from it, if it fits.
            if self.max_seq - seq >= SLOTS as u64 {
                self.stats.late += 1;
                self.stats.received += 1;
                return;
            }
            self.read_seq = seq;
            self.first_seq = self.first_seq.min(seq);
        }
        if seq >= self.read_seq + SLOTS as u64 {
            // Far ahead of what we play: the buffer cannot hold it. Restart
            // the stream from here (the sender ran away or we stalled).
            self.stats.overruns += 1;
            let (first, received) = (self.first_seq, self.stats.received);
            self.reset(seq);
            // Keep the loss accounting across the restart: everything
            // between is either played or lost.
            self.first_seq = first;
            self.stats.received = received;
        }
        let slot = &mut self.slots[Self::slot_index(seq)];
        if slot.valid && slot.seq == seq {
            self.stats.duplicates += 1;
            return;
        }
        slot.seq = seq;
        slot.valid = true;
        slot.format = format;
        slot.len = pcm.len() as u16;
        slot.data[..pcm.len()].copy_from_slice(pcm);
        self.stats.received += 1;
        self.max_seq = self.max_seq.max(seq);

        self.update_timing(now, &h, format);
        if !self.playing && self.buffering_since.is_none() {
            self.buffering_since = Some(now);
        }
        if self.underrun_since.is_some() && h.marker {
            // The source was silent and starts again: rebuffer to target.
            self.playing = false;
            self.underrun_since = None;
            self.buffering_since = Some(now);
            self.read_seq = seq;
            self.read_off = 0;
        }
    }

    fn update_timing(&mut self, now: Instant, h: &rtp::Header, format: ScreamFormat) {
        let rate = u64::from(format.sample_rate());
        let arrival = (now.total_micros().wrapping_mul(rate) / 1_000_000) as i64;
        // RFC 3550 §6.4.1 interarrival jitter, on the RTP clock.
        let transit = arrival.wrapping_sub(i64::from(h.timestamp));
        if let Some(prev) = self.transit.filter(|_| !h.marker) {
            let d = transit
                .wrapping_sub(prev)
                .unsigned_abs()
                .min(u64::from(u32::MAX));
            // J += (|D| - J) / 16, kept in 1/16 frames.
            self.jitter_q4 = self.jitter_q4 + d - (self.jitter_q4 >> 4);
        }
        self.transit = Some(transit);
        // Drift: how the one-way transit (local arrival minus media time)
        // moves. Its minimum over a window is what the network adds at
        // best, so jitter and a slow first datagram cancel out; the change
        // of that minimum from the first window to the latest, over the
        // time between them, is the clock difference.
        let rate = format.sample_rate();
        let d = match self.drift_ref {
            Some(d) if !h.marker && d.rate == rate => d,
            _ => {
                self.drift_ref = Some(DriftRef {
                    t0: now,
                    ts0: h.timestamp,
                    rate,
                    first_min: i64::MAX,
                    window_start: now,
                    window_min: i64::MAX,
                });
                return;
            }
        };
        let local = now.saturating_duration_since(d.t0).total_micros() as i64;
        let media = i64::from(h.timestamp.wrapping_sub(d.ts0)) * 1_000_000 / i64::from(rate);
        let transit = local - media;
        let mut d = d;
        if local < DRIFT_WINDOW_US {
            d.first_min = d.first_min.min(transit);
            d.window_start = d.t0 + Duration::from_micros(DRIFT_WINDOW_US as u64);
        } else {
            let in_window = now.saturating_duration_since(d.window_start).total_micros() as i64;
            if in_window >= DRIFT_WINDOW_US {
                if d.window_min != i64::MAX && d.first_min != i64::MAX {
                    let span = d
                        .window_start
                        .saturating_duration_since(d.t0)
                        .total_micros() as i64;
                    if span > 0 {
                        let ppm = -(d.window_min - d.first_min) * 1_000_000 / span;
                        self.stats.drift_ppm =
                            ppm.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
                    }
                }
                d.window_start = now;
                d.window_min = i64::MAX;
            }
            d.window_min = d.window_min.min(transit);
        }
        self.drift_ref = Some(d);
    }

    /// Play time buffered ahead of the play position, in microseconds:
    /// each buffered datagram at its own format, each hole as long as
    /// the datagrams being played. O(SLOTS).
    fn depth_us(&self) -> u64 {
        if self.ssrc.is_none() || self.max_seq < self.read_seq {
            return 0;
        }
        let hole = self.format.map_or(0, |f| {
            u64::from(self.frames_per_packet) * 1_000_000 / u64::from(f.sample_rate())
        });
        let mut us = 0u64;
        for seq in self.read_seq..=self.max_seq {
            let slot = &self.slots[Self::slot_index(seq)];
            if slot.valid && slot.seq == seq {
                let mut bytes = usize::from(slot.len);
                if seq == self.read_seq && self.conceal_left == 0 {
                    bytes = bytes.saturating_sub(self.read_off);
                }
                let frames = (bytes / slot.format.frame_bytes()) as u64;
                us += frames * 1_000_000 / u64::from(slot.format.sample_rate());
            } else {
                us += hole;
            }
        }
        us
    }

    /// [`Self::depth_us`] in frames of the format being played.
    fn depth_frames(&self) -> u64 {
        self.format.map_or(0, |f| {
            self.depth_us() * u64::from(f.sample_rate()) / 1_000_000
        })
    }

    /// Pull up to `max_frames` frames for the device at `now` into `out`
    /// (at most as many as fit). Returns how many, their format and kind; a
    /// batch never mixes formats or kinds.
    pub fn pull(&mut self, now: Instant, max_frames: usize, out: &mut [u8]) -> Pulled {
        if !self.playing {
            match self.buffering_since {
                Some(since) if now.saturating_duration_since(since) >= self.config.target => {
                    self.playing = true;
                    self.buffering_since = None;
                    // Start exactly at the target: nothing to correct yet.
                    self.depth_ema = 0;
                }
                _ => {
                    return Pulled {
                        frames: 0,
                        format: self.format,
                        kind: FrameKind::Silence,
                    };
                }
            }
        }
        let mut written = 0usize;
        let mut kind: Option<FrameKind> = None;
        while written < max_frames {
            let slot_i = Self::slot_index(self.read_seq);
            let slot = &self.slots[slot_i];
            let have = slot.valid && slot.seq == self.read_seq && self.conceal_left == 0;
            let this_kind = if have {
                FrameKind::Played
            } else if self.conceal_left > 0 || self.max_seq > self.read_seq {
                FrameKind::Concealed
            } else {
                FrameKind::Underrun
            };
            if kind.is_some_and(|k| k != this_kind) {
                break;
            }
            // The format of what comes next.
            let fmt = if have {
                slot.format
            } else {
                self.format.unwrap_or(slot.format)
            };
            if self.format != Some(fmt) {
                if written > 0 {
                    break;
                }
                self.format = Some(fmt);
                self.last_frame = [0; MAX_FRAME_BYTES];
                self.fade_out_pos = u32::MAX;
                self.depth_ema = 0;
            }
            let fb = fmt.frame_bytes();
            let Some(dst) = out.get_mut(written * fb..(written + 1) * fb) else {
                break;
            };
            kind = Some(this_kind);
            match this_kind {
                FrameKind::Played => {
                    self.underrun_since = None;
                    if self.fade_out_pos > 0 && self.fade_out_pos != u32::MAX {
                        // Coming back from concealment: fade in. (After a
                        // format change nothing was concealed: no fade.)
                        self.fade_in_left = u32::from(self.config.fade_frames);
                    }
                    self.fade_out_pos = 0;
                    let slot = &self.slots[slot_i];
                    self.frames_per_packet = u32::from(slot.len) / fb as u32;
                    let src = &slot.data[self.read_off..self.read_off + fb];
                    self.last_frame[..fb].copy_from_slice(src);
                    if self.fade_in_left > 0 {
                        let fade = u32::from(self.config.fade_frames);
                        let gain = ((fade - self.fade_in_left) << 16) / fade;
                        scale_frame(src, dst, &fmt, gain);
                        self.fade_in_left -= 1;
                    } else {
                        dst.copy_from_slice(src);
                    }
                    self.stats.played_frames += 1;
                    written += 1;
                    let next_in_slot = self.read_off + 2 * fb <= usize::from(slot.len);
                    match self.correction(next_in_slot) {
                        Correction::Drop => {
                            // Skip the next frame (if this datagram has one).
                            self.stats.dropped_frames += 1;
                            self.advance(fb, 2);
                        }
                        Correction::Repeat => {
                            // Play this frame again: do not advance.
                            self.stats.repeated_frames += 1;
                        }
                        Correction::None => self.advance(fb, 1),
                    }
                }
                FrameKind::Concealed | FrameKind::Underrun => {
                    if this_kind == FrameKind::Concealed && self.conceal_left == 0 {
                        // The datagram at read_seq is missing and a later one
                        // is here: conceal its length, then move on.
                        self.conceal_left = self.frames_per_packet.max(1);
                        self.read_seq += 1;
                        self.read_off = 0;
                    }
                    if this_kind == FrameKind::Underrun {
                        let since = *self.underrun_since.get_or_insert(now);
                        if now.saturating_duration_since(since) >= self.config.target
                            && written == 0
                        {
                            // Dry for a whole target: the stream stopped.
                            self.playing = false;
                            self.underrun_since = None;
                            return Pulled {
                                frames: 0,
                                format: self.format,
                                kind: FrameKind::Silence,
                            };
                        }
                    }
                    let fade = u32::from(self.config.fade_frames).max(1);
                    let pos = if self.fade_out_pos == u32::MAX {
                        fade
                    } else {
                        self.fade_out_pos.min(fade)
                    };
                    let gain = ((fade - pos) << 16) / fade;
                    scale_frame(&self.last_frame[..fb], dst, &fmt, gain);
                    if self.fade_out_pos != u32::MAX {
                        self.fade_out_pos = (self.fade_out_pos + 1).min(fade);
                    }
                    if this_kind == FrameKind::Concealed {
                        self.stats.concealed_frames += 1;
                        self.conceal_left -= 1;
                    } else {
                        self.stats.underrun_frames += 1;
                    }
                    written += 1;
                }
                FrameKind::Silence => break,
            }
        }
        Pulled {
            frames: written,
            format: self.format,
            kind: kind.unwrap_or(FrameKind::Underrun),
        }
    }

    /// Move the read position on by `frames` frames within the current
    /// datagram (freeing it at its end).
    fn advance(&mut self, fb: usize, frames: usize) {
        let i = Self::slot_index(self.read_seq);
        self.read_off += fb * frames;
        if self.read_off >= usize::from(self.slots[i].len) {
            self.slots[i].valid = false;
            self.read_seq += 1;
            self.read_off = 0;
        }
    }

    /// Whether to drop or repeat a frame now. `can_drop`: the next frame
    /// is in the same datagram (a drop never crosses a datagram).
    fn correction(&mut self, can_drop: bool) -> Correction {
        self.frames_since_correction += 1;
        // Smoothed depth in µs (Q8), sampled every 32 frames; time
        // constant 2048 samples (65536 frames, 1.4 s at 48 kHz): clock
        // drift is slow, while bursts, jitter and the drain at the end of
        // a stream are short and must not trigger corrections.
        if self.frames_since_correction.is_multiple_of(32) {
            let depth = (self.depth_us() as i64) << 8;
            if self.depth_ema == 0 {
                self.depth_ema = depth;
            }
            self.depth_ema += (depth - self.depth_ema) >> 11;
        }
        if self.config.max_correction_ppm == 0 {
            return Correction::None;
        }
        let min_gap = 1_000_000 / u64::from(self.config.max_correction_ppm);
        if self.frames_since_correction < min_gap {
            return Correction::None;
        }
        let target = self.config.target.total_micros() as i64;
        let hyst = self.config.hysteresis.total_micros() as i64;
        let ema = self.depth_ema >> 8;
        if ema > target + hyst && can_drop {
            self.frames_since_correction = 0;
            Correction::Drop
        } else if ema < target - hyst && ema > 0 {
            self.frames_since_correction = 0;
            Correction::Repeat
        } else {
            Correction::None
        }
    }
}

enum Correction {
    None,
    Drop,
    Repeat,
}

/// `dst = src * gain` for one frame, `gain` in Q16 (65536 = unity).
fn scale_frame(src: &[u8], dst: &mut [u8], fmt: &ScreamFormat, gain: u32) {
    let w = fmt.sample_bytes();
    for (s, d) in src.chunks_exact(w).zip(dst.chunks_exact_mut(w)) {
        let v: i64 = match w {
            2 => i64::from(i16::from_le_bytes([s[0], s[1]])),
            3 => i64::from(i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8),
            _ => i64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])),
        };
        let v = (v * i64::from(gain)) >> 16;
        let b = (v as i32).to_le_bytes();
        match w {
            2 => d.copy_from_slice(&b[..2]),
            3 => d.copy_from_slice(&b[..3]),
            _ => d.copy_from_slice(&b),
        }
    }
}

#[cfg(feature = "conformance")]
pub(crate) fn conformance(report: &mut crate::conformance::Report) {
    // Three 48-frame datagrams, the middle one lost: played, 48 frames
    // concealed, played; one lost by the sequence numbers.
    let mut p: Playout<4, 192> = Playout::new(Config::default());
    let mut d = [0u8; 12 + 192];
    for seq in [0u16, 2] {
        rtp::Header {
            marker: seq == 0,
            payload_type: 102,
            sequence: seq,
            timestamp: u32::from(seq) * 48,
            ssrc: 7,
        }
        .emit(&mut d)
        .ok();
        p.handle_packet(Instant::from_millis(u64::from(seq)), &d);
    }
    let mut out = [0u8; 48 * 4];
    let t = Instant::from_millis(60);
    let a = p.pull(t, 48, &mut out);
    let b = p.pull(t, 48, &mut out);
    let c = p.pull(t, 48, &mut out);
    report.check(
        "playout conceal one lost",
        (
            a.kind,
            b.kind,
            c.kind,
            p.stats().lost,
            p.stats().concealed_frames,
        ) == (
            FrameKind::Played,
            FrameKind::Concealed,
            FrameKind::Played,
            1,
            48,
        ),
    );
}

#[cfg(test)]
mod tests;
