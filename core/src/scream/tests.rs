use super::*;
use proptest::prelude::*;

/// A 48 kHz/16-bit stereo driver datagram: header then 1152 bytes.
fn driver_datagram(fill: u8) -> [u8; DATAGRAM_LEN] {
    let mut d = [fill; DATAGRAM_LEN];
    d[..5].copy_from_slice(&[0x01, 0x10, 0x02, 0x03, 0x00]);
    d
}

#[test]
fn header_bytes_decode_as_the_scream_sources_define() {
    let f = ScreamFormat::from_header([0x01, 16, 2, 0x03, 0x00]).unwrap();
    assert_eq!(f.sample_rate(), 48_000);
    assert_eq!(f.bits(), 16);
    assert_eq!(f.channels(), 2);
    assert_eq!(f.channel_mask(), 0x0003);
    assert_eq!(f.frame_bytes(), 4);
    assert_eq!(f.frames_per_datagram(), Some(288));
    assert_eq!(f.duration_of(288), Duration::from_micros(6_000));

    // Bit 7: 44.1 kHz base; multiplier 2 -> 88.2 kHz. Mask is little-endian.
    let f = ScreamFormat::from_header([0x82, 24, 6, 0x0F, 0x06]).unwrap();
    assert_eq!(f.sample_rate(), 88_200);
    assert_eq!(f.channel_mask(), 0x060F);
    assert_eq!(f.frames_per_datagram(), Some(64));
    let f = ScreamFormat::from_header([0x81, 24, 6, 0x0F, 0x06]).unwrap();
    assert_eq!(f.sample_rate(), 44_100);
    let f = ScreamFormat::from_header([0x02, 32, 2, 0x03, 0x00]).unwrap();
    assert_eq!(
        (f.sample_rate(), f.frames_per_datagram()),
        (96_000, Some(144))
    );
    // 5 channels of 24 bits do not divide 1152.
    let f = ScreamFormat::from_header([0x01, 24, 5, 0x37, 0x00]).unwrap();
    assert_eq!(f.frames_per_datagram(), None);
}

#[test]
fn bad_headers_are_rejected() {
    assert_eq!(
        ScreamFormat::from_header([0x80, 16, 2, 3, 0]),
        Err(Error::BadRate)
    );
    assert_eq!(
        ScreamFormat::from_header([0x00, 16, 2, 3, 0]),
        Err(Error::BadRate)
    );
    assert_eq!(
        ScreamFormat::from_header([0x01, 8, 2, 3, 0]),
        Err(Error::BadWidth)
    );
    assert_eq!(
        ScreamFormat::from_header([0x01, 16, 0, 3, 0]),
        Err(Error::BadChannels)
    );
    assert_eq!(
        ScreamFormat::from_header([0x01, 16, 9, 3, 0]),
        Err(Error::BadChannels)
    );
    assert_eq!(
        ScreamPacket::new_checked(&[1u8, 16, 2][..]).err(),
        Some(Error::Truncated)
    );
    assert_eq!(
        ScreamPacket::new_checked(&[1u8, 16, 2, 3, 0][..]).err(),
        Some(Error::PartialFrame)
    );
    assert_eq!(
        ScreamPacket::new_checked(&[1u8, 16, 2, 3, 0, 1, 2, 3][..]).err(),
        Some(Error::PartialFrame)
    );
}

#[test]
fn new_encodes_rates_both_ways() {
    for (rate, byte) in [
        (48_000, 0x01),
        (96_000, 0x02),
        (44_100, 0x81),
        (88_200, 0x82),
        (192_000, 0x04),
    ] {
        let f = ScreamFormat::new(rate, 16, 2, 3).unwrap();
        assert_eq!(f.rate_byte(), byte);
        assert_eq!(f.sample_rate(), rate);
    }
    assert_eq!(ScreamFormat::new(22_050, 16, 2, 3), Err(Error::BadRate));
    assert_eq!(ScreamFormat::new(0, 16, 2, 3), Err(Error::BadRate));
    assert_eq!(
        ScreamFormat::new(48_000 * 128, 16, 2, 3),
        Err(Error::BadRate)
    );
}

#[test]
fn payload_type_table() {
    let f = |r, b, c, m| ScreamFormat::new(r, b, c, m).unwrap();
    assert_eq!(payload_type_for(&f(44_100, 16, 2, 3)), (96, false));
    assert_eq!(payload_type_for(&f(44_100, 16, 6, 0x060F)), (97, false));
    assert_eq!(payload_type_for(&f(44_100, 24, 6, 0x060F)), (99, false));
    assert_eq!(payload_type_for(&f(48_000, 16, 2, 3)), (102, false));
    assert_eq!(payload_type_for(&f(48_000, 24, 2, 3)), (104, false));
    assert_eq!(payload_type_for(&f(48_000, 32, 2, 3)), (106, false));
    assert_eq!(payload_type_for(&f(96_000, 32, 6, 0x060F)), (119, false));
    // Outside the table: self-describing.
    assert_eq!(payload_type_for(&f(48_000, 16, 6, 0x003F)), (127, true));
    assert_eq!(payload_type_for(&f(48_000, 16, 1, 4)), (127, true));
    assert_eq!(payload_type_for(&f(192_000, 16, 2, 3)), (127, true));
    // Every table entry maps back to itself.
    for pt in 96..=119 {
        let f = format_for_payload_type(pt).unwrap();
        assert_eq!(payload_type_for(&f), (pt, false));
    }
    assert_eq!(format_for_payload_type(120), None);
    assert_eq!(format_for_payload_type(95), None);
    assert_eq!(format_for_payload_type(127), None);
}

#[test]
fn rtpmap_lines() {
    use std::string::ToString;
    let f = ScreamFormat::new(48_000, 16, 2, 3).unwrap();
    assert_eq!(Rtpmap(f).to_string(), "a=rtpmap:102 X-SCREAM/48000/2");
    let f = ScreamFormat::new(44_100, 24, 6, 0x060F).unwrap();
    assert_eq!(Rtpmap(f).to_string(), "a=rtpmap:99 X-SCREAM/44100/6");
    let f = ScreamFormat::new(48_000, 16, 8, 0x063F).unwrap();
    assert_eq!(Rtpmap(f).to_string(), "a=rtpmap:127 X-SCREAM/48000/8");
}

#[test]
fn rtp_header_vector() {
    // V=2, M=1, PT=102, seq 0x1234, ts 0x00000120, SSRC 0xDEADBEEF.
    let bytes = [
        0x80, 0xE6, 0x12, 0x34, 0x00, 0x00, 0x01, 0x20, 0xDE, 0xAD, 0xBE, 0xEF,
    ];
    let h = rtp::Header {
        marker: true,
        payload_type: 102,
        sequence: 0x1234,
        timestamp: 0x120,
        ssrc: 0xDEAD_BEEF,
    };
    let mut out = [0u8; 12];
    assert_eq!(h.emit(&mut out), Ok(12));
    assert_eq!(out, bytes);
    assert_eq!(rtp::Header::parse(&bytes), Ok((h, &[][..])));
    assert_eq!(
        h.emit(&mut [0u8; 11]),
        Err(rtp::Error::InsufficientSize { required: 12 })
    );
}

#[test]
fn rtp_parse_skips_csrc_extension_and_padding() {
    // CC=1, X=1, P=1: fixed + 1 CSRC + ext header (1 word) + payload 2 + pad 2.
    let mut b = [0u8; 12 + 4 + 4 + 4 + 2 + 2];
    b[0] = 0x80 | 0x20 | 0x10 | 0x01;
    b[1] = 102;
    b[16..18].copy_from_slice(&[0xBE, 0xDE]);
    b[18..20].copy_from_slice(&1u16.to_be_bytes());
    b[24] = 0xAA;
    b[25] = 0xBB;
    b[27] = 2;
    let (_, payload) = rtp::Header::parse(&b).unwrap();
    assert_eq!(payload, &[0xAA, 0xBB]);
    b[0] = 0x40;
    assert_eq!(rtp::Header::parse(&b), Err(rtp::Error::BadVersion));
    assert_eq!(rtp::Header::parse(&b[..11]), Err(rtp::Error::Truncated));
}

#[test]
fn packetizer_counts_and_marks() {
    let mut p = Packetizer::new(0x5C5C_0001, 65_535, 1000, Duration::from_millis(20));
    let d = driver_datagram(0);
    let mut out = [0u8; MAX_PREFIX_LEN];
    let t0 = Instant::from_secs(1);
    let a = p.packetize(t0, &d, &mut out).unwrap();
    assert_eq!(
        (a.header.marker, a.header.sequence, a.header.timestamp),
        (true, 65_535, 1000)
    );
    assert_eq!(a.prefix_len, 12);
    assert_eq!(a.header.payload_type, 102);
    assert_eq!(rtp::Header::parse(&out[..12]).unwrap().0, a.header);
    // Paced exactly: no marker, +288 frames, sequence wraps.
    let b = p
        .packetize(t0 + Duration::from_millis(6), &d, &mut out)
        .unwrap();
    assert_eq!(
        (b.header.marker, b.header.sequence, b.header.timestamp),
        (false, 0, 1288)
    );
    // A little late (jitter below the gap): still continuous.
    let c = p
        .packetize(t0 + Duration::from_millis(25), &d, &mut out)
        .unwrap();
    assert_eq!((c.header.marker, c.header.timestamp), (false, 1576));
    // One second of silence: marker, timestamp advances by the silence.
    let t = t0 + Duration::from_millis(25 + 6 + 1000);
    let e = p.packetize(t, &d, &mut out).unwrap();
    assert!(e.header.marker);
    assert_eq!(e.header.sequence, 2);
    assert_eq!(e.header.timestamp, 1576 + 288 + 48_000);
    // Format change: marker, self-describing prefix for a table miss.
    let mut odd = [0u8; 5 + 1152];
    odd[..5].copy_from_slice(&[0x01, 16, 6, 0x3F, 0x00]);
    let f = p
        .packetize(t + Duration::from_millis(6), &odd, &mut out)
        .unwrap();
    assert!(f.header.marker && f.format_changed);
    assert_eq!((f.header.payload_type, f.prefix_len), (127, 17));
    assert_eq!(&out[12..17], &[0x01, 16, 6, 0x3F, 0x00]);
    let (h, payload) = rtp::Header::parse(&out[..17]).unwrap();
    assert_eq!(h, f.header);
    assert_eq!(payload, &[0x01, 16, 6, 0x3F, 0x00]);
    // A bad datagram leaves the state alone.
    assert!(p.packetize(t, &[1, 2, 3], &mut out).is_err());
    let g = p
        .packetize(t + Duration::from_millis(12), &odd, &mut out)
        .unwrap();
    assert_eq!(g.header.sequence, 4);
}

#[test]
fn split_payload_both_kinds() {
    let pcm = [7u8; 1152];
    let (f, p) = split_payload(102, &pcm).unwrap();
    assert_eq!((f, p.len()), (ScreamFormat::STEREO_48K_16, 1152));
    let mut inline = [0u8; 5 + 12];
    inline[..5].copy_from_slice(&[0x01, 16, 6, 0x3F, 0x00]);
    let (f, p) = split_payload(127, &inline).unwrap();
    assert_eq!((f.channels(), p.len()), (6, 12));
    assert_eq!(split_payload(102, &pcm[..3]), Err(Error::PartialFrame));
    assert_eq!(split_payload(50, &pcm).err(), Some(Error::BadRate));
}

proptest! {
    #[test]
    fn rtp_round_trip(marker: bool, pt in 0u8..128, sequence: u16, timestamp: u32, ssrc: u32,
                      payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let h = rtp::Header { marker, payload_type: pt, sequence, timestamp, ssrc };
        let mut buf = std::vec![0u8; 12 + payload.len()];
        h.emit(&mut buf).unwrap();
        buf[12..].copy_from_slice(&payload);
        prop_assert_eq!(rtp::Header::parse(&buf), Ok((h, &payload[..])));
    }

    #[test]
    fn scream_header_round_trip(rate in 1u8..=255, bits in prop::sample::select(&[16u8, 24, 32][..]),
                                channels in 1u8..=8, mask: u16) {
        prop_assume!(rate & 0x7f != 0);
        let f = ScreamFormat::from_header([rate, bits, channels, mask as u8, (mask >> 8) as u8]).unwrap();
        prop_assert_eq!(ScreamFormat::from_header(f.to_header()), Ok(f));
        prop_assert_eq!(ScreamFormat::new(f.sample_rate(), bits, channels, mask).map(|g| g.sample_rate()),
                        Ok(f.sample_rate()));
        let (pt, inline) = payload_type_for(&f);
        if !inline {
            prop_assert_eq!(format_for_payload_type(pt), Some(f));
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..1300), pt: u8) {
        let _ = rtp::Header::parse(&b);
        if let Ok(p) = ScreamPacket::new_checked(&b[..]) {
            prop_assert_eq!(p.pcm().len(), p.frames() as usize * p.format().frame_bytes());
        }
        let _ = split_payload(pt, &b);
        let mut pk = Packetizer::new(1, 0, 0, Duration::from_millis(20));
        let mut out = [0u8; MAX_PREFIX_LEN];
        let _ = pk.packetize(Instant::ZERO, &b, &mut out);
    }
}

/// A 5-channel 16-bit stream as the driver sends it (1152 bytes a
/// datagram, frames straddling datagrams) comes out of the reframer as
/// whole frames, byte for byte the stream that went in, minus the partial
/// frame still held at the end.
#[test]
fn the_reframer_joins_straddling_frames() {
    let f = ScreamFormat::new(48_000, 16, 5, 0x0037).unwrap();
    assert_eq!(f.frame_bytes(), 10);
    let stream: std::vec::Vec<u8> = (0..20 * PCM_PAYLOAD_LEN).map(|i| (i % 251) as u8).collect();
    let mut r = Reframer::new(Duration::from_millis(50));
    let mut out = std::vec::Vec::new();
    let mut joined = [0u8; MAX_RTP_PCM_LEN];
    let mut copied = 0;
    for (i, chunk) in stream.chunks(PCM_PAYLOAD_LEN).enumerate() {
        let mut d = std::vec::Vec::from(f.to_header());
        d.extend_from_slice(chunk);
        let now = Instant::from_millis(i as u64 * 2);
        let (format, pcm) = r.push(now, &d, &mut joined).unwrap().unwrap();
        assert_eq!(format, f);
        assert_eq!(pcm.len() % 10, 0);
        assert!(pcm.len() <= MAX_RTP_PCM_LEN);
        if pcm.as_ptr() != d[HEADER_LEN..].as_ptr() {
            copied += 1;
        }
        out.extend_from_slice(pcm);
    }
    // 20 x 1152 = 23,040 bytes = 2,304 whole frames: nothing held at the end.
    assert_eq!(out, stream);
    assert!(copied > 0);
    assert_eq!(r.dropped_bytes(), 0);
}

/// Whole-frame datagrams pass through without a copy; a format change or
/// a pause drops what was held.
#[test]
fn the_reframer_passes_whole_frames_and_drops_partials_at_a_change() {
    let five = ScreamFormat::new(48_000, 16, 5, 0x0037).unwrap();
    let mut r = Reframer::new(Duration::from_millis(50));
    let mut joined = [0u8; MAX_RTP_PCM_LEN];
    let d = driver_datagram(7);
    let (format, pcm) = r.push(Instant::ZERO, &d, &mut joined).unwrap().unwrap();
    assert_eq!(format, ScreamFormat::STEREO_48K_16);
    assert_eq!(pcm.as_ptr(), d[HEADER_LEN..].as_ptr());
    let mut d5 = std::vec::Vec::from(five.to_header());
    d5.extend_from_slice(&[1; PCM_PAYLOAD_LEN]);
    let (_, pcm) = r
        .push(Instant::from_millis(2), &d5, &mut joined)
        .unwrap()
        .unwrap();
    assert_eq!(pcm.len(), 1150); // 2 bytes held
    // A pause longer than the gap: the 2 bytes are dropped.
    let (_, pcm) = r
        .push(Instant::from_millis(200), &d5, &mut joined)
        .unwrap()
        .unwrap();
    assert_eq!(pcm.len(), 1150);
    assert_eq!(r.dropped_bytes(), 2);
    // A format change: the 2 held now are dropped too.
    r.push(Instant::from_millis(202), &d, &mut joined).unwrap();
    assert_eq!(r.dropped_bytes(), 4);
    // Shorter than a frame: held, nothing to send yet.
    let mut tiny = std::vec::Vec::from(five.to_header());
    tiny.extend_from_slice(&[2; 4]);
    assert_eq!(
        r.push(Instant::from_millis(204), &tiny, &mut joined),
        Ok(None)
    );
    assert!(
        r.push(Instant::from_millis(206), &five.to_header(), &mut joined)
            .is_err()
    );
}

proptest! {
    /// Any chunking of a stream of any valid format comes out as whole
    /// frames that concatenate to the stream (up to the held remainder).
    #[test]
    fn reframed_chunks_concatenate_to_the_stream(
        channels in 1u8..=8,
        bits in prop::sample::select(std::vec![16u8, 24, 32]),
        sizes in prop::collection::vec(1usize..=PCM_PAYLOAD_LEN, 1..40),
    ) {
        let f = ScreamFormat::new(48_000, bits, channels, 0).unwrap();
        let total: usize = sizes.iter().sum();
        let stream: std::vec::Vec<u8> = (0..total).map(|i| (i * 7 % 256) as u8).collect();
        let mut r = Reframer::new(Duration::from_secs(1));
        let mut joined = [0u8; MAX_RTP_PCM_LEN];
        let mut out = std::vec::Vec::new();
        let mut at = 0;
        for (i, n) in sizes.iter().enumerate() {
            let mut d = std::vec::Vec::from(f.to_header());
            d.extend_from_slice(&stream[at..at + n]);
            at += n;
            if let Some((_, pcm)) = r.push(Instant::from_millis(i as u64), &d, &mut joined).unwrap() {
                prop_assert_eq!(pcm.len() % f.frame_bytes(), 0);
                out.extend_from_slice(pcm);
            }
        }
        let whole = total / f.frame_bytes() * f.frame_bytes();
        prop_assert_eq!(&out[..], &stream[..whole]);
    }
}
