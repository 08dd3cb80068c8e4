//! Trickle ICE SDP fragments: the `application/trickle-ice-sdpfrag` body
//! of RFC 8840 §9, as carried by WHIP/WHEP PATCH requests (RFC 9725) and by
//! the speakers' session requests to the router.
//!
//! Where this sits in the flow: a peer's signaling message arrives as one
//! body; [`SdpFrag::parse`] validates it once and then hands out, without
//! copying, the remote ICE credentials (`a=ice-ufrag`, `a=ice-pwd`), the
//! `a=ice-options`, the [`CandidateAttribute`]s to feed to the agent (after
//! mDNS resolution, see [`crate::candidate`]) and whether
//! `a=end-of-candidates` was sent. In the other direction
//! [`SdpFragWriter`] writes our own credentials and candidates into a
//! caller's buffer.
//!
//! Accepted syntax: lines end in CRLF or LF (the last one may have no line
//! end; empty lines are ignored); every line is `<letter>=<value>` in
//! printable ASCII. Recognised lines are `a=ice-ufrag:`, `a=ice-pwd:`,
//! `a=ice-options:`, `m=`, `a=mid:`, `a=candidate:` and
//! `a=end-of-candidates`; other attributes (`a=group:BUNDLE ...`,
//! `a=ice-lite`, ...) and other line types are skipped, as RFC 8840's
//! `extension-attribute-fields` allow. An `m=` line starts a media section;
//! lines before the first `m=` are the session section.
//!
//! Credentials are validated as RFC 8839 §5.4 says: ufrag 4..=256 and pwd
//! 22..=256 ice-chars (deployments that assumed 64-byte buffers broke on
//! longer ones). One body describes one ICE session here: every
//! `a=ice-ufrag` (and every `a=ice-pwd`) line in it must carry the same
//! value, in whichever section it appears.
//!
//! Nothing here allocates or panics on any input.
//!
//! ```
//! use scream_ice_core::sdpfrag::{SdpFrag, SdpFragWriter};
//!
//! let body = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
//!             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
//!             a=candidate:1 1 udp 2130706431 192.168.1.40 4010 typ host\r\n\
//!             a=end-of-candidates\r\n";
//! let frag = SdpFrag::parse(body)?;
//! assert_eq!(frag.ice_ufrag(), Some("EsAw"));
//! assert_eq!(frag.candidates().count(), 1);
//! assert!(frag.end_of_candidates());
//!
//! // Our answer: credentials, our candidates, and end-of-candidates at once
//! // when the policy says no STUN is needed.
//! let mut buf = [0u8; 512];
//! let mut w = SdpFragWriter::new(&mut buf);
//! w.ice_options(&["trickle"]).unwrap();
//! w.ice_ufrag("rtr1").unwrap();
//! w.ice_pwd("0123456789abcdefghijkl").unwrap();
//! for c in frag.candidates() {
//!     w.candidate(&c).unwrap(); // (echoing theirs, for the example)
//! }
//! w.end_of_candidates();
//! let n = w.finish().unwrap();
//! assert!(SdpFrag::parse(core::str::from_utf8(&buf[..n]).unwrap()).is_ok());
//! # Ok::<(), scream_ice_core::sdpfrag::SdpFragError>(())
//! ```

use core::fmt::{self, Write as _};

use crate::candidate::{
    CandidateAttribute, CandidateAttributeError, InsufficientSize, SliceWriter, is_ice_char,
    is_ice_chars, is_token_char,
};

/// Shortest `ice-ufrag` (RFC 8839 §5.4: `ufrag = 4*256ice-char`).
pub const MIN_UFRAG_LEN: usize = 4;
/// Longest `ice-ufrag`.
pub const MAX_UFRAG_LEN: usize = 256;
/// Shortest `ice-pwd` (RFC 8839 §5.4: `password = 22*256ice-char`).
pub const MIN_PWD_LEN: usize = 22;
/// Longest `ice-pwd`.
pub const MAX_PWD_LEN: usize = 256;

/// True when `s` is a valid `ice-ufrag` value (4..=256 ice-chars).
pub fn is_valid_ufrag(s: &str) -> bool {
    is_ice_chars(s, MIN_UFRAG_LEN, MAX_UFRAG_LEN)
}

/// True when `s` is a valid `ice-pwd` value (22..=256 ice-chars).
pub fn is_valid_pwd(s: &str) -> bool {
    is_ice_chars(s, MIN_PWD_LEN, MAX_PWD_LEN)
}

/// `ice-option-tag = 1*ice-char` (RFC 8839 §5.6).
fn is_valid_ice_option(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_ice_char)
}

/// A `m=` value: printable, at least `<media> <port> <proto>`.
fn is_valid_media(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && s.split(' ').filter(|t| !t.is_empty()).count() >= 3
}

/// An `a=mid:` value: a non-empty RFC 3261 token (RFC 5888 `identification-tag`).
fn is_valid_mid(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What is wrong with a body; see [`SdpFragError`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SdpFragErrorKind {
    /// A byte outside printable ASCII (other than the line ends).
    InvalidCharacter,
    /// A line that is not `<lowercase letter>=...`, or an `a=` line whose
    /// attribute name is not a token.
    MalformedLine,
    /// An `m=` line with fewer than three fields.
    MediaLine,
    /// An `a=mid:` value that is empty or not a token.
    Mid,
    /// An `a=ice-ufrag:` value that is not 4..=256 ice-chars.
    Ufrag,
    /// An `a=ice-pwd:` value that is not 22..=256 ice-chars.
    Pwd,
    /// An `a=ice-options:` line without tags or with a tag that is not
    /// ice-chars.
    IceOptions,
    /// Two `a=ice-ufrag` lines with different values.
    ConflictingUfrag,
    /// Two `a=ice-pwd` lines with different values.
    ConflictingPwd,
    /// `a=end-of-candidates` with a value.
    EndOfCandidates,
    /// A candidate after `a=end-of-candidates` in the same section (or
    /// after a session-level one).
    CandidateAfterEndOfCandidates,
    /// A malformed `a=candidate:` line.
    Candidate(CandidateAttributeError),
}

/// Why [`SdpFrag::parse`] rejected a body: the reason and the 1-based line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SdpFragError {
    /// The 1-based line number (counting empty lines) of the first problem.
    pub line: u32,
    /// What is wrong with it.
    pub kind: SdpFragErrorKind,
}

impl fmt::Display for SdpFragErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SdpFragErrorKind as K;
        match self {
            K::InvalidCharacter => f.write_str("invalid character"),
            K::MalformedLine => f.write_str("malformed line"),
            K::MediaLine => f.write_str("malformed m= line"),
            K::Mid => f.write_str("malformed a=mid"),
            K::Ufrag => f.write_str("ice-ufrag is not 4..=256 ice-chars"),
            K::Pwd => f.write_str("ice-pwd is not 22..=256 ice-chars"),
            K::IceOptions => f.write_str("malformed ice-options"),
            K::ConflictingUfrag => f.write_str("two different ice-ufrag values"),
            K::ConflictingPwd => f.write_str("two different ice-pwd values"),
            K::EndOfCandidates => f.write_str("end-of-candidates takes no value"),
            K::CandidateAfterEndOfCandidates => f.write_str("candidate after end-of-candidates"),
            K::Candidate(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for SdpFragError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sdpfrag line {}: {}", self.line, self.kind)
    }
}

impl core::error::Error for SdpFragErrorKind {}
impl core::error::Error for SdpFragError {}

/// Why [`SdpFragWriter`] refused a value (nothing was written for it).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SdpFragWriteError {
    /// The ufrag is not 4..=256 ice-chars.
    Ufrag,
    /// The pwd is not 22..=256 ice-chars.
    Pwd,
    /// No ice-option tags, or a tag that is not ice-chars.
    IceOptions,
    /// The `m=` value has fewer than three fields or non-printable bytes.
    MediaLine,
    /// The mid is empty or not a token.
    Mid,
    /// The candidate's fields do not form a valid line.
    Candidate(CandidateAttributeError),
}

impl fmt::Display for SdpFragWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SdpFragWriteError::Ufrag => f.write_str("ice-ufrag is not 4..=256 ice-chars"),
            SdpFragWriteError::Pwd => f.write_str("ice-pwd is not 22..=256 ice-chars"),
            SdpFragWriteError::IceOptions => f.write_str("malformed ice-options"),
            SdpFragWriteError::MediaLine => f.write_str("malformed m= value"),
            SdpFragWriteError::Mid => f.write_str("malformed mid"),
            SdpFragWriteError::Candidate(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for SdpFragWriteError {}

// ---------------------------------------------------------------------------
// Lines and sections
// ---------------------------------------------------------------------------

/// Non-empty lines of a body, without their CRLF/LF.
#[derive(Clone)]
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (line, rest) = match self.rest.find('\n') {
                Some(i) => (self.rest.get(..i)?, self.rest.get(i + 1..)?),
                None => (self.rest, ""),
            };
            self.rest = rest;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if !line.is_empty() {
                return Some(line);
            }
        }
    }
}

/// Iterator over the ice-option tags of a body; see [`SdpFrag::ice_options`].
#[derive(Clone)]
pub struct IceOptions<'a> {
    lines: Lines<'a>,
    tags: core::str::Split<'a, char>,
}

impl<'a> Iterator for IceOptions<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        loop {
            if let Some(t) = self.tags.by_ref().find(|t| !t.is_empty()) {
                return Some(t);
            }
            let value = self
                .lines
                .by_ref()
                .find_map(|l| l.strip_prefix("a=ice-options:"))?;
            self.tags = value.split(' ');
        }
    }
}

/// One section of a body: the session section (before the first `m=`
/// line) or one media section (an `m=` line and the lines up to the next).
/// Borrowed from a validated body.
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    text: &'a str,
}

impl<'a> Section<'a> {
    fn lines(&self) -> Lines<'a> {
        Lines { rest: self.text }
    }

    /// The `m=` value (`audio 9 UDP/TLS/RTP/SAVPF 111`), `None` for the
    /// session section.
    pub fn media(&self) -> Option<&'a str> {
        self.lines().next().and_then(|l| l.strip_prefix("m="))
    }

    /// The first `a=mid:` value of the section (wherever it appears in it).
    pub fn mid(&self) -> Option<&'a str> {
        self.lines().find_map(|l| l.strip_prefix("a=mid:"))
    }

    /// True when the section has `a=end-of-candidates`.
    pub fn end_of_candidates(&self) -> bool {
        self.lines().any(|l| l == "a=end-of-candidates")
    }

    /// The section's candidates, in order.
    pub fn candidates(&self) -> SectionCandidates<'a> {
        SectionCandidates {
            lines: self.lines(),
        }
    }
}

impl PartialEq for Section<'_> {
    /// Same `m=` value, mid, end-of-candidates flag and candidates.
    fn eq(&self, other: &Self) -> bool {
        self.media() == other.media()
            && self.mid() == other.mid()
            && self.end_of_candidates() == other.end_of_candidates()
            && self.candidates().eq(other.candidates())
    }
}

impl Eq for Section<'_> {}

#[cfg(feature = "defmt")]
impl defmt::Format for Section<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Section {{ media: {}, mid: {} }}",
            self.media(),
            self.mid()
        )
    }
}

/// Iterator over the candidates of one [`Section`].
#[derive(Clone)]
pub struct SectionCandidates<'a> {
    lines: Lines<'a>,
}

impl<'a> Iterator for SectionCandidates<'a> {
    type Item = CandidateAttribute<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        // The body was validated, so every candidate line parses.
        self.lines
            .by_ref()
            .filter(|l| l.starts_with("a=candidate:"))
            .find_map(|l| CandidateAttribute::parse(l).ok())
    }
}

/// Iterator over the [`Section`]s of a body, session section first.
#[derive(Clone)]
pub struct Sections<'a> {
    rest: Option<&'a str>,
    session: bool,
}

impl<'a> Iterator for Sections<'a> {
    type Item = Section<'a>;
    fn next(&mut self) -> Option<Section<'a>> {
        let text = self.rest?;
        // The session section is empty when the body opens with an m= line.
        if core::mem::take(&mut self.session) && text.starts_with("m=") {
            return Some(Section { text: "" });
        }
        // A section ends where a later line starts with "m=" (a section's
        // own m= line is at offset 0, which "\nm=" cannot match).
        match text.find("\nm=").map(|i| i + 1) {
            Some(e) => {
                self.rest = text.get(e..);
                Some(Section {
                    text: text.get(..e).unwrap_or(""),
                })
            }
            None => {
                self.rest = None;
                Some(Section { text })
            }
        }
    }
}

/// Iterator over every candidate of a body with its section's mid; see
/// [`SdpFrag::candidates_with_mid`].
#[derive(Clone)]
pub struct CandidatesWithMid<'a> {
    sections: Sections<'a>,
    current: Option<(Option<&'a str>, SectionCandidates<'a>)>,
}

impl<'a> Iterator for CandidatesWithMid<'a> {
    type Item = (Option<&'a str>, CandidateAttribute<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((mid, cands)) = &mut self.current
                && let Some(c) = cands.next()
            {
                return Some((*mid, c));
            }
            let s = self.sections.next()?;
            self.current = Some((s.mid(), s.candidates()));
        }
    }
}

// ---------------------------------------------------------------------------
// The view
// ---------------------------------------------------------------------------

/// A validated, borrowed `application/trickle-ice-sdpfrag` body.
///
/// Construct with [`parse`](Self::parse); every accessor is then
/// infallible and allocation-free. Two views are equal when they carry the
/// same credentials, ice-options, sections (media, mid, end-of-candidates,
/// candidates); skipped lines do not count.
#[derive(Clone, Copy, Debug)]
pub struct SdpFrag<'a> {
    body: &'a str,
    ice_ufrag: Option<&'a str>,
    ice_pwd: Option<&'a str>,
}

impl<'a> SdpFrag<'a> {
    /// Validate `body` (see the module docs for the rules) and return a view
    /// over it, or the first problem and its line. Never panics.
    pub fn parse(body: &'a str) -> Result<Self, SdpFragError> {
        use SdpFragErrorKind as K;
        let mut ice_ufrag: Option<&'a str> = None;
        let mut ice_pwd: Option<&'a str> = None;
        let mut session_eoc = false;
        let mut seen_media = false;
        let mut section_eoc = false;
        for (n, raw) in body.split('\n').enumerate() {
            let line_no = u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX);
            let err = |kind| SdpFragError {
                line: line_no,
                kind,
            };
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            if !line.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                return Err(err(K::InvalidCharacter));
            }
            if !matches!(line.as_bytes(), [t, b'=', ..] if t.is_ascii_lowercase()) {
                return Err(err(K::MalformedLine));
            }
            if let Some(m) = line.strip_prefix("m=") {
                if !is_valid_media(m) {
                    return Err(err(K::MediaLine));
                }
                section_eoc = false;
                seen_media = true;
                continue;
            }
            let Some(attr) = line.strip_prefix("a=") else {
                continue; // other SDP line types: skipped
            };
            let (name, value) = match attr.find(':') {
                Some(i) => (attr.get(..i).unwrap_or(""), attr.get(i + 1..)),
                None => (attr, None),
            };
            if name.is_empty() || !name.bytes().all(is_token_char) {
                return Err(err(K::MalformedLine));
            }
            match (name, value) {
                ("ice-ufrag", Some(v)) => {
                    if !is_valid_ufrag(v) {
                        return Err(err(K::Ufrag));
                    }
                    if ice_ufrag.is_some_and(|u| u != v) {
                        return Err(err(K::ConflictingUfrag));
                    }
                    ice_ufrag = Some(v);
                }
                ("ice-ufrag", None) => return Err(err(K::Ufrag)),
                ("ice-pwd", Some(v)) => {
                    if !is_valid_pwd(v) {
                        return Err(err(K::Pwd));
                    }
                    if ice_pwd.is_some_and(|p| p != v) {
                        return Err(err(K::ConflictingPwd));
                    }
                    ice_pwd = Some(v);
                }
                ("ice-pwd", None) => return Err(err(K::Pwd)),
                ("ice-options", v) => {
                    let v = v.unwrap_or("");
                    let mut tags = v.split(' ').filter(|t| !t.is_empty()).peekable();
                    if tags.peek().is_none() || !tags.all(is_valid_ice_option) {
                        return Err(err(K::IceOptions));
                    }
                }
                ("mid", v) if !v.is_some_and(is_valid_mid) => return Err(err(K::Mid)),
                ("candidate", _) => {
                    CandidateAttribute::parse(line).map_err(|e| err(K::Candidate(e)))?;
                    if session_eoc || section_eoc {
                        return Err(err(K::CandidateAfterEndOfCandidates));
                    }
                }
                ("end-of-candidates", None) => {
                    session_eoc |= !seen_media;
                    section_eoc = true;
                }
                ("end-of-candidates", Some(_)) => return Err(err(K::EndOfCandidates)),
                _ => {} // extension attributes: skipped
            }
        }
        Ok(SdpFrag {
            body,
            ice_ufrag,
            ice_pwd,
        })
    }

    /// The body this view borrows.
    pub fn as_str(&self) -> &'a str {
        self.body
    }

    /// The `a=ice-ufrag` value (4..=256 ice-chars), if the body has one.
    pub fn ice_ufrag(&self) -> Option<&'a str> {
        self.ice_ufrag
    }

    /// The `a=ice-pwd` value (22..=256 ice-chars), if the body has one.
    pub fn ice_pwd(&self) -> Option<&'a str> {
        self.ice_pwd
    }

    /// Every ice-option tag of every `a=ice-options` line, in order.
    pub fn ice_options(&self) -> IceOptions<'a> {
        IceOptions {
            lines: Lines { rest: self.body },
            tags: "".split(' '),
        }
    }

    /// True when one of the `a=ice-options` lines lists `tag` (e.g.
    /// `trickle`, `ice2`).
    pub fn has_ice_option(&self, tag: &str) -> bool {
        self.ice_options().any(|t| t == tag)
    }

    /// True when the body has an `a=end-of-candidates` line in any section
    /// (one ICE session: no further candidates will follow).
    pub fn end_of_candidates(&self) -> bool {
        self.lines().any(|l| l == "a=end-of-candidates")
    }

    /// The sections, session section first (it may be empty).
    pub fn sections(&self) -> Sections<'a> {
        Sections {
            rest: Some(self.body),
            session: true,
        }
    }

    /// Every candidate of the body, in order.
    pub fn candidates(&self) -> impl Iterator<Item = CandidateAttribute<'a>> + use<'a> {
        self.candidates_with_mid().map(|(_, c)| c)
    }

    /// Every candidate with the mid of its section (`None` in the session
    /// section or in a media section without `a=mid`).
    pub fn candidates_with_mid(&self) -> CandidatesWithMid<'a> {
        CandidatesWithMid {
            sections: self.sections(),
            current: None,
        }
    }

    fn lines(&self) -> Lines<'a> {
        Lines { rest: self.body }
    }

    /// Write this fragment back as a canonical body: `a=ice-options` (all
    /// tags on one line), `a=ice-ufrag`, `a=ice-pwd`, then each section with
    /// its `m=` line, `a=mid`, candidates (re-emitted as in
    /// [`CandidateAttribute::emit`]) and `a=end-of-candidates`. Skipped
    /// lines are dropped. `SdpFrag::parse` of the output equals `self`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, InsufficientSize> {
        let mut w = SdpFragWriter::new(buf);
        // Values come from a validated body, so the writer accepts them.
        let mut first = true;
        for tag in self.ice_options() {
            let sep = if first { "a=ice-options:" } else { " " };
            w.raw(format_args!("{sep}{tag}"));
            first = false;
        }
        if !first {
            w.raw(format_args!("\r\n"));
        }
        if let Some(u) = self.ice_ufrag {
            let _ = w.ice_ufrag(u);
        }
        if let Some(p) = self.ice_pwd {
            let _ = w.ice_pwd(p);
        }
        for s in self.sections() {
            if let Some(m) = s.media() {
                let _ = w.media(m);
            }
            if let Some(mid) = s.mid() {
                let _ = w.mid(mid);
            }
            for c in s.candidates() {
                let _ = w.candidate(&c);
            }
            if s.end_of_candidates() {
                w.end_of_candidates();
            }
        }
        w.finish()
    }
}

impl PartialEq for SdpFrag<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.ice_ufrag == other.ice_ufrag
            && self.ice_pwd == other.ice_pwd
            && self.ice_options().eq(other.ice_options())
            && self.sections().eq(other.sections())
    }
}

impl Eq for SdpFrag<'_> {}

#[cfg(feature = "defmt")]
impl defmt::Format for SdpFrag<'_> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "SdpFrag {{ ufrag: {}, end_of_candidates: {=bool} }}",
            self.ice_ufrag,
            self.end_of_candidates()
        )
    }
}

// ---------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------

/// Writes an `application/trickle-ice-sdpfrag` body into a caller's buffer,
/// one line per call, each ending in CRLF.
///
/// Values are validated as they are added (an invalid one returns an error
/// and writes nothing). Running out of room is reported once, by
/// [`finish`](Self::finish), with the total size the body needs, so a
/// caller can retry with a bigger buffer. The order of calls is the order
/// of lines; the usual order is `ice_options`, `ice_ufrag`, `ice_pwd`,
/// optionally `media` and `mid`, the candidates, then `end_of_candidates`.
/// Never panics.
pub struct SdpFragWriter<'b> {
    w: SliceWriter<'b>,
}

impl<'b> SdpFragWriter<'b> {
    /// A writer that fills `buf` from its start.
    pub fn new(buf: &'b mut [u8]) -> Self {
        SdpFragWriter {
            w: SliceWriter::new(buf),
        }
    }

    fn raw(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.w.write_fmt(args);
    }

    /// `a=ice-options:<tag> <tag>...`; each tag must be ice-chars, at least
    /// one tag.
    pub fn ice_options(&mut self, tags: &[&str]) -> Result<(), SdpFragWriteError> {
        if tags.is_empty() || !tags.iter().all(|t| is_valid_ice_option(t)) {
            return Err(SdpFragWriteError::IceOptions);
        }
        self.raw(format_args!("a=ice-options:"));
        for (i, t) in tags.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            self.raw(format_args!("{sep}{t}"));
        }
        self.raw(format_args!("\r\n"));
        Ok(())
    }

    /// `a=ice-ufrag:<ufrag>`; 4..=256 ice-chars.
    pub fn ice_ufrag(&mut self, ufrag: &str) -> Result<(), SdpFragWriteError> {
        if !is_valid_ufrag(ufrag) {
            return Err(SdpFragWriteError::Ufrag);
        }
        self.raw(format_args!("a=ice-ufrag:{ufrag}\r\n"));
        Ok(())
    }

    /// `a=ice-pwd:<pwd>`; 22..=256 ice-chars.
    pub fn ice_pwd(&mut self, pwd: &str) -> Result<(), SdpFragWriteError> {
        if !is_valid_pwd(pwd) {
            return Err(SdpFragWriteError::Pwd);
        }
        self.raw(format_args!("a=ice-pwd:{pwd}\r\n"));
        Ok(())
    }

    /// `m=<value>`, e.g. `audio 9 UDP/TLS/RTP/SAVPF 111`; starts a media
    /// section.
    pub fn media(&mut self, value: &str) -> Result<(), SdpFragWriteError> {
        if !is_valid_media(value) {
            return Err(SdpFragWriteError::MediaLine);
        }
        self.raw(format_args!("m={value}\r\n"));
        Ok(())
    }

    /// `a=mid:<mid>`; a non-empty token.
    pub fn mid(&mut self, mid: &str) -> Result<(), SdpFragWriteError> {
        if !is_valid_mid(mid) {
            return Err(SdpFragWriteError::Mid);
        }
        self.raw(format_args!("a=mid:{mid}\r\n"));
        Ok(())
    }

    /// `a=candidate:...`; the attribute must pass
    /// [`CandidateAttribute::validate`].
    pub fn candidate(&mut self, c: &CandidateAttribute<'_>) -> Result<(), SdpFragWriteError> {
        c.validate().map_err(SdpFragWriteError::Candidate)?;
        self.raw(format_args!("a={c}\r\n"));
        Ok(())
    }

    /// `a=end-of-candidates`.
    pub fn end_of_candidates(&mut self) {
        self.raw(format_args!("a=end-of-candidates\r\n"));
    }

    /// The body's length, or the size it needs when the buffer was too
    /// small (the buffer's contents are then unspecified).
    pub fn finish(&self) -> Result<usize, InsufficientSize> {
        self.w.finish()
    }
}

// ---------------------------------------------------------------------------
// Conformance
// ---------------------------------------------------------------------------

/// RFC 8840-style example body (one audio section, host candidates).
#[cfg(any(test, feature = "conformance"))]
const RFC8840_EXAMPLE: &str = "a=ice-pwd:asd88fgpdd777uzjYhagZg\r\n\
a=ice-ufrag:8hhY\r\n\
m=audio 5000 RTP/AVP 0\r\n\
a=mid:1\r\n\
a=candidate:1 1 UDP 1658497328 198.51.100.33 5000 typ host\r\n\
a=candidate:2 1 UDP 1658497328 198.51.100.33 5001 typ host\r\n\
a=end-of-candidates\r\n";

#[cfg(feature = "conformance")]
pub(crate) fn conformance(report: &mut crate::conformance::Report) {
    let ok = SdpFrag::parse(RFC8840_EXAMPLE).is_ok_and(|f| {
        f.ice_ufrag() == Some("8hhY")
            && f.ice_pwd() == Some("asd88fgpdd777uzjYhagZg")
            && f.end_of_candidates()
            && f.candidates().count() == 2
            && f.candidates_with_mid()
                .all(|(mid, c)| mid == Some("1") && c.priority == 1_658_497_328)
    });
    report.check("sdpfrag/rfc8840-example", ok);
    let mut buf = [0u8; 512];
    let ok = SdpFrag::parse(RFC8840_EXAMPLE)
        .ok()
        .and_then(|f| f.emit(&mut buf).ok().map(|n| (f, n)))
        .is_some_and(|(f, n)| {
            buf.get(..n)
                .and_then(|b| core::str::from_utf8(b).ok())
                .and_then(|s| SdpFrag::parse(s).ok())
                .is_some_and(|g| g == f)
        });
    report.check("sdpfrag/round-trip", ok);
    report.check(
        "sdpfrag/reject-short-pwd",
        SdpFrag::parse("a=ice-pwd:tooshort\r\n").map(|_| ())
            == Err(SdpFragError {
                line: 1,
                kind: SdpFragErrorKind::Pwd,
            }),
    );
    let long = [b'a'; 256];
    let long = core::str::from_utf8(&long).unwrap_or("");
    let mut buf = [0u8; 600];
    let mut w = SdpFragWriter::new(&mut buf);
    let wrote = w.ice_ufrag(long).is_ok()
        && w.ice_pwd(long).is_ok()
        && w.finish() == Ok(2 * (256 + 14) - 2);
    report.check("sdpfrag/256-char-credentials", wrote);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::candidate::{CandidateKind, ConnectionAddress, TcpType, Transport};
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    fn reemit(f: &SdpFrag<'_>) -> String {
        let mut buf = std::vec![0u8; 64 * 1024];
        let n = f.emit(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn assert_round_trip(body: &str) -> String {
        let f = SdpFrag::parse(body).unwrap();
        let out = reemit(&f);
        let g = SdpFrag::parse(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(g, f, "{out}");
        // Canonical output is a fixed point.
        assert_eq!(reemit(&g), out);
        out
    }

    #[test]
    fn rfc8840_example() {
        let f = SdpFrag::parse(RFC8840_EXAMPLE).unwrap();
        assert_eq!(f.ice_ufrag(), Some("8hhY"));
        assert_eq!(f.ice_pwd(), Some("asd88fgpdd777uzjYhagZg"));
        assert_eq!(f.ice_options().count(), 0);
        assert!(f.end_of_candidates());
        let sections: Vec<_> = f.sections().collect();
        assert_eq!(sections.len(), 2);
        assert_eq!(sections[0].media(), None);
        assert_eq!(sections[1].media(), Some("audio 5000 RTP/AVP 0"));
        assert_eq!(sections[1].mid(), Some("1"));
        assert!(sections[1].end_of_candidates());
        let c: Vec<_> = f.candidates_with_mid().collect();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, Some("1"));
        assert_eq!(c[0].1.foundation, "1");
        assert_eq!(c[1].1.foundation, "2");
        assert_eq!(c[1].1.port, 5001);
        assert_eq!(c[1].1.transport, Transport::Udp);
        let out = assert_round_trip(RFC8840_EXAMPLE);
        assert_eq!(
            out,
            "a=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\nm=audio 5000 RTP/AVP 0\r\na=mid:1\r\n\
             a=candidate:1 1 udp 1658497328 198.51.100.33 5000 typ host\r\n\
             a=candidate:2 1 udp 1658497328 198.51.100.33 5001 typ host\r\na=end-of-candidates\r\n"
        );
    }

    /// RFC 8840-style body with two bundled media sections, session-level
    /// ice-options and BUNDLE group, LF line ends.
    const TWO_SECTIONS: &str = "a=ice-options:trickle\n\
a=group:BUNDLE 1 2\n\
a=ice-ufrag:8hhY\n\
a=ice-pwd:asd88fgpdd777uzjYhagZg\n\
m=audio 5000 RTP/AVP 0\n\
a=mid:1\n\
a=candidate:1 1 UDP 1658497328 198.51.100.33 5000 typ host\n\
a=end-of-candidates\n\
m=video 5002 RTP/AVP 31\n\
a=candidate:1 1 UDP 1658497328 198.51.100.33 5002 typ host\n\
a=mid:2\n\
a=end-of-candidates\n";

    #[test]
    fn two_sections_lf() {
        let f = SdpFrag::parse(TWO_SECTIONS).unwrap();
        assert!(f.has_ice_option("trickle"));
        assert!(!f.has_ice_option("ice2"));
        let c: Vec<_> = f.candidates_with_mid().map(|(m, c)| (m, c.port)).collect();
        // The mid applies to the whole section, even after the candidate.
        assert_eq!(c, [(Some("1"), 5000), (Some("2"), 5002)]);
        assert_round_trip(TWO_SECTIONS);
    }

    /// The WHIP trickle example of RFC 9725 §4.3.1 in shape: Chrome
    /// candidates with libwebrtc extensions, BUNDLE, one audio section.
    const WHIP_PATCH: &str = "a=group:BUNDLE 0\r\n\
a=ice-ufrag:EsAw\r\n\
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:0\r\n\
a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n\
a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n\
a=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 typ host tcptype active generation 0 ufrag EsAw network-id 1\r\n\
a=candidate:2154773085 1 tcp 1518214911 198.51.100.2 9 typ host tcptype active generation 0 ufrag EsAw network-id 2\r\n\
a=end-of-candidates\r\n";

    #[test]
    fn whip_patch_body() {
        let f = SdpFrag::parse(WHIP_PATCH).unwrap();
        assert_eq!(f.ice_ufrag(), Some("EsAw"));
        assert_eq!(f.ice_pwd(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        let c: Vec<_> = f.candidates().collect();
        assert_eq!(c.len(), 4);
        assert!(
            c.iter()
                .all(|c| c.ufrag == Some("EsAw") && c.kind == CandidateKind::Host)
        );
        assert_eq!(c[2].tcp_type, Some(TcpType::Active));
        assert_eq!(c[3].network_id, Some(2));
        assert_eq!(
            c[1].connection_address,
            ConnectionAddress::Ip("198.51.100.2".parse().unwrap())
        );
        let out = assert_round_trip(WHIP_PATCH);
        // Candidate lines are re-emitted byte for byte.
        for line in WHIP_PATCH
            .split("\r\n")
            .filter(|l| l.starts_with("a=candidate"))
        {
            assert!(out.contains(line), "{line}");
        }
        assert!(!out.contains("group:BUNDLE"));
    }

    #[test]
    fn firefox_body_with_other_lines() {
        let body = "a=ice-options:trickle\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
c=IN IP4 0.0.0.0\r\n\
a=candidate:0 1 UDP 2122252543 fc8e5fbc-11bb-446e-afa8-f0ec2dc006fe.local 49104 typ host\r\n\
a=candidate:1 1 TCP 2105524479 fc8e5fbc-11bb-446e-afa8-f0ec2dc006fe.local 9 typ host tcptype active\r\n\
a=sendrecv\r\na=end-of-candidates\r\na=ice-pwd:df9d548aafb0d487f3fda43fb2db95d9\r\na=ice-ufrag:e726db63\r\na=mid:0";
        let f = SdpFrag::parse(body).unwrap();
        assert_eq!(f.ice_ufrag(), Some("e726db63"));
        assert_eq!(f.ice_pwd(), Some("df9d548aafb0d487f3fda43fb2db95d9"));
        assert!(f.candidates().all(|c| c.connection_address.is_mdns()));
        assert!(f.candidates_with_mid().all(|(m, _)| m == Some("0")));
        assert_round_trip(body);
    }

    #[test]
    fn credentials_of_256_chars() {
        let ufrag = "u".repeat(256);
        let pwd = "p+/9".repeat(64);
        let mut buf = std::vec![0u8; 2048];
        let mut w = SdpFragWriter::new(&mut buf);
        w.ice_options(&["trickle", "ice2"]).unwrap();
        w.ice_ufrag(&ufrag).unwrap();
        w.ice_pwd(&pwd).unwrap();
        let n = w.finish().unwrap();
        let body = core::str::from_utf8(&buf[..n]).unwrap();
        let f = SdpFrag::parse(body).unwrap();
        assert_eq!(f.ice_ufrag(), Some(ufrag.as_str()));
        assert_eq!(f.ice_pwd(), Some(pwd.as_str()));
        assert_eq!(f.ice_options().collect::<Vec<_>>(), ["trickle", "ice2"]);
        assert!(!f.end_of_candidates());
        // 257 is one too many; 3 and 21 one too few.
        let too_long = std::format!("a=ice-ufrag:{}\r\n", "u".repeat(257));
        assert_eq!(
            SdpFrag::parse(&too_long).unwrap_err().kind,
            SdpFragErrorKind::Ufrag
        );
        assert_eq!(
            SdpFrag::parse("a=ice-ufrag:abc").unwrap_err().kind,
            SdpFragErrorKind::Ufrag
        );
        assert!(SdpFrag::parse("a=ice-ufrag:abcd").is_ok());
        let p21 = std::format!("a=ice-pwd:{}", "p".repeat(21));
        assert_eq!(
            SdpFrag::parse(&p21).unwrap_err().kind,
            SdpFragErrorKind::Pwd
        );
        let p257 = std::format!("a=ice-pwd:{}", "p".repeat(257));
        assert_eq!(
            SdpFrag::parse(&p257).unwrap_err().kind,
            SdpFragErrorKind::Pwd
        );
        let mut w = SdpFragWriter::new(&mut buf);
        assert_eq!(w.ice_ufrag(&"u".repeat(257)), Err(SdpFragWriteError::Ufrag));
        assert_eq!(w.ice_pwd("short"), Err(SdpFragWriteError::Pwd));
        assert_eq!(w.finish(), Ok(0));
    }

    #[test]
    fn writer_builds_a_body_from_candidates() {
        let line = "candidate:842163049 1 udp 1686052607 203.0.113.7 61765 typ srflx raddr 192.168.1.5 rport 55012";
        let cand = CandidateAttribute::parse(line).unwrap();
        let mut buf = [0u8; 512];
        let mut w = SdpFragWriter::new(&mut buf);
        w.ice_options(&["trickle"]).unwrap();
        w.ice_ufrag("EsAw").unwrap();
        w.ice_pwd("P2uYro0UCOQ4zxjKXaWCBui1").unwrap();
        w.media("audio 9 UDP/TLS/RTP/SAVPF 111").unwrap();
        w.mid("0").unwrap();
        w.candidate(&cand).unwrap();
        w.end_of_candidates();
        let n = w.finish().unwrap();
        let body = core::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            body,
            "a=ice-options:trickle\r\na=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
             a=candidate:842163049 1 udp 1686052607 203.0.113.7 61765 typ srflx raddr 192.168.1.5 rport 55012\r\n\
             a=end-of-candidates\r\n"
        );
        let f = SdpFrag::parse(body).unwrap();
        assert_eq!(f.candidates().next(), Some(cand));
        // Too small: the full size is reported.
        let mut small = [0u8; 40];
        let mut w = SdpFragWriter::new(&mut small);
        w.ice_ufrag("EsAw").unwrap();
        w.ice_pwd("P2uYro0UCOQ4zxjKXaWCBui1").unwrap();
        assert_eq!(w.finish(), Err(InsufficientSize { required: 18 + 36 }));
        assert_eq!(f.emit(&mut small), Err(InsufficientSize { required: n }));
        // Invalid values are refused.
        let mut w = SdpFragWriter::new(&mut buf);
        assert_eq!(w.ice_options(&[]), Err(SdpFragWriteError::IceOptions));
        assert_eq!(
            w.ice_options(&["tr ickle"]),
            Err(SdpFragWriteError::IceOptions)
        );
        assert_eq!(w.media("audio"), Err(SdpFragWriteError::MediaLine));
        assert_eq!(w.mid(""), Err(SdpFragWriteError::Mid));
        let mut bad = cand;
        bad.foundation = "";
        assert_eq!(
            w.candidate(&bad),
            Err(SdpFragWriteError::Candidate(
                CandidateAttributeError::Foundation
            ))
        );
    }

    #[test]
    fn rejections_name_line_and_reason() {
        use SdpFragErrorKind as K;
        let table: &[(&str, u32, K)] = &[
            ("hello\r\n", 1, K::MalformedLine),
            ("a=ice-ufrag:abcd\r\nA=x\r\n", 2, K::MalformedLine),
            ("a=ice-ufrag:abcd\r\n\r\na=\r\n", 3, K::MalformedLine),
            ("a=(x):y", 1, K::MalformedLine),
            ("a=ice-ufrag:ab\u{e9}d", 1, K::InvalidCharacter),
            ("a=ice-ufrag:abcd\ra=mid:0", 1, K::InvalidCharacter),
            ("m=audio 9\r\n", 1, K::MediaLine),
            ("a=mid:\r\n", 1, K::Mid),
            ("a=mid\r\n", 1, K::Mid),
            ("a=ice-ufrag:ab-cd", 1, K::Ufrag),
            ("a=ice-ufrag", 1, K::Ufrag),
            ("a=ice-pwd", 1, K::Pwd),
            ("a=ice-ufrag:abcd\na=ice-ufrag:abce", 2, K::ConflictingUfrag),
            (
                "a=ice-pwd:asd88fgpdd777uzjYhagZg\na=ice-pwd:asd88fgpdd777uzjYhagZh",
                2,
                K::ConflictingPwd,
            ),
            ("a=ice-options:", 1, K::IceOptions),
            ("a=ice-options:tri-ckle", 1, K::IceOptions),
            ("a=end-of-candidates:now", 1, K::EndOfCandidates),
            (
                "a=end-of-candidates\nm=audio 9 RTP/AVP 0\na=candidate:1 1 udp 1 192.0.2.1 1 typ host",
                3,
                K::CandidateAfterEndOfCandidates,
            ),
            (
                "m=audio 9 RTP/AVP 0\na=end-of-candidates\na=candidate:1 1 udp 1 192.0.2.1 1 typ host",
                3,
                K::CandidateAfterEndOfCandidates,
            ),
            (
                "a=candidate:1 1 udp 1 192.0.2.1 1 typ hots",
                1,
                K::Candidate(CandidateAttributeError::CandidateType),
            ),
        ];
        for (body, line, kind) in table {
            assert_eq!(
                SdpFrag::parse(body).map(|_| ()),
                Err(SdpFragError {
                    line: *line,
                    kind: *kind
                }),
                "{body:?}"
            );
        }
        // A candidate in a new section after another section's end is fine.
        let ok = "m=audio 9 RTP/AVP 0\na=end-of-candidates\nm=audio 10 RTP/AVP 0\n\
                  a=candidate:1 1 udp 1 192.0.2.1 1 typ host";
        assert!(SdpFrag::parse(ok).is_ok());
        assert_round_trip(ok);
    }

    #[test]
    fn empty_and_minimal_bodies() {
        let f = SdpFrag::parse("").unwrap();
        assert_eq!(f.ice_ufrag(), None);
        assert_eq!(f.candidates().count(), 0);
        assert_eq!(f.sections().count(), 1);
        assert_eq!(reemit(&f), "");
        let f = SdpFrag::parse("a=end-of-candidates").unwrap();
        assert!(f.end_of_candidates());
        assert_eq!(reemit(&f), "a=end-of-candidates\r\n");
        // Session-level candidates (no m= line), as speakers send them.
        let body = "a=ice-ufrag:spk1\na=ice-pwd:0123456789abcdefghijkl\n\
                    a=candidate:1 1 udp 2130706431 192.168.1.40 4010 typ host\n";
        let f = SdpFrag::parse(body).unwrap();
        assert_eq!(
            f.candidates_with_mid().next().map(|(m, c)| (m, c.port)),
            Some((None, 4010))
        );
        assert_round_trip(body);
    }

    #[cfg(feature = "conformance")]
    #[test]
    fn conformance_cases_pass() {
        let mut r = crate::conformance::Report::default();
        conformance(&mut r);
        assert_eq!(r.failed, 0, "{:?}", r.first_failure);
        assert_eq!(r.passed, 4);
    }

    const BODIES: &[&str] = &[RFC8840_EXAMPLE, TWO_SECTIONS, WHIP_PATCH];

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,400}") {
            let _ = SdpFrag::parse(&s);
        }

        #[test]
        fn sdp_shaped_input_round_trips(
            lines in prop::collection::vec(
                prop_oneof![
                    Just(String::from("a=ice-ufrag:abcd")),
                    Just(String::from("a=ice-pwd:asd88fgpdd777uzjYhagZg")),
                    "a=ice-options:[a-z0-9]{1,6}( [a-z0-9]{1,6}){0,2}",
                    "m=(audio|video) [0-9]{1,5} RTP/AVP [0-9]{1,3}",
                    "a=mid:[a-z0-9]{1,4}",
                    "a=candidate:[0-9]{1,3} [12] (udp|UDP|tcp) [0-9]{1,10} 192\\.0\\.2\\.[0-9]{1,2} [0-9]{1,5} typ (host|srflx)( generation 0)?",
                    Just(String::from("a=end-of-candidates")),
                    "a=[a-z-]{1,10}(:[ -~]{0,10})?",
                    Just(String::new()),
                ],
                0..12,
            ),
            crlf: bool,
        ) {
            let body = lines.join(if crlf { "\r\n" } else { "\n" });
            if let Ok(f) = SdpFrag::parse(&body) {
                let out = reemit(&f);
                let g = SdpFrag::parse(&out);
                prop_assert_eq!(g, Ok(f), "{}", out);
            }
        }

        #[test]
        fn mutated_bodies_never_panic_and_round_trip(
            idx in 0..BODIES.len(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let mut bytes = BODIES[idx].as_bytes().to_vec();
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ if i < bytes.len() => { bytes.remove(i); }
                    _ => {}
                }
            }
            if let Ok(s) = core::str::from_utf8(&bytes)
                && let Ok(f) = SdpFrag::parse(s)
            {
                let out = reemit(&f);
                prop_assert_eq!(SdpFrag::parse(&out), Ok(f), "{}", out);
            }
        }
    }
}
