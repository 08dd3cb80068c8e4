//! The docs cannot drift from the CLI: every `scream-ice ...` command in a
//! fenced code block of README.md and docs/*.md (and `cargo run -p
//! scream-ice-host -- ...`, and the systemd unit's `ExecStart`) is parsed
//! by the real clap `Cli`, so a renamed subcommand or flag fails here. The
//! unit itself is checked with `systemd-analyze verify`.

use std::path::{Path, PathBuf};

use clap::Parser;
use scream_ice_host::cli::Cli;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Split one shell command line into words: quotes and backslashes as the
/// shell reads them; the command ends at an unquoted `#` comment, `|`,
/// `;`, `&&`, `>` or `<`.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        _ => cur.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '#' if !in_word => break,
            '|' | ';' | '>' | '<' => break,
            '&' if chars.peek() == Some(&'&') => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The `scream-ice` arguments of one shell line, if it runs scream-ice.
fn scream_ice_args(line: &str) -> Option<Vec<String>> {
    let mut w = shell_words(line.trim_start_matches("$ "));
    // Leading `sudo` and `VAR=value` assignments.
    while let Some(first) = w.first() {
        if first == "sudo" || (first.contains('=') && !first.starts_with('-')) {
            w.remove(0);
        } else {
            break;
        }
    }
    let first = w.first()?;
    if first == "scream-ice" || first.ends_with("/scream-ice") {
        return Some(w[1..].to_vec());
    }
    if first == "cargo" && w.iter().any(|a| a == "run") && w.iter().any(|a| a == "scream-ice-host")
    {
        let dd = w.iter().position(|a| a == "--")?;
        return Some(w[dd + 1..].to_vec());
    }
    None
}

/// Every command in the fenced code blocks of `text`, with its line.
fn commands_in(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        if pending.is_empty() {
            start = i + 1;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        if let Some(args) = scream_ice_args(&pending) {
            out.push((start, args));
        }
        pending.clear();
    }
    out
}

fn doc_files() -> Vec<PathBuf> {
    let mut v = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

#[test]
fn the_tokenizer_reads_shell_lines() {
    assert_eq!(
        shell_words(
            r#"scream-ice rollback --reason "high \"failure\" rate" --config 'a b'  # why"#
        ),
        [
            "scream-ice",
            "rollback",
            "--reason",
            "high \"failure\" rate",
            "--config",
            "a b"
        ]
    );
    assert_eq!(
        shell_words("scream-ice config show | grep x"),
        ["scream-ice", "config", "show"]
    );
    assert_eq!(
        scream_ice_args("sudo SCREAMROUTER_ICE_MODE=auto scream-ice serve && echo"),
        Some(vec!["serve".to_string()])
    );
    assert_eq!(
        scream_ice_args("cargo run -q -p scream-ice-host -- stun probe 127.0.0.1:3478"),
        Some(vec![
            "stun".to_string(),
            "probe".to_string(),
            "127.0.0.1:3478".to_string()
        ])
    );
    assert_eq!(
        scream_ice_args("curl -s http://x/api # scream-ice serve"),
        None
    );
    let found = commands_in("text\n```sh\nscream-ice migrate a.json \\\n  --dry-run\n```\n");
    assert_eq!(
        found,
        [(
            3,
            vec!["migrate".into(), "a.json".into(), "--dry-run".into()]
        )]
    );
}

#[test]
fn every_documented_command_parses_with_the_real_cli() {
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut count = 0;
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, args) in commands_in(&text) {
            count += 1;
            let argv = std::iter::once("scream-ice".to_string()).chain(args.iter().cloned());
            match Cli::try_parse_from(argv) {
                Ok(_) => {
                    let sub: Vec<&str> = args
                        .iter()
                        .take_while(|a| !a.starts_with('-'))
                        .take(2)
                        .map(String::as_str)
                        .collect();
                    seen.insert(match sub.first() {
                        Some(&("config" | "stun")) => sub.join(" "),
                        Some(s) => s.to_string(),
                        None => String::new(),
                    });
                }
                Err(e) => failures.push(format!(
                    "{}:{line}: scream-ice {}: {}",
                    file.display(),
                    args.join(" "),
                    e.to_string().lines().next().unwrap_or("")
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(count >= 40, "only {count} commands found in the docs");
    for sub in [
        "serve",
        "config check",
        "config show",
        "migrate",
        "rollback",
        "connect",
        "stun probe",
    ] {
        assert!(
            seen.contains(sub),
            "no documented `scream-ice {sub}` ({seen:?})"
        );
    }
}

#[test]
fn the_systemd_unit_runs_a_command_that_parses() {
    let unit = std::fs::read_to_string(repo().join("deploy/scream-ice.service")).unwrap();
    let get =
        |key: &str| -> Vec<&str> { unit.lines().filter_map(|l| l.strip_prefix(key)).collect() };
    let exec = get("ExecStart=");
    assert_eq!(exec.len(), 1);
    let args = scream_ice_args(exec[0]).expect("ExecStart runs scream-ice");
    let argv = std::iter::once("scream-ice".to_string()).chain(args);
    Cli::try_parse_from(argv).unwrap();
    assert_eq!(get("ExecReload="), ["/bin/kill -HUP $MAINPID"]);
    for line in [
        "DynamicUser=yes",
        "StateDirectory=scream-ice",
        "ProtectSystem=strict",
    ] {
        assert!(unit.lines().any(|l| l == line), "no {line}");
    }
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(out) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("SCREAM_ICE_SKIP_PEERS").is_some(),
            "systemd-analyze not found: install systemd (or set SCREAM_ICE_SKIP_PEERS=1)"
        );
        return;
    };
    assert!(out.status.success());
    // verify needs the ExecStart binary to exist: point it at the one
    // cargo built; every other line is checked as written.
    let unit = std::fs::read_to_string(repo().join("deploy/scream-ice.service"))
        .unwrap()
        .replace(
            "/usr/local/bin/scream-ice",
            env!("CARGO_BIN_EXE_scream-ice"),
        );
    let dir = std::env::temp_dir().join(format!("scream-ice-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scream-ice.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{msg}");
    assert!(
        !msg.contains("scream-ice.service"),
        "systemd-analyze has something to say about the unit: {msg}"
    );
}
