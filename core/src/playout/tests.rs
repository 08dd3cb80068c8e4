use super::*;
use proptest::prelude::*;
use std::vec::Vec;

const FPP: u32 = 288;

/// Datagram `seq` of a 48 kHz/16-bit stereo stream whose frame `i` is
/// (i, !i) as i16: every frame says where it came from.
fn datagram(seq: u32, marker: bool) -> Vec<u8> {
    let mut d = std::vec![0u8; 12 + 1152];
    rtp::Header {
        marker,
        payload_type: 102,
        sequence: seq as u16,
        timestamp: seq.wrapping_mul(FPP),
        ssrc: 0xABCD,
    }
    .emit(&mut d)
    .unwrap();
    for f in 0..FPP {
        let i = seq * FPP + f;
        let o = 12 + f as usize * 4;
        d[o..o + 2].copy_from_slice(&(i as i16).to_le_bytes());
        d[o + 2..o + 4].copy_from_slice(&(!(i as i16)).to_le_bytes());
    }
    d
}

fn frame_index(f: &[u8]) -> i16 {
    i16::from_le_bytes([f[0], f[1]])
}

/// A virtual-time run: the sender emits `packets` datagrams every
/// 6 ms scaled by its clock error (`sender_ppm`, positive = fast), each
/// delivered after `delay(seq)` (None = lost); the device pulls 48 frames
/// every millisecond. Returns the playout and every pulled batch's kind and
/// frames (only when `keep`).
struct Run {
    p: Playout<16, 1152>,
    out: Vec<(FrameKind, Vec<u8>)>,
    max_depth: u32,
    min_depth_playing: u32,
}

fn run(
    packets: u32,
    sender_ppm: i64,
    delay: impl Fn(u32) -> Option<u64>,
    keep: bool,
    config: Config,
) -> Run {
    let p: Playout<16, 1152> = Playout::new(config);
    let period_ns = 6_000_000i64 * (1_000_000 - sender_ppm) / 1_000_000;
    let mut arrivals: Vec<(u64, u32)> = (0..packets)
        .filter_map(|s| delay(s).map(|d| ((s as i64 * period_ns / 1000) as u64 + d, s)))
        .collect();
    arrivals.sort();
    let end = arrivals.last().map_or(0, |a| a.0) + 200_000;
    let mut next = 0;
    let mut r = Run {
        p,
        out: Vec::new(),
        max_depth: 0,
        min_depth_playing: u32::MAX,
    };
    let mut buf = [0u8; 48 * 4];
    let mut t = 0u64;
    while t <= end {
        while next < arrivals.len() && arrivals[next].0 <= t {
            let s = arrivals[next].1;
            r.p.handle_packet(Instant::from_micros(arrivals[next].0), &datagram(s, s == 0));
            next += 1;
        }
        let mut want = 48;
        while want > 0 {
            let got = r.p.pull(Instant::from_micros(t), want, &mut buf);
            if got.frames == 0 {
                break;
            }
            want -= got.frames;
            if keep {
                r.out.push((got.kind, buf[..got.frames * 4].to_vec()));
            }
        }
        if r.p.is_playing() && next < arrivals.len() {
            let d = r.p.stats().depth_frames;
            r.max_depth = r.max_depth.max(d);
            r.min_depth_playing = r.min_depth_playing.min(d);
        }
        t += 1000;
    }
    r
}

fn played_indices(out: &[(FrameKind, Vec<u8>)]) -> Vec<i16> {
    out.iter()
        .filter(|(k, _)| *k == FrameKind::Played)
        .flat_map(|(_, b)| b.chunks_exact(4).map(frame_index).collect::<Vec<_>>())
        .collect()
}

#[test]
fn in_order_stream_plays_bit_exact_after_the_target() {
    let r = run(200, 0, |_| Some(300), true, Config::default());
    let s = r.p.stats();
    assert_eq!(
        (s.received, s.lost, s.late, s.concealed_frames),
        (200, 0, 0, 0)
    );
    assert_eq!((s.dropped_frames, s.repeated_frames), (0, 0));
    let played = played_indices(&r.out);
    let expected: Vec<i16> = (0..200 * FPP).map(|i| i as i16).collect();
    assert_eq!(played, expected);
    // The first frame came out 40 ms after the first arrival (the first
    // pull at or after 40.3 ms is at 41 ms: 41 silent pulls before).
    assert_eq!(r.out.first().map(|o| o.0), Some(FrameKind::Played));
}

#[test]
fn loss_is_counted_exactly_and_concealed_continuously() {
    let lost: Vec<u32> = (5..500).step_by(37).collect();
    let r = run(
        500,
        0,
        |s| (!lost.contains(&s)).then_some(500),
        true,
        Config::default(),
    );
    let s = r.p.stats();
    assert_eq!(s.lost, lost.len() as u64);
    assert_eq!(s.received, 500 - lost.len() as u64);
    assert_eq!(s.late, 0);
    assert_eq!(s.concealed_frames, u64::from(FPP) * lost.len() as u64);
    // Every frame that was not lost played, in order.
    let played = played_indices(&r.out);
    let expected: Vec<i16> = (0..500u32)
        .filter(|s| !lost.contains(s))
        .flat_map(|s| (s * FPP..(s + 1) * FPP).map(|i| i as i16))
        .collect();
    // Fade-in frames are scaled, so compare only unscaled positions: the
    // first 48 frames after each gap are faded in.
    assert_eq!(played.len(), expected.len());
    let mut faded = 0;
    for (a, b) in played.iter().zip(&expected) {
        if a != b {
            faded += 1;
        }
    }
    assert!(faded <= lost.len() * 48, "{faded}");
    // Concealment starts from the last played frame and fades to zero:
    // never a jump from signal to silence.
    let mut last_played: Option<i16> = None;
    for (kind, b) in &r.out {
        match kind {
            FrameKind::Played => last_played = b.chunks_exact(4).last().map(frame_index),
            FrameKind::Concealed => {
                let first = frame_index(&b[..4]);
                if let Some(l) = last_played.take() {
                    // The first concealed frame repeats the last played one.
                    assert_eq!(first, l);
                }
                let v: Vec<i32> = b
                    .chunks_exact(4)
                    .map(|f| i32::from(frame_index(f)).abs())
                    .collect();
                assert!(v.windows(2).all(|w| w[1] <= w[0]), "fade is monotonic");
            }
            _ => {}
        }
    }
}

#[test]
fn reordering_within_the_window_is_invisible() {
    // Every 10th datagram swaps with its successor (5 ms later than it).
    let r = run(
        300,
        0,
        |s| Some(if s % 10 == 3 { 8_000 } else { 1_000 }),
        true,
        Config::default(),
    );
    let s = r.p.stats();
    assert_eq!(
        (s.lost, s.late, s.concealed_frames, s.duplicates),
        (0, 0, 0, 0)
    );
    let expected: Vec<i16> = (0..300 * FPP).map(|i| i as i16).collect();
    assert_eq!(played_indices(&r.out), expected);
}

#[test]
fn a_datagram_after_its_turn_is_late_not_lost() {
    // Datagram 50 arrives 200 ms late: beyond the 40 ms target.
    let r = run(
        200,
        0,
        |s| Some(if s == 50 { 200_000 } else { 500 }),
        false,
        Config::default(),
    );
    let s = r.p.stats();
    assert_eq!((s.lost, s.late, s.received), (0, 1, 200));
    assert_eq!(s.concealed_frames, u64::from(FPP));
}

#[test]
fn duplicates_are_counted_once() {
    let mut p: Playout<16, 1152> = Playout::new(Config::default());
    let d = datagram(0, true);
    p.handle_packet(Instant::ZERO, &d);
    p.handle_packet(Instant::ZERO, &d);
    let s = p.stats();
    assert_eq!((s.received, s.duplicates, s.lost), (1, 1, 0));
    p.handle_packet(Instant::ZERO, &[0x80, 1, 2]);
    assert_eq!(p.stats().invalid, 1);
}

fn drift(ppm: i64) -> (Run, u64) {
    // 10 minutes of virtual time at 166.7 datagrams/s.
    let packets = 100_000;
    let r = run(
        packets,
        ppm,
        |s| Some(500 + u64::from(s % 7) * 300),
        false,
        Config::default(),
    );
    (r, u64::from(packets) * u64::from(FPP))
}

#[test]
fn sender_200_ppm_fast_for_ten_minutes_stays_in_bounds() {
    let (r, frames) = drift(200);
    let s = r.p.stats();
    let target = 1920;
    let hyst = 960;
    // Depth never leaves target ± hysteresis (plus the one datagram in
    // flight either side of a correction).
    assert!(
        r.max_depth <= target + hyst + 2 * FPP,
        "max depth {}",
        r.max_depth
    );
    assert!(
        r.min_depth_playing >= target - hyst - 2 * FPP,
        "min depth {}",
        r.min_depth_playing
    );
    assert_eq!(
        (s.lost, s.late, s.overruns, s.concealed_frames),
        (0, 0, 0, 0)
    );
    assert_eq!(s.repeated_frames, 0);
    // The sender delivers 200 ppm more frames than we play: about that
    // many are dropped, less what the buffer absorbed before the bound.
    let excess = frames * 200 / 1_000_000;
    assert!(
        s.dropped_frames > excess - u64::from(hyst) - 2 * u64::from(FPP)
            && s.dropped_frames <= excess,
        "dropped {} of {excess} excess frames",
        s.dropped_frames
    );
    assert!((190..=210).contains(&s.drift_ppm), "drift {}", s.drift_ppm);
    std::println!(
        "200 ppm fast, 10 min: dropped {} frames ({} ppm of {} played), drift estimate {} ppm, depth {}..{} frames",
        s.dropped_frames,
        s.dropped_frames * 1_000_000 / s.played_frames,
        s.played_frames,
        s.drift_ppm,
        r.min_depth_playing,
        r.max_depth
    );
}

#[test]
fn sender_200_ppm_slow_repeats_frames() {
    let (r, _) = drift(-200);
    let s = r.p.stats();
    assert!(
        r.min_depth_playing >= 1920 - 960 - 2 * FPP,
        "min depth {}",
        r.min_depth_playing
    );
    assert_eq!((s.lost, s.concealed_frames, s.dropped_frames), (0, 0, 0));
    assert!(s.repeated_frames > 0);
    assert!(
        (-210..=-190).contains(&s.drift_ppm),
        "drift {}",
        s.drift_ppm
    );
}

#[test]
fn correction_is_bounded_by_the_configured_rate() {
    // 3000 ppm fast against a 1000 ppm cap: the buffer overflows rather
    // than correcting faster than allowed.
    let r = run(20_000, 3000, |_| Some(500), false, Config::default());
    let s = r.p.stats();
    assert!(s.dropped_frames * 1_000_000 <= s.played_frames * 1000 + 1_000_000);
}

#[test]
fn format_change_mid_stream_splits_batches_and_stays_exact() {
    // Everything arrives at once and is drained at once: no drift control,
    // which would (rightly) repeat frames as the buffer empties.
    let config = Config {
        max_correction_ppm: 0,
        ..Config::default()
    };
    let mut p: Playout<16, 1152> = Playout::new(config);
    let mut d = std::vec![0u8; 12 + 1152];
    // 4 datagrams of 48 kHz/16/2 (PT 102), then 4 of 44.1 kHz/24/5.1 (PT 99).
    for seq in 0u16..8 {
        let pt = if seq < 4 { 102 } else { 99 };
        rtp::Header {
            marker: seq == 0 || seq == 4,
            payload_type: pt,
            sequence: seq,
            timestamp: 0,
            ssrc: 1,
        }
        .emit(&mut d)
        .unwrap();
        for (i, b) in d[12..].iter_mut().enumerate() {
            *b = (i as u32 * 7 + u32::from(seq)) as u8;
        }
        p.handle_packet(Instant::from_millis(u64::from(seq)), &d);
    }
    let mut out = [0u8; 4096];
    let mut got: Vec<(u32, Vec<u8>)> = Vec::new();
    let t = Instant::from_millis(100);
    loop {
        let r = p.pull(t, 1000, &mut out);
        if r.kind != FrameKind::Played {
            break;
        }
        let f = r.format.unwrap();
        got.push((f.sample_rate(), out[..r.frames * f.frame_bytes()].to_vec()));
    }
    let a: Vec<u8> = got
        .iter()
        .filter(|g| g.0 == 48_000)
        .flat_map(|g| g.1.clone())
        .collect();
    let b: Vec<u8> = got
        .iter()
        .filter(|g| g.0 == 44_100)
        .flat_map(|g| g.1.clone())
        .collect();
    let expect = |seqs: core::ops::Range<u32>| -> Vec<u8> {
        seqs.flat_map(|s| (0..1152u32).map(move |i| (i * 7 + s) as u8))
            .collect()
    };
    assert_eq!((a.len(), b.len()), (4 * 1152, 4 * 1152));
    assert!(a == expect(0..4), "48 kHz part differs");
    assert!(b == expect(4..8), "44.1 kHz part differs");
    let s = p.stats();
    assert_eq!((s.concealed_frames, s.lost), (0, 0));
}

#[test]
fn stream_stop_goes_silent_and_restart_rebuffers() {
    let mut p: Playout<16, 1152> = Playout::new(Config::default());
    for s in 0..5 {
        p.handle_packet(Instant::from_millis(u64::from(s) * 6), &datagram(s, s == 0));
    }
    let mut out = [0u8; 288 * 4];
    let mut t = Instant::from_millis(40);
    let mut kinds = Vec::new();
    for _ in 0..40 {
        let r = p.pull(t, 288, &mut out);
        kinds.push(r.kind);
        t += Duration::from_millis(6);
    }
    assert_eq!(&kinds[..5], &[FrameKind::Played; 5]);
    assert!(kinds.contains(&FrameKind::Underrun));
    assert_eq!(kinds.last(), Some(&FrameKind::Silence));
    // The source speaks again (marker): buffering again for the target.
    p.handle_packet(t, &datagram(5, true));
    assert_eq!(p.pull(t, 288, &mut out).kind, FrameKind::Silence);
    let r = p.pull(t + Duration::from_millis(40), 288, &mut out);
    assert_eq!(r.kind, FrameKind::Played);
    assert_eq!(p.stats().lost, 0);
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_input(
        ops in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..1300), 0u64..100_000, 0usize..400), 0..40),
    ) {
        let mut p: Playout<8, 1152> = Playout::new(Config::default());
        let mut out = [0u8; 400 * 32];
        let mut t = 0u64;
        for (is_packet, mut bytes, dt, n) in ops {
            t += dt;
            if is_packet {
                if bytes.len() >= 2 {
                    bytes[0] = 0x80;
                    bytes[1] = 96 + bytes[1] % 32;
                }
                p.handle_packet(Instant::from_micros(t), &bytes);
            } else {
                let r = p.pull(Instant::from_micros(t), n, &mut out);
                prop_assert!(r.frames <= n);
            }
        }
        let _ = p.stats();
    }
}
