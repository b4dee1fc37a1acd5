//! Piped scripts: the node driven line by line from stdin (piped terminal input, or
//! headless mode).

use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot};

use crate::face::commands::{Hint, Line, parse};
use crate::face::shutdown_signal;
use crate::node::{Command, Request};

/// What the script driver could not hand to the node, for the face to show.
pub(crate) enum Unhandled<'a> {
    /// A line that is not a valid command (the input and a one-line hint).
    Hint(&'a str, Hint),
    /// `help`.
    Help,
    /// Reading the input failed.
    ReadError(std::io::Error),
}

/// Drives the node from a script on stdin: each command is carried out before the next
/// line is read, so that a script's `connect` finishes before its first message is sent.
/// At the end of input the node is told to wait for receipts (and connects) and leave;
/// `exit`, SIGINT, SIGTERM and SIGHUP make it leave after waiting briefly for receipts.
pub(crate) async fn drive_from_stdin(
    requests: &mpsc::Sender<Request>,
    mut unhandled: impl FnMut(Unhandled<'_>),
) {
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut lines = stdin.lines();
    let mut last = Command::Finish;
    // One signal future for the whole run: a signal that arrives while a command is being
    // carried out (a slow `connect`) must not be missed.
    let mut signal = std::pin::pin!(shutdown_signal());
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = &mut signal => { last = Command::Exit; break; }
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                unhandled(Unhandled::ReadError(e));
                break;
            }
        };
        match parse(&line) {
            Err(hint) => unhandled(Unhandled::Hint(&line, hint)),
            Ok(Line::Empty | Line::Clear) => {}
            Ok(Line::Help) => unhandled(Unhandled::Help),
            Ok(Line::Exit) => {
                last = Command::Exit;
                break;
            }
            Ok(Line::Command(command)) => {
                let (tx, rx) = oneshot::channel();
                let req = Request {
                    command,
                    done: Some(tx),
                };
                if requests.send(req).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = rx => {}
                    _ = &mut signal => { last = Command::Exit; break; }
                }
            }
        }
    }
    let _ = requests.send(Request::new(last)).await;
}
