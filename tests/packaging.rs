//! What a command-line user expects of an installed `noctua` (issue 14): `--version` with
//! the protocol, shell completions and a man page generated from the flags, the config
//! file (precedence and errors), and a small release binary that keeps its symbols.
//!
//! `cargo install --locked --path .` into a temporary root is checked by `.ci/run` on the
//! clean clone, not here: it builds the release binary again (minutes of fat LTO unless it
//! shares CI's target directory), which a `cargo test` on a developer's machine should not
//! pay for, and a cargo inside a cargo test would contend for the same build directory.
//!
//! Nodes run headless on loopback with mDNS off; the port test runs in a network namespace
//! of its own, since the port applies to every interface.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{NodeProc, bin, ip, netns_or_skip};

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("noctua-packaging-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary to its end with `args`, stdin closed, no config file of the user's
/// (`XDG_CONFIG_HOME` points at `xdg`), and returns its output.
fn run(args: &[&str], xdg: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .env("XDG_CONFIG_HOME", xdg)
        .env_remove("NOCTUA_CONFIG")
        .env_remove("NOCTUA_SECRET")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run noctua")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `tool` can be run here; when it cannot, the caller skips with a line saying so,
/// unless `NOCTUA_REQUIRE_SHELLS=1` (CI installs zsh and fish) makes that a failure.
fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("NOCTUA_REQUIRE_SHELLS").as_deref() != Ok("1"),
            "{test}: NOCTUA_REQUIRE_SHELLS=1 but {tool} cannot be run"
        );
        eprintln!("SKIPPED {test}: {tool} is not installed");
    }
    ok
}

#[test]
fn version_says_the_version_and_the_protocol_from_the_chat_crate() {
    let tmp = TempDir::new("version");
    let out = run(&["--version"], &tmp.0);
    assert!(out.status.success(), "{}", stderr(&out));
    let want = format!(
        "noctua {} (protocol {})\n",
        env!("CARGO_PKG_VERSION"),
        noctua_chat::PROTOCOL.as_ref()
    );
    assert_eq!(stdout(&out), want);
    assert!(want.contains("/noctua/chat/"), "{want}");
}

/// The completion script for `shell`, checked to be non-empty and to know the real
/// subcommands and flags.
fn completions(shell: &str, tmp: &TempDir) -> PathBuf {
    let out = run(&["completions", shell], &tmp.0);
    assert!(out.status.success(), "{shell}: {}", stderr(&out));
    let script = stdout(&out);
    for word in ["completions", "man", "lab"] {
        assert!(script.contains(word), "{shell} completions lack {word}");
    }
    for flag in ["config", "no-config", "rotate-every", "profile"] {
        // fish names a long flag `-l NAME`.
        let word = match shell {
            "fish" => format!("-l {flag}"),
            _ => format!("--{flag}"),
        };
        assert!(script.contains(&word), "{shell} completions lack {word}");
    }
    tmp.write(&format!("noctua.{shell}"), &script)
}

#[test]
fn bash_completions_parse_and_complete_subcommands_and_flags() {
    let tmp = TempDir::new("bash");
    let script = completions("bash", &tmp);
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(syntax.status.success(), "bash -n: {}", stderr(&syntax));
    // Complete `noctua comp` and `noctua --rot` as bash would on Tab.
    let complete = |words: &str| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _noctua noctua \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = Command::new("bash")
            .args(["-c", &program])
            .output()
            .expect("bash");
        assert!(out.status.success(), "{words}: {}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(complete("noctua comp").trim(), "completions");
    let rot = complete("noctua --rot");
    assert_eq!(
        rot.lines().collect::<Vec<_>>(),
        ["--rotate-every", "--rotate-after"]
    );
    assert!(complete("noctua completions z").contains("zsh"));
}

#[test]
fn zsh_completions_parse() {
    let test = "zsh_completions_parse";
    let tmp = TempDir::new("zsh");
    let script = completions("zsh", &tmp);
    assert!(
        std::fs::read_to_string(&script)
            .expect("read")
            .starts_with("#compdef noctua"),
        "zsh loads it from fpath by its first line"
    );
    if !have("zsh", test) {
        return;
    }
    let out = Command::new("zsh")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("zsh");
    assert!(out.status.success(), "zsh -n: {}", stderr(&out));
}

#[test]
fn fish_completions_complete_subcommands_and_flags() {
    let test = "fish_completions_complete_subcommands_and_flags";
    let tmp = TempDir::new("fish");
    let script = completions("fish", &tmp);
    if !have("fish", test) {
        return;
    }
    let program = format!(
        "source {}; complete -C 'noctua comp'; complete -C 'noctua --no-c'",
        script.display()
    );
    let out = Command::new("fish")
        .args(["--no-config", "-c", &program])
        .output()
        .expect("fish");
    assert!(out.status.success(), "fish: {}", stderr(&out));
    let got = stdout(&out);
    let firsts: Vec<&str> = got.lines().filter_map(|l| l.split('\t').next()).collect();
    assert_eq!(firsts, ["completions", "--no-config"], "{got}");
}

#[test]
fn the_man_page_is_roff_and_documents_the_flags_and_subcommands() {
    let tmp = TempDir::new("man");
    let out = run(&["man"], &tmp.0);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(
        page.contains(".TH noctua 1"),
        "a section 1 page: {page:.200}"
    );
    // roff escapes the dashes of flags.
    for word in [
        r"\-\-config",
        r"\-\-no\-config",
        r"\-\-rotate\-every",
        "completions",
        "lab",
        "Exit status",
    ] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
}

/// Starts a headless node on loopback with `args` plus mDNS off, the user's config
/// directory being `xdg`, and returns its `ready` event's name.
fn ready_name(xdg: &Path, args: &[&str]) -> String {
    let xdg = xdg.to_str().expect("UTF-8 path");
    let mut all = vec![
        "--headless",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ];
    all.extend_from_slice(args);
    let mut node = NodeProc::start_env("config", &all, &[("XDG_CONFIG_HOME", xdg)]);
    let ready = node.expect("the ready event", |l| l.contains(r#""event":"ready""#));
    let event: serde_json::Value = serde_json::from_str(&ready).expect("JSON");
    node.close_stdin();
    assert!(node.wait_exit(Duration::from_secs(20)).success());
    event["name"].as_str().expect("a name").to_string()
}

#[test]
fn the_default_config_file_sets_defaults_and_flags_win() {
    let tmp = TempDir::new("default");
    tmp.write("noctua/config.toml", "# mine\nid = \"from-file\"\n");
    assert_eq!(ready_name(&tmp.0, &[]), "from-file");
    assert_eq!(ready_name(&tmp.0, &["--id", "from-flag"]), "from-flag");
    assert!(
        ready_name(&tmp.0, &["--no-config"]).starts_with("Peer_"),
        "--no-config reads no file"
    );
}

#[test]
fn a_missing_default_config_file_is_fine_and_a_missing_explicit_one_is_an_error() {
    let tmp = TempDir::new("missing");
    assert!(ready_name(&tmp.0, &[]).starts_with("Peer_"));

    let missing = tmp.0.join("nope.toml");
    let missing = missing.to_str().expect("UTF-8 path");
    let out = run(&["--config", missing, "--no-mdns", "--headless"], &tmp.0);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("noctua: cannot read config file {missing}: ")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty(), "nothing started");
}

#[test]
fn an_unknown_key_or_bad_value_is_one_line_naming_file_and_line_exit_2() {
    let tmp = TempDir::new("errors");
    for (text, want) in [
        (
            "id = \"alice\"\n\ncolour = \"blue\"\n",
            "line 3: unknown key \"colour\"",
        ),
        ("port = 70000\n", "line 1: port: expected a port number"),
        (
            "id = \"a\"\nrotate-every = \"30\"\n",
            "line 2: rotate-every: \"30\" needs a unit",
        ),
        ("port = \n", "line 1: "),
    ] {
        let path = tmp.write("config.toml", text);
        let shown = path.to_str().expect("UTF-8 path");
        // Through NOCTUA_CONFIG as well as --config.
        let by_flag = run(&["--config", shown, "--no-mdns", "--headless"], &tmp.0);
        let by_env = Command::new(bin())
            .args(["--no-mdns", "--headless"])
            .env("NOCTUA_CONFIG", shown)
            .env("XDG_CONFIG_HOME", &tmp.0)
            .stdin(Stdio::null())
            .output()
            .expect("run noctua");
        for out in [by_flag, by_env] {
            assert_eq!(out.status.code(), Some(2), "{text:?}");
            let err = stderr(&out);
            assert!(
                err.starts_with(&format!("noctua: {shown} {want}")),
                "{text:?}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(out.stdout.is_empty(), "nothing started");
        }
    }
}

#[test]
fn the_file_sets_the_port_and_the_flag_overrides_it() {
    let test = "the_file_sets_the_port_and_the_flag_overrides_it";
    if !netns_or_skip(test) {
        return;
    }
    // The port applies to every interface: only in a namespace of our own.
    let ns = format!("pack-cfg-{}", std::process::id());
    ip(&["netns", "add", &ns]);
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = Netns(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    let tmp = TempDir::new("port");
    let path = tmp.write("config.toml", "port = 4555\n");
    let path = path.to_str().expect("UTF-8 path");
    let port_of = |extra: &[&str]| {
        let mut args = vec!["--headless", "--no-mdns", "--config", path];
        args.extend_from_slice(extra);
        let mut node = NodeProc::start_in_netns("port", &ns, &args);
        let ready = node.expect("the ready event", |l| l.contains(r#""event":"ready""#));
        let event: serde_json::Value = serde_json::from_str(&ready).expect("JSON");
        let listen: Vec<String> = event["listen"]
            .as_array()
            .expect("listen")
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        node.close_stdin();
        assert!(node.wait_exit(Duration::from_secs(20)).success());
        listen
    };
    let from_file = port_of(&[]);
    assert!(
        !from_file.is_empty() && from_file.iter().all(|a| a.contains("/4555")),
        "{from_file:?}"
    );
    let from_flag = port_of(&["--port", "4556"]);
    assert!(
        !from_flag.is_empty() && from_flag.iter().all(|a| a.contains("/4556")),
        "{from_flag:?}"
    );
}

/// The release binary CI builds (and the bench uses): small, and with its symbol table, so
/// that a panic's backtrace names functions. Skipped without it unless
/// `NOCTUA_REQUIRE_RELEASE_BIN=1`.
#[test]
fn the_release_binary_is_small_and_keeps_its_symbols() {
    let test = "the_release_binary_is_small_and_keeps_its_symbols";
    // <target>/<profile>/noctua -> <target>/release/noctua
    let release = Path::new(bin())
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("release").join("noctua"))
        .expect("a target directory");
    if !release.is_file() {
        assert!(
            std::env::var_os("NOCTUA_REQUIRE_RELEASE_BIN").is_none(),
            "NOCTUA_REQUIRE_RELEASE_BIN is set but {} is missing",
            release.display()
        );
        eprintln!("SKIPPED {test}: no {}", release.display());
        return;
    }
    let size = std::fs::metadata(&release).expect("metadata").len();
    // 65 MB with line tables; 16.5 MB without (README, "Binary size").
    assert!(
        size < 25_000_000,
        "{} is {size} bytes: debug info is back in the release profile?",
        release.display()
    );
    let sections = Command::new("readelf")
        .args(["-S", "-W"])
        .arg(&release)
        .output();
    let Ok(sections) = sections else {
        eprintln!("SKIPPED the symbol check of {test}: readelf is not installed");
        return;
    };
    let sections = stdout(&sections);
    assert!(
        sections.contains(".symtab"),
        "no symbol table: backtraces would show only addresses"
    );
    assert!(
        !sections.contains(".debug_line"),
        "line tables are still in the binary"
    );
}
