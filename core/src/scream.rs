//! Scream audio on the wire, and the RTP framing the router adds for the ICE
//! path.
//!
//! A Scream sender (the Windows driver, ScreamRouter's sinks) sends each
//! sink as plain UDP, by default to `239.255.77.77:4010`. Every datagram is
//! a 5-byte [`ScreamFormat`] header followed by interleaved, signed,
//! little-endian PCM; the driver always sends [`PCM_PAYLOAD_LEN`] = 1152
//! bytes of it. Scream carries no sequence number and no timestamp, and a
//! stream simply stops when the source falls silent.
//!
//! The router ingests that, and sends each datagram to every subscribed
//! speaker as RTP (RFC 3550, [`rtp`]), so that loss, reordering and gaps
//! become visible at the speaker and any RTP tool can read a capture:
//!
//! - **SSRC**: one per sink, chosen by the router.
//! - **Sequence number**: +1 per datagram of the sink.
//! - **Timestamp**: in sample frames of the current format (the RTP clock
//!   rate is the stream's sample rate); after a gap in the ingest (the
//!   source went silent) it advances by the silent time, and the first
//!   datagram after the gap carries the **marker** bit (RFC 3551 §4.1
//!   "first packet after a silence period"). The first datagram a
//!   subscriber receives carries the marker too.
//! - **Payload type**: the Scream format, mapped by [`payload_type_for`]
//!   (table below). The payload is the Scream PCM, unchanged
//!   (little-endian, *not* the big-endian RFC 3551 `L16`), so the router
//!   never touches a sample.
//!
//! | PT | rate | bits | layout (channels, mask) |
//! |----|------|------|-------------------------|
//! | 96 + 6·r + 2·b + l | r: 0 = 44.1 kHz, 1 = 48 kHz, 2 = 88.2 kHz, 3 = 96 kHz | b: 0 = 16, 1 = 24, 2 = 32 | l: 0 = stereo (2, `0x0003`), 1 = 5.1 (6, `0x060F`) |
//! | 127 ([`PT_SELF_DESCRIBING`]) | any | any | any: the RTP payload starts with the 5-byte Scream header |
//!
//! So PT 97 is 44.1 kHz/16-bit 5.1, PT 102 is 48 kHz/16-bit stereo, PT 104
//! is 48 kHz/24-bit stereo and PT 127 covers every other format exactly.
//! In SDP terms the router announces e.g. `a=rtpmap:102 X-SCREAM/48000/2`
//! ([`Rtpmap`]).
//!
//! Everything here is `no_std`, allocation-free and never panics on any
//! input; views borrow the caller's bytes and writers fill the caller's
//! buffers.

use core::fmt;

use crate::time::{Duration, Instant};

/// The Scream header length: rate, bits, channels, channel mask (LE).
pub const HEADER_LEN: usize = 5;
/// The PCM bytes the Scream driver puts in every datagram.
pub const PCM_PAYLOAD_LEN: usize = 1152;
/// A full driver datagram: header plus payload (1157 bytes).
pub const DATAGRAM_LEN: usize = HEADER_LEN + PCM_PAYLOAD_LEN;
/// The Scream default UDP port.
pub const DEFAULT_PORT: u16 = 4010;
/// The Scream default multicast group.
pub const DEFAULT_MULTICAST_GROUP: core::net::Ipv4Addr = core::net::Ipv4Addr::new(239, 255, 77, 77);
/// The most bytes one frame can have: 8 channels of 32 bits.
pub const MAX_FRAME_BYTES: usize = 32;
/// The payload type whose payload carries the 5-byte Scream header first,
/// for formats outside the fixed table.
pub const PT_SELF_DESCRIBING: u8 = 127;

/// Why bytes are not a usable Scream datagram or format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// Fewer bytes than the 5-byte header.
    Truncated,
    /// The rate byte names no rate (multiplier 0).
    BadRate,
    /// Bits per sample other than 16, 24 or 32.
    BadWidth,
    /// Zero channels, or more than 8.
    BadChannels,
    /// The PCM is not a whole number of frames (or is empty).
    PartialFrame,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "shorter than the 5-byte Scream header",
            Error::BadRate => "Scream rate is not 1 to 127 times 44.1 or 48 kHz",
            Error::BadWidth => "Scream bits per sample is not 16, 24 or 32",
            Error::BadChannels => "Scream channel count is not 1..=8",
            Error::PartialFrame => "Scream PCM is empty or not a whole number of frames",
        })
    }
}

impl core::error::Error for Error {}

/// A stream's format, exactly as the 5 Scream header bytes carry it.
///
/// Byte 0 is the rate: bit 7 set selects a 44.1 kHz base, clear a 48 kHz
/// base; bits 0-6 multiply it. Byte 1 is bits per sample, byte 2 the
/// channel count, bytes 3-4 the WAVEFORMATEXTENSIBLE channel mask,
/// little-endian.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ScreamFormat {
    rate: u8,
    bits: u8,
    channels: u8,
    mask: u16,
}

impl ScreamFormat {
    /// 48 kHz, 16-bit stereo: the most common Scream stream.
    pub const STEREO_48K_16: ScreamFormat = ScreamFormat {
        rate: 1,
        bits: 16,
        channels: 2,
        mask: 0x0003,
    };

    /// A format from the five header bytes, checked.
    pub fn from_header(h: [u8; HEADER_LEN]) -> Result<Self, Error> {
        let f = ScreamFormat {
            rate: h[0],
            bits: h[1],
            channels: h[2],
            mask: u16::from_le_bytes([h[3], h[4]]),
        };
        f.check()?;
        Ok(f)
    }

    /// A format from a sample rate (a multiple of 44 100 or 48 000 Hz, at
    /// most 127 times), bits and channels, with `mask`.
    pub fn new(sample_rate: u32, bits: u8, channels: u8, mask: u16) -> Result<Self, Error> {
        let (base, flag) = if sample_rate.is_multiple_of(48_000) {
            (48_000, 0)
        } else if sample_rate.is_multiple_of(44_100) {
            (44_100, 0x80)
        } else {
            return Err(Error::BadRate);
        };
        let m = sample_rate / base;
        if m == 0 || m > 0x7f {
            return Err(Error::BadRate);
        }
        let rate = flag | m;
        let f = ScreamFormat {
            rate: rate as u8,
            bits,
            channels,
            mask,
        };
        f.check()?;
        Ok(f)
    }

    fn check(&self) -> Result<(), Error> {
        if self.rate & 0x7f == 0 {
            return Err(Error::BadRate);
        }
        if !matches!(self.bits, 16 | 24 | 32) {
            return Err(Error::BadWidth);
        }
        if !(1..=8).contains(&self.channels) {
            return Err(Error::BadChannels);
        }
        Ok(())
    }

    /// The five header bytes.
    pub fn to_header(&self) -> [u8; HEADER_LEN] {
        let m = self.mask.to_le_bytes();
        [self.rate, self.bits, self.channels, m[0], m[1]]
    }

    /// The raw rate byte.
    pub fn rate_byte(&self) -> u8 {
        self.rate
    }

    /// Frames per second.
    pub fn sample_rate(&self) -> u32 {
        let base = if self.rate & 0x80 != 0 {
            44_100
        } else {
            48_000
        };
        base * u32::from(self.rate & 0x7f)
    }

    /// Bits per sample (16, 24 or 32).
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// Bytes per sample (2, 3 or 4).
    pub fn sample_bytes(&self) -> usize {
        usize::from(self.bits / 8)
    }

    /// Channels (1..=8).
    pub fn channels(&self) -> u8 {
        self.channels
    }

    /// The channel mask.
    pub fn channel_mask(&self) -> u16 {
        self.mask
    }

    /// Bytes per frame (one sample of every channel), at most
    /// [`MAX_FRAME_BYTES`].
    pub fn frame_bytes(&self) -> usize {
        self.sample_bytes() * usize::from(self.channels)
    }

    /// Whole frames in `pcm_len` bytes, or `PartialFrame` when `pcm_len` is
    /// zero or not a multiple of the frame size.
    pub fn frames_in(&self, pcm_len: usize) -> Result<u32, Error> {
        let fb = self.frame_bytes();
        if pcm_len == 0 || !pcm_len.is_multiple_of(fb) {
            return Err(Error::PartialFrame);
        }
        u32::try_from(pcm_len / fb).map_err(|_| Error::PartialFrame)
    }

    /// Frames in one 1152-byte driver datagram, when that is a whole number
    /// (every channel count but 5 and 7): 288 for 48 kHz/16-bit stereo.
    pub fn frames_per_datagram(&self) -> Option<u32> {
        self.frames_in(PCM_PAYLOAD_LEN).ok()
    }

    /// The play time of `frames` frames.
    pub fn duration_of(&self, frames: u32) -> Duration {
        Duration::from_micros(u64::from(frames) * 1_000_000 / u64::from(self.sample_rate()))
    }

    /// Frames played in `d` (rounded down).
    pub fn frames_in_duration(&self, d: Duration) -> u64 {
        d.total_micros()
            .saturating_mul(u64::from(self.sample_rate()))
            / 1_000_000
    }
}

/// A datagram's format (header checked) and its PCM, of any length.
fn split_datagram(b: &[u8]) -> Result<(ScreamFormat, &[u8]), Error> {
    let h: [u8; HEADER_LEN] = b
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(Error::Truncated)?;
    Ok((ScreamFormat::from_header(h)?, &b[HEADER_LEN..]))
}

/// A zero-copy view of one Scream datagram.
///
/// After [`ScreamPacket::new_checked`] every accessor is infallible: the
/// header is valid and the PCM is a non-empty whole number of frames.
#[derive(Clone, Copy, Debug)]
pub struct ScreamPacket<T: AsRef<[u8]>> {
    buffer: T,
    format: ScreamFormat,
}

impl<T: AsRef<[u8]>> ScreamPacket<T> {
    /// Check the header and that the PCM is whole frames.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let (format, pcm) = split_datagram(buffer.as_ref())?;
        format.frames_in(pcm.len())?;
        Ok(ScreamPacket { buffer, format })
    }

    /// The stream format this datagram announces.
    pub fn format(&self) -> ScreamFormat {
        self.format
    }

    /// The interleaved little-endian PCM.
    pub fn pcm(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Frames in this datagram.
    pub fn frames(&self) -> u32 {
        self.format.frames_in(self.pcm().len()).unwrap_or(0)
    }
}

/// Write one Scream datagram (header + `pcm`) into `out`; returns its
/// length, or `None` when `out` is too short.
pub fn emit(format: &ScreamFormat, pcm: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = HEADER_LEN + pcm.len();
    let dst = out.get_mut(..len)?;
    dst[..HEADER_LEN].copy_from_slice(&format.to_header());
    dst[HEADER_LEN..].copy_from_slice(pcm);
    Some(len)
}

/// The payload type that carries `format` (see the module table), and
/// whether the Scream header must precede the PCM in the payload (only for
/// [`PT_SELF_DESCRIBING`]).
pub fn payload_type_for(format: &ScreamFormat) -> (u8, bool) {
    let r = match format.sample_rate() {
        44_100 => 0,
        48_000 => 1,
        88_200 => 2,
        96_000 => 3,
        _ => return (PT_SELF_DESCRIBING, true),
    };
    let b = match format.bits() {
        16 => 0,
        24 => 1,
        _ => 2,
    };
    let l = match (format.channels(), format.channel_mask()) {
        (2, 0x0003) => 0,
        (6, 0x060F) => 1,
        _ => return (PT_SELF_DESCRIBING, true),
    };
    (96 + 6 * r + 2 * b + l, false)
}

/// The format a table payload type stands for (`None` for 127 and for
/// payload types outside 96..=119).
pub fn format_for_payload_type(pt: u8) -> Option<ScreamFormat> {
    let i = pt.checked_sub(96)?;
    if i >= 24 {
        return None;
    }
    let (r, b, l) = (i / 6, (i % 6) / 2, i % 2);
    let rate = [0x81, 0x01, 0x82, 0x02][usize::from(r)];
    let (channels, mask) = if l == 0 { (2, 0x0003) } else { (6, 0x060F) };
    Some(ScreamFormat {
        rate,
        bits: 16 + 8 * b,
        channels,
        mask,
    })
}

/// The SDP `a=rtpmap` line that announces `format` in a session
/// (RFC 8866 §6.6): `a=rtpmap:PT X-SCREAM/RATE/CHANNELS`; for the
/// self-describing PT 127 the rate and channels are those of `format` at
/// the time of the announcement. Written with `Display`, no allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rtpmap(pub ScreamFormat);

impl fmt::Display for Rtpmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pt, _) = payload_type_for(&self.0);
        write!(
            f,
            "a=rtpmap:{pt} X-SCREAM/{}/{}",
            self.0.sample_rate(),
            self.0.channels()
        )
    }
}

/// Split an RTP payload of type `pt` into its Scream format and PCM,
/// checking that the PCM is whole frames.
pub fn split_payload(pt: u8, payload: &[u8]) -> Result<(ScreamFormat, &[u8]), Error> {
    if pt == PT_SELF_DESCRIBING {
        let p = ScreamPacket::new_checked(payload)?;
        let f = p.format();
        return Ok((f, payload.get(HEADER_LEN..).unwrap_or(&[])));
    }
    let f = format_for_payload_type(pt).ok_or(Error::BadRate)?;
    f.frames_in(payload.len())?;
    Ok((f, payload))
}

pub mod rtp {
    //! The RTP fixed header (RFC 3550 §5.1): parse from and emit into
    //! caller buffers. Parsing accepts CSRCs, a header extension and
    //! padding (all skipped); emitting writes the 12-byte fixed header
    //! with no CSRC and no extension.

    use core::fmt;

    /// The fixed header length.
    pub const HEADER_LEN: usize = 12;

    /// Why bytes are not an RTP packet.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    #[non_exhaustive]
    pub enum Error {
        /// Shorter than its header (fixed, CSRCs, extension) or padding.
        Truncated,
        /// Version is not 2.
        BadVersion,
        /// The output buffer is shorter than the header.
        InsufficientSize {
            /// Bytes needed.
            required: usize,
        },
    }

    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Error::Truncated => f.write_str("RTP packet truncated"),
                Error::BadVersion => f.write_str("RTP version is not 2"),
                Error::InsufficientSize { required } => {
                    write!(f, "RTP header needs {required} bytes")
                }
            }
        }
    }

    impl core::error::Error for Error {}

    /// The RTP header fields the router sets.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[cfg_attr(feature = "defmt", derive(defmt::Format))]
    pub struct Header {
        /// M bit: first packet after silence, or first to this receiver.
        pub marker: bool,
        /// 7-bit payload type.
        pub payload_type: u8,
        /// Sequence number.
        pub sequence: u16,
        /// Timestamp in sample frames.
        pub timestamp: u32,
        /// Synchronization source.
        pub ssrc: u32,
    }

    impl Header {
        /// Parse a packet; returns the header and the payload (without
        /// CSRCs, extension and padding). Never panics.
        pub fn parse(b: &[u8]) -> Result<(Header, &[u8]), Error> {
            if b.len() < HEADER_LEN {
                return Err(Error::Truncated);
            }
            if b[0] >> 6 != 2 {
                return Err(Error::BadVersion);
            }
            let padding = b[0] & 0x20 != 0;
            let extension = b[0] & 0x10 != 0;
            let cc = usize::from(b[0] & 0x0f);
            let mut start = HEADER_LEN + 4 * cc;
            if extension {
                let words = b.get(start + 2..start + 4).ok_or(Error::Truncated)?;
                start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
            }
            let mut end = b.len();
            if padding {
                let pad = usize::from(*b.last().ok_or(Error::Truncated)?);
                if pad == 0 {
                    return Err(Error::Truncated);
                }
                end = end.checked_sub(pad).ok_or(Error::Truncated)?;
            }
            let payload = b.get(start..end).ok_or(Error::Truncated)?;
            let h = Header {
                marker: b[1] & 0x80 != 0,
                payload_type: b[1] & 0x7f,
                sequence: u16::from_be_bytes([b[2], b[3]]),
                timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            };
            Ok((h, payload))
        }

        /// Write the 12-byte fixed header into `out`; returns 12.
        pub fn emit(&self, out: &mut [u8]) -> Result<usize, Error> {
            let dst = out.get_mut(..HEADER_LEN).ok_or(Error::InsufficientSize {
                required: HEADER_LEN,
            })?;
            dst[0] = 0x80;
            dst[1] = (u8::from(self.marker) << 7) | (self.payload_type & 0x7f);
            dst[2..4].copy_from_slice(&self.sequence.to_be_bytes());
            dst[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
            dst[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
            Ok(HEADER_LEN)
        }
    }
}

/// The longest prefix [`Packetizer::packetize`] writes: the RTP header and,
/// for [`PT_SELF_DESCRIBING`], the Scream header.
pub const MAX_PREFIX_LEN: usize = rtp::HEADER_LEN + HEADER_LEN;

/// One sink's RTP state on the router: turns each ingested Scream datagram
/// into an RTP prefix; the PCM follows it unchanged (as a second iovec, or
/// copied by the caller).
#[derive(Clone, Debug)]
pub struct Packetizer {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    gap: Duration,
    last: Option<(Instant, ScreamFormat, u32)>,
}

/// What [`Packetizer::packetize`] produced for one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Packetized {
    /// The RTP header as written (marker as the sink sees it).
    pub header: rtp::Header,
    /// Bytes of prefix written (12, or 17 with the Scream header).
    pub prefix_len: usize,
    /// The stream format.
    pub format: ScreamFormat,
    /// Whether this datagram's format differs from the previous one's.
    pub format_changed: bool,
}

impl Packetizer {
    /// A packetizer for a sink with `ssrc`, first sequence number and
    /// timestamp (RFC 3550 asks for random initial values: pass them in).
    /// A pause in the ingest longer than `gap` is treated as silence.
    pub fn new(ssrc: u32, first_sequence: u16, first_timestamp: u32, gap: Duration) -> Self {
        Packetizer {
            ssrc,
            sequence: first_sequence,
            timestamp: first_timestamp,
            gap,
            last: None,
        }
    }

    /// The sink's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Frame one Scream datagram that arrived at `now`: writes the prefix
    /// into `out` and returns what it wrote; the caller sends
    /// `out[..prefix_len]` followed by the datagram's PCM. Sequence and
    /// timestamp advance only on success.
    pub fn packetize(
        &mut self,
        now: Instant,
        datagram: &[u8],
        out: &mut [u8; MAX_PREFIX_LEN],
    ) -> Result<Packetized, Error> {
        let p = ScreamPacket::new_checked(datagram)?;
        self.packetize_pcm(now, p.format(), p.pcm(), out)
    }

    /// As [`Packetizer::packetize`], for PCM already split from its header
    /// (whole frames of `format`, e.g. from a [`Reframer`]); the caller
    /// sends `out[..prefix_len]` followed by `pcm`.
    pub fn packetize_pcm(
        &mut self,
        now: Instant,
        format: ScreamFormat,
        pcm: &[u8],
        out: &mut [u8; MAX_PREFIX_LEN],
    ) -> Result<Packetized, Error> {
        let frames = format.frames_in(pcm.len())?;
        let (pt, inline) = payload_type_for(&format);
        let mut marker = false;
        let mut format_changed = false;
        let mut timestamp = self.timestamp;
        match self.last {
            None => marker = true,
            Some((at, last_format, last_frames)) => {
                timestamp = timestamp.wrapping_add(last_frames);
                let expected = at + last_format.duration_of(last_frames);
                let silent = now.saturating_duration_since(expected);
                if silent > self.gap {
                    marker = true;
                    // The silent time in frames of the new format, so the
                    // speaker sees the pause on the RTP clock.
                    timestamp = timestamp.wrapping_add(format.frames_in_duration(silent) as u32);
                }
                if last_format != format {
                    format_changed = true;
                    marker = true;
                }
            }
        }
        let header = rtp::Header {
            marker,
            payload_type: pt,
            sequence: if self.last.is_none() {
                self.sequence
            } else {
                self.sequence.wrapping_add(1)
            },
            timestamp,
            ssrc: self.ssrc,
        };
        let mut len = header.emit(out).map_err(|_| Error::Truncated)?;
        if inline {
            out[len..len + HEADER_LEN].copy_from_slice(&format.to_header());
            len += HEADER_LEN;
        }
        self.sequence = header.sequence;
        self.timestamp = timestamp;
        self.last = Some((now, format, frames));
        Ok(Packetized {
            header,
            prefix_len: len,
            format,
            format_changed,
        })
    }
}

/// The most PCM one RTP packet from a [`Reframer`] carries: a datagram's
/// 1152 bytes plus the partial frame carried from the one before.
pub const MAX_RTP_PCM_LEN: usize = PCM_PAYLOAD_LEN + MAX_FRAME_BYTES;

/// Joins a Scream stream into whole frames. The Scream driver sends 1152
/// PCM bytes per datagram whatever the format, so with 5 or 7 channels (10,
/// 14, 15, 20, 21 or 28 bytes a frame) a frame straddles two datagrams; RTP
/// packets carry whole frames (RFC 3551 section 4.3), so the bytes of a
/// partial frame are held (at most [`MAX_FRAME_BYTES`] - 1) and sent at the
/// front of the next packet. A datagram of whole frames with nothing held
/// passes through without a copy. What is held is dropped when the format
/// changes or the stream pauses longer than `gap` (a new stream starts on a
/// frame boundary).
#[derive(Clone, Debug)]
pub struct Reframer {
    held: [u8; MAX_FRAME_BYTES],
    held_len: usize,
    last: Option<(Instant, ScreamFormat)>,
    gap: Duration,
    dropped: u64,
}

impl Reframer {
    /// Nothing held; a pause longer than `gap` starts over.
    pub fn new(gap: Duration) -> Reframer {
        Reframer {
            held: [0; MAX_FRAME_BYTES],
            held_len: 0,
            last: None,
            gap,
            dropped: 0,
        }
    }

    /// Bytes of partial frames dropped so far (at a format change or a
    /// pause).
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped
    }

    /// One Scream datagram (header and PCM) that arrived at `now`: its
    /// format and the whole frames to send now, borrowed from `datagram`
    /// or joined into `joined`. `Ok(None)`: everything was held (a datagram
    /// shorter than a frame). Errors: the header is invalid, the PCM is
    /// empty or longer than `joined` can take with what is held.
    pub fn push<'a>(
        &mut self,
        now: Instant,
        datagram: &'a [u8],
        joined: &'a mut [u8],
    ) -> Result<Option<(ScreamFormat, &'a [u8])>, Error> {
        let (format, pcm) = split_datagram(datagram)?;
        if pcm.is_empty() {
            return Err(Error::PartialFrame);
        }
        let continues = self
            .last
            .is_some_and(|(at, f)| f == format && now.saturating_duration_since(at) <= self.gap);
        if !continues {
            self.dropped += self.held_len as u64;
            self.held_len = 0;
        }
        self.last = Some((now, format));
        let fb = format.frame_bytes();
        if self.held_len == 0 && pcm.len().is_multiple_of(fb) {
            return Ok(Some((format, pcm)));
        }
        let total = self.held_len + pcm.len();
        let buf = joined.get_mut(..total).ok_or(Error::Truncated)?;
        buf[..self.held_len].copy_from_slice(&self.held[..self.held_len]);
        buf[self.held_len..].copy_from_slice(pcm);
        let whole = total / fb * fb;
        let rest = total - whole;
        self.held[..rest].copy_from_slice(&buf[whole..]);
        self.held_len = rest;
        Ok((whole > 0).then_some((format, &joined[..whole])))
    }
}

#[cfg(feature = "conformance")]
pub(crate) fn conformance(report: &mut crate::conformance::Report) {
    let h = ScreamFormat::from_header([0x01, 16, 2, 0x03, 0x00]);
    report.check(
        "scream 48k/16/2",
        h.map(|f| (f.sample_rate(), f.frames_per_datagram())) == Ok((48_000, Some(288))),
    );
    let h = ScreamFormat::from_header([0x81, 24, 6, 0x0F, 0x06]);
    report.check(
        "scream 44.1k/24/5.1 pt",
        h.map(|f| payload_type_for(&f)) == Ok((99, false)),
    );
    let rtp = [
        0x80, 0xE6, 0x12, 0x34, 0, 0, 1, 0x20, 0xDE, 0xAD, 0xBE, 0xEF, 0xAA,
    ];
    report.check(
        "scream rtp parse",
        rtp::Header::parse(&rtp)
            .map(|(h, p)| (h.marker, h.payload_type, h.sequence, h.timestamp, p.len()))
            == Ok((true, 102, 0x1234, 0x120, 1)),
    );
}

#[cfg(test)]
mod tests;
