//! `scream-ice migrate` and `scream-ice rollback`: the seed's
//! `migrate_ice_config.py` (section 4.2) and rollback script (3.3), done
//! so that no file is ever lost.
//!
//! `migrate` reads one of three shapes and writes the new YAML:
//!
//! - a JSON `RTCConfiguration` (`{"iceServers": [...], ...}`, `urls` a
//!   string or a list, `username`, `credential`, `credentialType`, and the
//!   browser-only members `iceTransportPolicy` (`all`), `bundlePolicy`,
//!   `rtcpMuxPolicy`, `iceCandidatePoolSize`, `certificates`,
//!   `peerIdentity`, which have no router equivalent and are not carried);
//! - a JSON file whose top level is such an `iceServers` list;
//! - an old YAML config (the seed's `phase1.yaml`: `legacy_mode: true`, a
//!   `migration:` section, `url`/`urls` entries, even an `iceServers`
//!   list), migrated in place.
//!
//! The result has `mode: auto` (a `legacy` mode becomes `auto`; another
//! explicit mode is kept), `legacy_mode: false`, `local_network_priority:
//! true`, `migration.enable_new_features: true` where that section
//! exists, every STUN URL in `stun_servers` and every TURN URL with its
//! credentials in `turn_servers` (one entry per URL, exact duplicates
//! dropped), and everything else the input said, unchanged. The daemon's
//! own parser ([`Config::from_yaml`]) decides which keys exist: a key it
//! rejects is refused by name (all of them, each with its line:column),
//! or dropped with `--drop-unknown`. Comments are not carried over (the
//! backup keeps them). When the result says what the input said, nothing
//! is written, so a second run over migrated output changes nothing.
//!
//! Refused, each in one line, nothing changed: an input over
//! [`MAX_INPUT_BYTES`], an empty file, binary data, a JSON or YAML syntax
//! error (with line:column), a `urls` that is neither a string nor a list,
//! a scheme other than stun/stuns/turn/turns, a TURN URL without username
//! or credential, more servers than [`MAX_SERVERS`], and a result the
//! daemon would not start with.
//!
//! The file is replaced by [`crate::atomic::replace`]: timestamped backup,
//! temporary file in the same directory, fsync, validation by the daemon's
//! parser, rename, directory fsync.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use scream_ice_core::policy::{IceMode, MAX_SERVERS};
use scream_ice_core::url::{self as ice_url, IceServerUrl};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::atomic::{self, Fs, Replacement, WriteError};
use crate::config::Config;

/// The largest input `migrate` reads (1 MiB).
pub const MAX_INPUT_BYTES: u64 = 1 << 20;

/// The backup kind of `migrate` (`FILE.<timestamp>.migrate.bak`);
/// `rollback --restore-backup` restores the newest of these.
pub const MIGRATE_BACKUP_KIND: &str = "migrate";
/// The backup kind of `rollback`.
pub const ROLLBACK_BACKUP_KIND: &str = "rollback";

// ---------------------------------------------------------------------------
// A located YAML/JSON tree
// ---------------------------------------------------------------------------

/// 1-based line and column in the input, when the parser gives them
/// (YAML does, JSON does not).
pub type At = Option<(u64, u64)>;

/// One node of the input, with where it starts.
#[derive(Clone, Debug)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it is in the input.
    pub at: At,
    /// For a plain (unquoted) YAML scalar that is not a string (`yes`,
    /// `0x1F`, `1e3`): its text in the input. The daemon's typed parser
    /// reads such a scalar as the string it is written as where a string
    /// belongs, so it is written back as is, never re-rendered from its
    /// value (which would turn a credential `yes` into `true`).
    raw: Option<String>,
    /// Byte offset and length of the scalar's definition in the input.
    span: Option<(usize, usize)>,
}

/// A YAML/JSON value; mappings keep their order.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Value {
    /// `null` / `~` / an empty value.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in input order.
    Map(Vec<Entry>),
}

/// One mapping entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Where the key is.
    pub key_at: At,
    /// The value.
    pub value: Node,
}

impl Node {
    fn new(value: Value) -> Node {
        Node {
            value,
            at: None,
            raw: None,
            span: None,
        }
    }

    fn located(value: Value, at: At) -> Node {
        Node {
            at,
            ..Node::new(value)
        }
    }

    /// Fill `raw` of every non-string scalar from the input text.
    fn fill_raw(&mut self, text: &str) {
        match &mut self.value {
            Value::Seq(v) => v.iter_mut().for_each(|n| n.fill_raw(text)),
            Value::Map(m) => m.iter_mut().for_each(|e| e.value.fill_raw(text)),
            Value::Str(_) => {}
            _ => {
                if let Some((off, len)) = self.span {
                    self.raw = text
                        .get(off..off + len)
                        .map(str::trim)
                        .filter(|r| !r.is_empty() && !r.starts_with(['*', '&', '!']))
                        .map(str::to_string);
                }
            }
        }
    }

    /// The text of a scalar as the daemon reads it where a string
    /// belongs: a string's value, or a plain scalar's raw text.
    fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            Value::Seq(_) | Value::Map(_) => None,
            _ => self.raw.as_deref(),
        }
    }

    fn str(s: &str) -> Node {
        Node::new(Value::Str(s.to_string()))
    }

    fn map() -> Node {
        Node::new(Value::Map(Vec::new()))
    }

    /// The same value, ignoring locations.
    pub fn same(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.key == y.key && x.value.same(&y.value))
            }
            _ => false,
        }
    }

    fn entries(&self) -> Option<&Vec<Entry>> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    fn entries_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value of `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries_mut()?
            .iter_mut()
            .find(|e| e.key == key)
            .map(|e| &mut e.value)
    }

    /// Set `key` (in place if present, appended otherwise); no-op on a
    /// non-mapping.
    fn set(&mut self, key: &str, value: Node) {
        self.set_after(key, value, None);
    }

    /// Set `key`; a new key goes right after `after` when that exists
    /// (so the written file reads in the schema's order), else last.
    fn set_after(&mut self, key: &str, value: Node, after: Option<&str>) {
        if let Some(m) = self.entries_mut() {
            if let Some(e) = m.iter_mut().find(|e| e.key == key) {
                // Keep where it was; take the new value (and its text).
                e.value.value = value.value;
                e.value.raw = value.raw;
                return;
            }
            let at = after
                .and_then(|a| m.iter().position(|e| e.key == a))
                .map_or(m.len(), |i| i + 1);
            m.insert(
                at,
                Entry {
                    key: key.to_string(),
                    key_at: None,
                    value,
                },
            );
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let m = self.entries_mut()?;
        let i = m.iter().position(|e| e.key == key)?;
        Some(m.remove(i))
    }

    /// The mapping under `key`, created (empty) when absent; `None` when
    /// `key` holds something else.
    fn child_map(&mut self, key: &str) -> Option<&mut Node> {
        if self.get(key).is_none() {
            self.set(key, Node::map());
        }
        let c = self.get_mut(key)?;
        if matches!(c.value, Value::Null) {
            c.value = Value::Map(Vec::new());
        }
        c.entries().is_some().then_some(c)
    }

    fn as_str(&self) -> Option<&str> {
        self.scalar_text()
    }

    fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Builds a [`Value`] from any self-describing deserializer; children and
/// keys are deserialized as `C` and `K`.
struct RawVisitor<C, K>(std::marker::PhantomData<(C, K)>);

trait IntoNode {
    fn into_node(self) -> Node;
}
trait IntoKey {
    fn into_key(self) -> (String, At);
}

impl<'de, C, K> Visitor<'de> for RawVisitor<C, K>
where
    C: Deserialize<'de> + IntoNode,
    K: Deserialize<'de> + IntoKey,
{
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        i128::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(c) = seq.next_element::<C>()? {
            v.push(c.into_node());
        }
        Ok(Value::Seq(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut v: Vec<Entry> = Vec::new();
        while let Some((k, c)) = map.next_entry::<K, C>()? {
            let (key, key_at) = k.into_key();
            if v.iter().any(|e| e.key == key) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            v.push(Entry {
                key,
                key_at,
                value: c.into_node(),
            });
        }
        Ok(Value::Map(v))
    }
}

struct RawValue<C, K>(Value, std::marker::PhantomData<(C, K)>);

impl<'de, C, K> Deserialize<'de> for RawValue<C, K>
where
    C: Deserialize<'de> + IntoNode,
    K: Deserialize<'de> + IntoKey,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor::<C, K>(std::marker::PhantomData))
            .map(|v| RawValue(v, std::marker::PhantomData))
    }
}

fn location(l: &serde_saphyr::Location) -> At {
    (l.line() > 0).then(|| (l.line(), l.column().max(1)))
}

/// A YAML node with its location.
struct YamlNode(Node);
struct YamlKey(String, At);

impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<RawValue<YamlNode, YamlKey>>::deserialize(d)?;
        let span = s.defined.span();
        let mut n = Node::located(s.value.0, location(&s.referenced));
        n.span = span
            .byte_offset()
            .zip(span.byte_len())
            .map(|(o, l)| (o as usize, l as usize));
        Ok(YamlNode(n))
    }
}
impl IntoNode for YamlNode {
    fn into_node(self) -> Node {
        self.0
    }
}
impl<'de> Deserialize<'de> for YamlKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<String>::deserialize(d)?;
        Ok(YamlKey(s.value, location(&s.referenced)))
    }
}
impl IntoKey for YamlKey {
    fn into_key(self) -> (String, At) {
        (self.0, self.1)
    }
}

/// A JSON node (serde_json gives no locations inside a valid document).
struct JsonNode(Node);
impl<'de> Deserialize<'de> for JsonNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = RawValue::<JsonNode, String>::deserialize(d)?;
        Ok(JsonNode(Node::new(v.0)))
    }
}
impl IntoNode for JsonNode {
    fn into_node(self) -> Node {
        self.0
    }
}
impl IntoKey for String {
    fn into_key(self) -> (String, At) {
        (self, None)
    }
}

// ---------------------------------------------------------------------------
// Writing YAML
// ---------------------------------------------------------------------------

/// `s` as a YAML double-quoted scalar that every YAML 1.2 parser reads
/// back exactly: `"` and `\` escaped, and every character outside YAML's
/// printable set (C0/C1 controls, DEL, U+FEFF, U+FFFE/F) or that some
/// parsers take as a line break (U+0085, U+2028, U+2029) written as an
/// escape. Other non-ASCII text is written as is.
pub fn yaml_quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            ' '..='~' => o.push(c),
            c if (c as u32) < 0xA0
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
                ) =>
            {
                let _ = write!(o, "\\u{:04X}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn yaml_key(k: &str) -> String {
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain { k.to_string() } else { yaml_quote(k) }
}

fn scalar(n: &Node) -> Option<String> {
    if let Some(r) = &n.raw {
        return Some(r.clone());
    }
    Some(match &n.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_nan() => ".nan".into(),
        Value::Float(f) if f.is_infinite() => {
            if *f > 0.0 {
                ".inf".into()
            } else {
                "-.inf".into()
            }
        }
        Value::Float(f) => format!("{f:?}"),
        Value::Str(s) => yaml_quote(s),
        Value::Seq(s) if s.is_empty() => "[]".into(),
        Value::Map(m) if m.is_empty() => "{}".into(),
        _ => return None,
    })
}

/// One step of a path into the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn path_text(path: &[Seg]) -> String {
    let mut o = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !o.is_empty() {
                    o.push('.');
                }
                o.push_str(k);
            }
            Seg::Index(i) => {
                let _ = write!(o, "[{i}]");
            }
        }
    }
    o
}

/// What is on one line of the written YAML: the key there, its path, and
/// where key and value were in the input.
#[derive(Clone, Debug)]
struct LineInfo {
    line: u64,
    path: Vec<Seg>,
    key_at: At,
    value_at: At,
}

struct Emitter {
    out: String,
    line: u64,
    lines: Vec<LineInfo>,
}

impl Emitter {
    fn push_line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
        self.line += 1;
    }

    /// `prefix` + `key:` + the value, then its children.
    fn entry(&mut self, prefix: String, e: &Entry, indent: usize, path: &mut Vec<Seg>) {
        path.push(Seg::Key(e.key.clone()));
        self.lines.push(LineInfo {
            line: self.line + 1,
            path: path.clone(),
            key_at: e.key_at,
            value_at: e.value.at,
        });
        let head = format!("{prefix}{}:", yaml_key(&e.key));
        match scalar(&e.value) {
            Some(s) => self.push_line(&format!("{head} {s}")),
            None => {
                self.push_line(&head);
                self.block(&e.value, indent + 2, path);
            }
        }
        path.pop();
    }

    fn block(&mut self, n: &Node, indent: usize, path: &mut Vec<Seg>) {
        let pad = " ".repeat(indent);
        match &n.value {
            Value::Map(m) => {
                for e in m {
                    self.entry(pad.clone(), e, indent, path);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    if let Some(s) = scalar(item) {
                        self.lines.push(LineInfo {
                            line: self.line + 1,
                            path: path.clone(),
                            key_at: item.at,
                            value_at: item.at,
                        });
                        self.push_line(&format!("{pad}- {s}"));
                    } else if let Value::Map(m) = &item.value {
                        for (j, e) in m.iter().enumerate() {
                            let prefix = if j == 0 {
                                format!("{pad}- ")
                            } else {
                                " ".repeat(indent + 2)
                            };
                            self.entry(prefix, e, indent + 2, path);
                        }
                    } else {
                        self.push_line(&format!("{pad}-"));
                        self.block(item, indent + 2, path);
                    }
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// The tree as YAML text after `header` comment lines, and what is on
/// each line.
fn emit(root: &Node, header: &[String]) -> (String, Vec<LineInfo>) {
    let mut e = Emitter {
        out: String::new(),
        line: 0,
        lines: Vec::new(),
    };
    for h in header {
        e.push_line(&format!("# {h}"));
    }
    e.block(root, 0, &mut Vec::new());
    (e.out, e.lines)
}

fn remove_path(root: &mut Node, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut n = root;
    for s in parents {
        let next = match (s, &mut n.value) {
            (Seg::Key(k), Value::Map(m)) => {
                m.iter_mut().find(|e| &e.key == k).map(|e| &mut e.value)
            }
            (Seg::Index(i), Value::Seq(v)) => v.get_mut(*i),
            _ => None,
        };
        match next {
            Some(x) => n = x,
            None => return false,
        }
    }
    match (last, &mut n.value) {
        (Seg::Key(k), Value::Map(_)) => n.remove(k).is_some(),
        (Seg::Index(i), Value::Seq(v)) if *i < v.len() => {
            v.remove(*i);
            true
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why `migrate` or `rollback` refused or failed; one line each. Unless
/// the write error says otherwise, nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The input cannot be migrated: `FILE[:LINE:COLUMN]: reason`.
    #[error("{0}; nothing changed")]
    Input(String),
    /// Keys the daemon does not know (and `--drop-unknown` was not given).
    #[error(
        "{file}: {} unknown key{}, refused (--drop-unknown drops them): {}; nothing changed",
        keys.len(),
        if keys.len() == 1 { "" } else { "s" },
        keys.join(", ")
    )]
    UnknownKeys {
        /// The input file.
        file: String,
        /// Each key's path and location.
        keys: Vec<String>,
    },
    /// Writing the target failed.
    #[error("{target}: {source}{}", if source.target_unknown { "" } else { "; nothing changed" })]
    Write {
        /// The file being replaced.
        target: String,
        /// The failure.
        source: WriteError,
    },
}

fn located(file: &str, at: At) -> String {
    match at {
        Some((l, c)) => format!("{file}:{l}:{c}"),
        None => file.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Reading the input
// ---------------------------------------------------------------------------

/// Which of the three input shapes a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shape {
    /// A JSON `RTCConfiguration` object.
    RtcConfiguration,
    /// A JSON list of `RTCIceServer`s.
    IceServerList,
    /// A YAML config.
    Yaml,
}

/// Read and parse `path`: size, UTF-8, syntax (with line:column).
fn read_input(fs: &dyn Fs, path: &Path) -> Result<(Shape, Node), MigrateError> {
    let name = path.display().to_string();
    let refuse = |at: At, m: String| MigrateError::Input(format!("{}: {m}", located(&name, at)));
    let bytes = fs
        .read(atomic::Step::ReadTarget, path, MAX_INPUT_BYTES)
        .map_err(|e| match e.kind() {
            io::ErrorKind::FileTooLarge => refuse(
                None,
                format!("larger than {MAX_INPUT_BYTES} bytes (1 MiB), refusing to read it"),
            ),
            _ => refuse(None, format!("cannot read: {e}")),
        })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let col = String::from_utf8_lossy(good.rsplit(|b| *b == b'\n').next().unwrap_or(&[]))
            .chars()
            .count() as u64
            + 1;
        refuse(Some((line, col)), "not UTF-8 text (binary data?)".into())
    })?;
    if let Some(i) = text.find('\0') {
        let line = text[..i].matches('\n').count() as u64 + 1;
        return Err(refuse(
            Some((line, 1)),
            "contains NUL bytes (binary data?)".into(),
        ));
    }
    let trimmed = text.trim_start_matches('\u{FEFF}').trim();
    if trimmed.is_empty() {
        return Err(refuse(None, "empty file, nothing to migrate".into()));
    }
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || trimmed.starts_with('{')
        || trimmed.starts_with('[');
    if is_json {
        let node = serde_json::from_str::<JsonNode>(text)
            .map_err(|e| {
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                let at = (e.line() > 0).then(|| (e.line() as u64, e.column().max(1) as u64));
                refuse(at, format!("invalid JSON: {msg}"))
            })?
            .0;
        let shape = match node.value {
            Value::Map(_) => Shape::RtcConfiguration,
            Value::Seq(_) => Shape::IceServerList,
            _ => {
                return Err(refuse(
                    None,
                    format!(
                        "the JSON is {}, neither an RTCConfiguration object nor an iceServers list",
                        node.kind()
                    ),
                ));
            }
        };
        return Ok((shape, node));
    }
    let mut node = serde_saphyr::from_str::<YamlNode>(text)
        .map_err(|e| {
            let inner = e.without_snippet();
            let at = inner
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| (l.line(), l.column().max(1)));
            use serde_saphyr::MessageFormatter;
            let m = serde_saphyr::UserMessageFormatter.format_message(inner);
            refuse(
                at,
                format!(
                    "invalid YAML: {}",
                    one_line(&crate::config::plain_yaml_message(&m))
                ),
            )
        })?
        .0;
    node.fill_raw(text);
    match node.value {
        Value::Map(_) => Ok((Shape::Yaml, node)),
        Value::Null => Err(refuse(
            None,
            "no configuration in it (only comments?)".into(),
        )),
        _ => Err(refuse(
            node.at,
            format!("the YAML is {}, not a configuration mapping", node.kind()),
        )),
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// ---------------------------------------------------------------------------
// The transformation
// ---------------------------------------------------------------------------

/// Collected while transforming: refusals, unknown keys, notes.
struct Findings<'a> {
    file: &'a str,
    errors: Vec<String>,
    unknown: Vec<(String, At)>,
    notes: Vec<String>,
}

impl Findings<'_> {
    fn error(&mut self, at: At, path: &str, m: impl std::fmt::Display) {
        self.errors
            .push(format!("{}: {path}: {m}", located(self.file, at)));
    }
}

/// STUN and TURN entries, in input order.
#[derive(Default)]
struct Servers {
    stun: Vec<Node>,
    turn: Vec<Node>,
}

impl Servers {
    fn push(&mut self, turn: bool, entry: Node, f: &mut Findings<'_>) {
        let list = if turn { &mut self.turn } else { &mut self.stun };
        if list.iter().any(|e| e.same(&entry)) {
            let url = entry.get("url").and_then(Node::as_str).unwrap_or("");
            f.notes.push(format!("dropped a duplicate entry for {url}"));
        } else {
            list.push(entry);
        }
    }
}

/// The URLs of a `urls` (or `url`) value: a string or a list of strings.
fn url_list<'n>(n: &'n Node, path: &str, f: &mut Findings<'_>) -> Vec<(&'n str, At)> {
    match &n.value {
        Value::Str(s) => vec![(s.as_str(), n.at)],
        Value::Seq(items) if items.is_empty() => {
            f.error(n.at, path, "an empty list of URLs");
            Vec::new()
        }
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, u)| match &u.value {
                Value::Str(s) => Some((s.as_str(), u.at)),
                _ => {
                    f.error(
                        u.at,
                        &format!("{path}[{i}]"),
                        format!("{} is not a URL string", u.kind()),
                    );
                    None
                }
            })
            .collect(),
        _ => {
            f.error(
                n.at,
                path,
                format!("neither a string nor a list of strings ({})", n.kind()),
            );
            Vec::new()
        }
    }
}

/// Whether `url` is a TURN URL; `None` (and an error) when it is not a
/// stun:/stuns:/turn:/turns: URI.
fn classify(url: &str, at: At, path: &str, f: &mut Findings<'_>) -> Option<bool> {
    match IceServerUrl::parse(url) {
        Ok(u) => Some(u.scheme().is_turn()),
        Err(ice_url::Error::UnknownScheme | ice_url::Error::MissingScheme) => {
            f.error(
                at,
                path,
                format!("{url:?}: the scheme must be stun, stuns, turn or turns"),
            );
            None
        }
        Err(e) => {
            f.error(at, path, format!("bad URL {url:?}: {e}"));
            None
        }
    }
}

fn string_or_absent(n: Option<&Node>) -> Option<&Node> {
    n.filter(|v| !matches!(v.value, Value::Null))
}

/// A TURN entry's credentials: both present, non-empty strings.
fn turn_credentials(
    username: Option<&Node>,
    credential: Option<&Node>,
    at: At,
    path: &str,
    url: &str,
    f: &mut Findings<'_>,
) -> Option<(Node, Node)> {
    fn ok(n: Option<&Node>) -> Option<&Node> {
        string_or_absent(n).filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    }
    match (ok(username), ok(credential)) {
        (Some(u), Some(c)) => Some((u.clone(), c.clone())),
        (u, _) => {
            let missing = if u.is_none() {
                "username"
            } else {
                "credential"
            };
            f.error(
                at,
                path,
                format!("TURN server {url:?} without {missing} (TURN needs both username and credential)"),
            );
            None
        }
    }
}

/// One `RTCIceServer` into STUN/TURN entries.
fn ice_server(n: &Node, path: &str, servers: &mut Servers, f: &mut Findings<'_>) {
    let Some(entries) = n.entries() else {
        f.error(
            n.at,
            path,
            format!("{} where an RTCIceServer object belongs", n.kind()),
        );
        return;
    };
    for e in entries {
        if !matches!(
            e.key.as_str(),
            "urls" | "url" | "username" | "credential" | "credentialType"
        ) {
            f.unknown.push((format!("{path}.{}", e.key), e.key_at));
        }
    }
    let urls = match (n.get("urls"), n.get("url")) {
        (Some(u), _) => u,
        (None, Some(u)) => u,
        (None, None) => {
            f.error(n.at, path, "no urls");
            return;
        }
    };
    if let Some(t) = string_or_absent(n.get("credentialType"))
        && t.as_str() != Some("password")
    {
        f.error(
            t.at,
            &format!("{path}.credentialType"),
            "only \"password\" credentials can be migrated",
        );
        return;
    }
    let username = n.get("username");
    let credential = n.get("credential");
    for (url, at) in url_list(urls, &format!("{path}.urls"), f) {
        let Some(turn) = classify(url, at, &format!("{path}.urls"), f) else {
            continue;
        };
        let mut entry = Node::map();
        entry.set("url", Node::str(url));
        if turn {
            let Some((u, c)) = turn_credentials(username, credential, n.at, path, url, f) else {
                continue;
            };
            entry.set("username", u);
            entry.set("credential", c);
        } else if string_or_absent(username).is_some() || string_or_absent(credential).is_some() {
            f.notes.push(format!(
                "{path}: credentials given for STUN URL {url:?} are not carried (STUN needs none)"
            ));
        }
        servers.push(turn, entry, f);
    }
}

/// One entry of an existing `stun_servers`/`turn_servers` list: every
/// `url`/`urls` URL becomes its own entry in the list its scheme belongs
/// to, with the entry's other keys.
fn list_entry(n: &Node, path: &str, servers: &mut Servers, f: &mut Findings<'_>) {
    let Some(entries) = n.entries() else {
        f.error(
            n.at,
            path,
            format!("{} where a server entry belongs", n.kind()),
        );
        return;
    };
    let urls = match (n.get("url"), n.get("urls")) {
        (Some(_), Some(u)) => {
            f.error(u.at, path, "both url and urls");
            return;
        }
        (Some(u), None) | (None, Some(u)) => u,
        (None, None) => {
            f.error(n.at, path, "no url");
            return;
        }
    };
    for (url, at) in url_list(urls, &format!("{path}.url"), f) {
        let Some(turn) = classify(url, at, &format!("{path}.url"), f) else {
            continue;
        };
        let mut entry = Node::located(Value::Map(Vec::new()), n.at);
        entry.set("url", Node::located(Value::Str(url.to_string()), at));
        let mut creds = None;
        if turn {
            match turn_credentials(n.get("username"), n.get("credential"), n.at, path, url, f) {
                Some(c) => creds = Some(c),
                None => continue,
            }
        }
        for e in entries {
            match e.key.as_str() {
                "url" | "urls" => {}
                "username" | "credential" if !turn => {
                    if string_or_absent(Some(&e.value)).is_some() {
                        f.notes.push(format!(
                            "{path}: {} of STUN URL {url:?} not carried (STUN needs none)",
                            e.key
                        ));
                    }
                }
                "username" | "credential" => {
                    let (u, c) = creds
                        .clone()
                        .unwrap_or_else(|| (Node::str(""), Node::str("")));
                    let v = if e.key == "username" { u } else { c };
                    entry.entries_mut().expect("map").push(Entry {
                        key: e.key.clone(),
                        key_at: e.key_at,
                        value: v,
                    });
                }
                _ => entry.entries_mut().expect("map").push(e.clone()),
            }
        }
        servers.push(turn, entry, f);
    }
}

fn list_or_error<'n>(n: &'n Node, path: &str, f: &mut Findings<'_>) -> &'n [Node] {
    match &n.value {
        Value::Seq(v) => v,
        Value::Null => &[],
        _ => {
            f.error(n.at, path, format!("{} where a list belongs", n.kind()));
            &[]
        }
    }
}

/// The browser-only `RTCConfiguration` members: understood, not carried.
const BROWSER_ONLY: [&str; 5] = [
    "bundlePolicy",
    "rtcpMuxPolicy",
    "iceCandidatePoolSize",
    "certificates",
    "peerIdentity",
];

/// Transform the parsed input into the new tree (before the daemon's
/// parser checks its keys).
fn transform(shape: Shape, input: &Node, f: &mut Findings<'_>) -> Node {
    let mut servers = Servers::default();
    let mut root = match shape {
        Shape::Yaml => input.clone(),
        _ => Node::map(),
    };
    match shape {
        Shape::IceServerList => {
            for (i, s) in list_or_error(input, "", f).iter().enumerate() {
                ice_server(s, &format!("iceServers[{i}]"), &mut servers, f);
            }
        }
        Shape::RtcConfiguration => {
            for e in input.entries().map(Vec::as_slice).unwrap_or(&[]) {
                match e.key.as_str() {
                    "iceServers" => {
                        for (i, s) in list_or_error(&e.value, "iceServers", f).iter().enumerate() {
                            ice_server(s, &format!("iceServers[{i}]"), &mut servers, f);
                        }
                    }
                    "iceTransportPolicy" => match e.value.as_str() {
                        Some("all") => {}
                        Some("relay") => f.error(
                            e.value.at,
                            "iceTransportPolicy",
                            "\"relay\" has no equivalent: scream-ice always offers host candidates (write mode: full for TURN everywhere, by hand)",
                        ),
                        _ => f.error(e.value.at, "iceTransportPolicy", "expected \"all\" or \"relay\""),
                    },
                    k if BROWSER_ONLY.contains(&k) => f.notes.push(format!(
                        "{k} is a browser setting with no router equivalent; not carried"
                    )),
                    _ => f.unknown.push((e.key.clone(), e.key_at)),
                }
            }
            if input.get("iceServers").is_none() {
                f.error(
                    None,
                    "iceServers",
                    "missing: this is not an RTCConfiguration",
                );
            }
        }
        Shape::Yaml => {
            if let Some(list) = root.remove("iceServers") {
                for (i, s) in list_or_error(&list.value, "iceServers", f)
                    .iter()
                    .enumerate()
                {
                    ice_server(s, &format!("iceServers[{i}]"), &mut servers, f);
                }
            }
        }
    }
    let Some(webrtc) = root.child_map("webrtc") else {
        f.error(
            input.get("webrtc").and_then(|n| n.at),
            "webrtc",
            "not a mapping",
        );
        return root;
    };
    let webrtc_at = webrtc.at;
    let Some(ice) = webrtc.child_map("ice") else {
        f.error(webrtc_at, "webrtc.ice", "not a mapping");
        return root;
    };
    // Servers already in the YAML lists come first, in order.
    let mut existing = Servers::default();
    for (key, _) in [("stun_servers", false), ("turn_servers", true)] {
        if let Some(list) = ice.get(key) {
            let path = format!("webrtc.ice.{key}");
            for (i, e) in list_or_error(list, &path, f).iter().enumerate() {
                list_entry(e, &format!("{path}[{i}]"), &mut existing, f);
            }
        }
    }
    for s in servers.stun {
        existing.push(false, s, f);
    }
    for t in servers.turn {
        existing.push(true, t, f);
    }
    for (key, what, list) in [
        ("stun_servers", "STUN", &existing.stun),
        ("turn_servers", "TURN", &existing.turn),
    ] {
        if list.len() > MAX_SERVERS {
            f.error(
                ice.get(key).and_then(|n| n.at),
                &format!("webrtc.ice.{key}"),
                format!(
                    "{} {what} servers, more than the {MAX_SERVERS} a config allows",
                    list.len()
                ),
            );
        }
    }

    let legacy_mode_name = ice
        .get("mode")
        .and_then(Node::as_str)
        .is_some_and(|m| m.eq_ignore_ascii_case(IceMode::Legacy.as_str()));
    if ice.get("mode").is_none() || legacy_mode_name {
        ice.set_after("mode", Node::str(IceMode::Auto.as_str()), None);
    }
    ice.set_after("legacy_mode", Node::new(Value::Bool(false)), Some("mode"));
    ice.set_after(
        "local_network_priority",
        Node::new(Value::Bool(true)),
        Some("legacy_mode"),
    );
    let mut after = "local_network_priority";
    for (key, list) in [
        ("stun_servers", existing.stun),
        ("turn_servers", existing.turn),
    ] {
        if ice.get(key).is_some() || !list.is_empty() || shape != Shape::Yaml {
            ice.set_after(key, Node::new(Value::Seq(list)), Some(after));
            after = key;
        }
    }
    if let Some(m) = ice.get_mut("migration")
        && m.get("enable_new_features").is_some()
    {
        m.set("enable_new_features", Node::new(Value::Bool(true)));
    }
    root
}

/// Emit `tree`, let the daemon's parser judge it, and take out (and
/// name) every key it does not know, until it parses or fails for
/// another reason. Returns the text and the unknown keys found.
fn check_with_daemon(
    tree: &mut Node,
    header: &[String],
    file: &str,
    input: &str,
) -> Result<(String, Vec<(String, At)>), MigrateError> {
    let mut unknown = Vec::new();
    loop {
        let (text, lines) = emit(tree, header);
        let errors = match Config::from_yaml(file, &text) {
            Ok(_) => return Ok((text, unknown)),
            Err(e) => e,
        };
        let line_of = |e: &crate::config::LocatedError| match &e.origin {
            crate::config::Origin::File { line, .. } => {
                lines.iter().rev().find(|l| l.line <= *line).cloned()
            }
            _ => None,
        };
        if let [e] = errors.as_slice()
            && e.message.starts_with("unknown field `")
            && let Some(l) = line_of(e)
            && remove_path(tree, &l.path)
        {
            unknown.push((path_text(&l.path), l.key_at));
            continue;
        }
        let msgs: Vec<String> = errors
            .iter()
            .map(|e| match line_of(e) {
                Some(l) => format!(
                    "{}: {}: {}",
                    located(input, l.value_at.or(l.key_at)),
                    path_text(&l.path),
                    e.message
                ),
                None => format!("{input}: {}", e.message),
            })
            .collect();
        return Err(MigrateError::Input(format!(
            "{} (the migrated config would not load)",
            msgs.join("; ")
        )));
    }
}

/// Options of `scream-ice migrate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateOptions {
    /// The legacy file.
    pub input: PathBuf,
    /// Where to write (default: the input for YAML, `.yaml` beside it for JSON).
    pub output: Option<PathBuf>,
    /// Print the result and a diff; touch nothing.
    pub dry_run: bool,
    /// Drop unknown keys instead of refusing.
    pub drop_unknown: bool,
}

/// What `migrate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    /// The file written (or that would be, with `--dry-run`).
    pub target: PathBuf,
    /// The new text.
    pub text: String,
    /// The backup of the old target, if one was replaced.
    pub backup: Option<PathBuf>,
    /// Whether the target changed (false: already migrated, or dry run).
    pub changed: bool,
    /// Things said on the way (dropped keys, browser-only members, ...).
    pub notes: Vec<String>,
}

/// The default target: the input for YAML, the same name with `.yaml`
/// for JSON.
pub fn default_target(input: &Path, shape: Shape) -> PathBuf {
    match shape {
        Shape::Yaml => input.to_path_buf(),
        _ => input.with_extension("yaml"),
    }
}

/// Whether a parsed config holds a TURN credential (the file then gets
/// mode 0600 or stricter).
fn holds_secrets(text: &str) -> bool {
    Config::from_yaml("-", text).is_ok_and(|c| {
        c.ice
            .turn_servers
            .value
            .iter()
            .any(|t| t.credential.is_some())
    })
}

fn daemon_validator(name: String) -> impl Fn(&str) -> Result<(), String> {
    move |t: &str| {
        Config::from_yaml(&name, t).map(|_| ()).map_err(|e| {
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// Run `scream-ice migrate` with `fs`. `out` receives the dry run's text
/// and diff.
pub fn migrate(
    fs: &dyn Fs,
    opts: &MigrateOptions,
    out: &mut dyn Write,
) -> Result<Migrated, MigrateError> {
    let file = opts.input.display().to_string();
    let (shape, input) = read_input(fs, &opts.input)?;
    let target = opts
        .output
        .clone()
        .unwrap_or_else(|| default_target(&opts.input, shape));
    let mut f = Findings {
        file: &file,
        errors: Vec::new(),
        unknown: Vec::new(),
        notes: Vec::new(),
    };
    let mut tree = transform(shape, &input, &mut f);
    if let Some(first) = f.errors.first() {
        let more = match f.errors.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return Err(MigrateError::Input(format!("{first}{more}")));
    }
    let header = vec![format!(
        "scream-ice config written by `scream-ice migrate` from {}",
        opts.input
            .file_name()
            .map_or(file.clone(), |n| n.to_string_lossy().into_owned())
    )];
    let target_name = target.display().to_string();
    let (text, daemon_unknown) = check_with_daemon(&mut tree, &header, &target_name, &file)?;
    let mut unknown = f.unknown;
    unknown.extend(daemon_unknown);
    let mut notes = f.notes;
    if !unknown.is_empty() {
        let keys: Vec<String> = unknown
            .iter()
            .map(|(k, at)| match at {
                Some((l, c)) => format!("{k} ({l}:{c})"),
                None => k.clone(),
            })
            .collect();
        if !opts.drop_unknown {
            return Err(MigrateError::UnknownKeys { file, keys });
        }
        for k in keys {
            notes.push(format!("dropped unknown key {k}"));
        }
    }
    // Nothing to say that the input did not already say: leave it alone
    // (comments included).
    let unchanged = shape == Shape::Yaml && target == opts.input && tree.same(&input);
    let old = match fs.read(atomic::Step::ReadTarget, &target, MAX_INPUT_BYTES) {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(MigrateError::Input(format!(
                "{target_name}: cannot read the target: {e}"
            )));
        }
    };
    let text = if unchanged {
        old.clone().unwrap_or(text)
    } else {
        text
    };
    if opts.dry_run {
        let _ = writeln!(out, "# --dry-run: {target_name} would become:");
        let _ = out.write_all(text.as_bytes());
        let old_text = old.as_deref().unwrap_or("");
        let diff = similar::TextDiff::from_lines(old_text, &text);
        let _ = write!(
            out,
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&target_name, &format!("{target_name} (migrated)"))
        );
        return Ok(Migrated {
            target,
            text,
            backup: None,
            changed: false,
            notes,
        });
    }
    if unchanged {
        return Ok(Migrated {
            target,
            text,
            backup: None,
            changed: false,
            notes,
        });
    }
    let new_file_mode = fs
        .stat(atomic::Step::ReadTarget, &opts.input)
        .ok()
        .flatten()
        .map_or(0o644, |m| m.mode);
    let validate = daemon_validator(target_name.clone());
    let replaced = atomic::replace(
        fs,
        &Replacement {
            target: &target,
            text: &text,
            new_file_mode,
            secret: holds_secrets(&text),
            backup_kind: MIGRATE_BACKUP_KIND,
            validate: &validate,
        },
    )
    .map_err(|source| MigrateError::Write {
        target: target_name.clone(),
        source,
    })?;
    Ok(Migrated {
        target,
        text,
        changed: replaced.is_some(),
        backup: replaced.and_then(|r| r.backup),
        notes,
    })
}

// ---------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------

/// What `scream-ice rollback` did, as the rollout hook sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackEvent {
    /// The config file.
    pub config: PathBuf,
    /// `--reason`.
    pub reason: Option<String>,
    /// The migration backup restored (`--restore-backup`).
    pub restored: Option<PathBuf>,
    /// The backup of the file as it was before the rollback.
    pub backup: Option<PathBuf>,
    /// Whether the file changed (false: it was already legacy).
    pub changed: bool,
}

/// What the rollout hook did with a [`RollbackEvent`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HookOutcome {
    /// No running daemon was told and no webhook was sent: the operator
    /// reloads the daemon (`systemctl reload scream-ice`, or SIGHUP).
    NotConnected,
    /// A running daemon was told (and says so in this line).
    Notified(String),
}

/// The hook `scream-ice rollback` calls after the switch is persisted:
/// it tells a daemon running with that config through its admin API
/// (`POST /api/rollout {"action":"rollback"}`, with the token from
/// `SCREAM_ICE_ADMIN_TOKEN` or the data dir), which puts every client on
/// legacy at once, stores the rolled-back state and calls the rollout's
/// webhooks ([`crate::rollout_cli::notify_daemon_of_rollback`]). With no
/// daemon listening it returns [`HookOutcome::NotConnected`], and the CLI
/// prints how to reload the daemon.
pub fn notify_rollback_hook(event: &RollbackEvent) -> HookOutcome {
    match crate::rollout_cli::notify_daemon_of_rollback(&event.config, event.reason.as_deref()) {
        Some(line) => HookOutcome::Notified(line),
        None => HookOutcome::NotConnected,
    }
}

/// Run `scream-ice rollback`: persist `legacy_mode: true` in `config`
/// (or, with `restore_backup`, put the newest migration backup back),
/// through [`atomic::replace`]. Validated by the daemon's parser.
pub fn rollback(
    fs: &dyn Fs,
    config: &Path,
    reason: Option<&str>,
    restore_backup: bool,
) -> Result<RollbackEvent, MigrateError> {
    let name = config.display().to_string();
    let (text, restored) = if restore_backup {
        let list = atomic::backups(fs, config, MIGRATE_BACKUP_KIND)
            .map_err(|e| MigrateError::Input(format!("{name}: cannot list its directory: {e}")))?;
        let Some(newest) = list.last() else {
            return Err(MigrateError::Input(format!(
                "{name}: no backup made by `scream-ice migrate` beside it (FILE.<timestamp>.migrate.bak)"
            )));
        };
        let bytes = fs
            .read(atomic::Step::ReadTarget, newest, MAX_INPUT_BYTES)
            .map_err(|e| MigrateError::Input(format!("{}: cannot read: {e}", newest.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| MigrateError::Input(format!("{}: not UTF-8 text", newest.display())))?;
        (text, Some(newest.clone()))
    } else {
        let (shape, mut tree) = read_input(fs, config)?;
        if shape != Shape::Yaml {
            return Err(MigrateError::Input(format!(
                "{name}: not a YAML config (rollback edits the daemon's config file)"
            )));
        }
        let original = tree.clone();
        let Some(ice) = tree.child_map("webrtc").and_then(|w| w.child_map("ice")) else {
            return Err(MigrateError::Input(format!(
                "{name}: webrtc.ice is not a mapping"
            )));
        };
        ice.set("legacy_mode", Node::new(Value::Bool(true)));
        if tree.same(&original) {
            let text = String::from_utf8_lossy(
                &fs.read(atomic::Step::ReadTarget, config, MAX_INPUT_BYTES)
                    .unwrap_or_default(),
            )
            .into_owned();
            (text, None)
        } else {
            let header = vec![
                "scream-ice config: legacy ICE switched on by `scream-ice rollback`".to_string(),
            ];
            let (text, _) = emit(&tree, &header);
            (text, None)
        }
    };
    let validate = daemon_validator(name.clone());
    if let Err(m) = validate(&text) {
        return Err(MigrateError::Input(format!(
            "the rolled-back config would not load: {m}"
        )));
    }
    let replaced = atomic::replace(
        fs,
        &Replacement {
            target: config,
            text: &text,
            new_file_mode: 0o644,
            secret: holds_secrets(&text),
            backup_kind: ROLLBACK_BACKUP_KIND,
            validate: &validate,
        },
    )
    .map_err(|source| MigrateError::Write {
        target: name,
        source,
    })?;
    Ok(RollbackEvent {
        config: config.to_path_buf(),
        reason: reason.map(str::to_string),
        restored,
        changed: replaced.is_some(),
        backup: replaced.and_then(|r| r.backup),
    })
}

// ---------------------------------------------------------------------------
// Migration events (webrtc.ice.migration.log_migration_events)
// ---------------------------------------------------------------------------

/// The log target of migration events.
pub const EVENT_TARGET: &str = "scream_ice::migration";

/// The seed's `logMigrationMetrics('ice_config_used', {mode, servers})`:
/// one info line per ICE configuration handed out, when
/// `log_migration_events` is on.
pub fn log_ice_config_used(config: &Config, client: IpAddr, servers: usize) {
    let mode = if config.ice.mode_in_force() == IceMode::Legacy {
        "legacy"
    } else {
        "smart"
    };
    tracing::info!(
        target: EVENT_TARGET,
        "migration event: ice_config_used mode={mode} ice_mode={} client={client} servers={servers}",
        config.ice.mode_in_force()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        let mut n = serde_saphyr::from_str::<YamlNode>(text).unwrap().0;
        n.fill_raw(text);
        n
    }

    /// Any tree the parser gives is written back as YAML that parses to
    /// the same tree, and writing that again gives the same text.
    #[test]
    fn the_emitter_round_trips_every_kind_of_node() {
        let text = "\
plain: word
quoted: \"a: b # c\"
empty_str: \"\"
'weird key': 1
\"true\": key that looks like a bool
n: null
tilde: ~
yes_plain: yes
hex: 0x1F
float: 1.5
exp: 1e3
neg: -7
big: 170141183460469231731687303715884105727
list: [1, \"two\", [3, 4], {five: 5}, [], {}]
nested:
  - - a
    - b
  - k: v
    deeper:
      - x: 1
        y: [z]
anchor: &a {one: 1}
alias: *a
ctl: \"tab\\tbell\\u0007del\\u007fnel\\u0085\"
";
        let tree = parse(text);
        let (out, lines) = emit(&tree, &["header".to_string()]);
        let back = parse(&out);
        assert!(back.same(&tree), "{out}");
        let (again, _) = emit(&back, &["header".to_string()]);
        assert_eq!(again, out);
        // Plain non-string scalars keep their text.
        for kept in [
            "yes_plain: yes\n",
            "hex: 0x1F\n",
            "exp: 1e3\n",
            "tilde: ~\n",
        ] {
            assert!(out.contains(kept), "{kept:?} in\n{out}");
        }
        // The alias is written out as its value, not as `*a`.
        assert!(out.contains("alias:\n  one: 1\n"), "{out}");
        // Every key's line is known, with its input location.
        let quoted_key = lines
            .iter()
            .find(|l| path_text(&l.path) == "weird key")
            .unwrap();
        assert_eq!(quoted_key.line, 5);
        assert_eq!(quoted_key.key_at, Some((4, 1)));
        let deep = lines
            .iter()
            .find(|l| path_text(&l.path) == "nested[1].deeper[0].y")
            .unwrap();
        // `y` is a YAML 1.1 boolean, so it is written quoted.
        assert_eq!(
            out.lines().nth(deep.line as usize - 1),
            Some("        \"y\":")
        );
    }

    #[test]
    fn paths_can_be_removed() {
        let mut t = parse("a:\n  b: [1, 2, 3]\n  c: 4\n");
        assert!(remove_path(
            &mut t,
            &[Seg::Key("a".into()), Seg::Key("b".into()), Seg::Index(1)]
        ));
        assert!(remove_path(
            &mut t,
            &[Seg::Key("a".into()), Seg::Key("c".into())]
        ));
        assert!(!remove_path(
            &mut t,
            &[Seg::Key("a".into()), Seg::Key("zz".into())]
        ));
        assert!(!remove_path(&mut t, &[Seg::Key("a".into()), Seg::Index(0)]));
        assert!(!remove_path(&mut t, &[]));
        assert!(t.same(&parse("a:\n  b: [1, 3]\n")));
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(yaml_key("stun_servers"), "stun_servers");
        assert_eq!(yaml_key("local-only"), "local-only");
        for k in ["on", "Yes", "null", "a b", "1st", "", "x:y"] {
            assert_eq!(yaml_key(k), yaml_quote(k), "{k:?}");
        }
    }
}
