//! End-to-end: a weak user-chosen secret is warned about in one line on stderr, naming the
//! online-guessing rate SECURITY.md gives; strong and generated secrets are not; the
//! generated secret has protocol 2's default form (SPEC.md §4).

mod support;

use std::time::Duration;

use support::NodeProc;

const WEAK: &str = "this secret is weak";

/// Starts a node with `args` (mDNS off, loopback), waits for its banner, exits, and returns
/// its stdout and stderr.
fn short_run(args: &[&str], env: &[(&str, &str)]) -> (Vec<String>, Vec<String>) {
    let mut all = vec!["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"];
    all.extend_from_slice(args);
    let mut n = NodeProc::start_env("Solo", &all, env);
    n.expect_contains("Connection Information");
    n.send("exit");
    assert!(n.wait_exit(Duration::from_secs(10)).success());
    let out = n.seen.clone();
    (out, n.stderr_to_end())
}

fn warnings(err: &[String]) -> Vec<&String> {
    err.iter().filter(|l| l.contains(WEAK)).collect()
}

#[test]
fn a_weak_secret_is_warned_about_in_one_line_with_the_guessing_rate() {
    for weak in ["1234", "password1", "aaaaaaaa"] {
        let (_, err) = short_run(&["--secret", weak], &[]);
        let w = warnings(&err);
        assert_eq!(w.len(), 1, "{weak}: {err:?}");
        assert!(w[0].starts_with("noctua: warning: "), "{err:?}");
        assert!(w[0].contains("600 guesses an hour"), "{err:?}");
        assert!(w[0].contains("SECURITY.md"), "{err:?}");
        assert!(
            !w[0].contains(weak),
            "the warning repeats the secret: {err:?}"
        );
    }
    // Through the environment too: weakness does not depend on where the secret came from.
    let (_, err) = short_run(&[], &[("NOCTUA_SECRET", "1234")]);
    assert_eq!(warnings(&err).len(), 1, "{err:?}");
}

#[test]
fn strong_and_generated_secrets_get_no_warning() {
    let (_, err) = short_run(&["--secret", "correct-horse-battery-staple"], &[]);
    assert!(warnings(&err).is_empty(), "{err:?}");
    let (out, err) = short_run(&[], &[]);
    assert!(warnings(&err).is_empty(), "{err:?}");
    // The generated secret: 12 Crockford base32 characters in three groups of four.
    let line = out
        .iter()
        .find(|l| l.starts_with("Secret: "))
        .expect("the banner shows the secret");
    let secret = line.trim_start_matches("Secret: ");
    let groups: Vec<&str> = secret.split('-').collect();
    assert_eq!(groups.len(), 3, "{secret}");
    assert!(
        groups.iter().all(|g| g.len() == 4
            && g.bytes()
                .all(|c| b"0123456789abcdefghjkmnpqrstvwxyz".contains(&c))),
        "{secret}"
    );
}
