//! The terminal face: an interactive line editor when stdin is a terminal (incoming lines
//! are printed above the prompt, never through a half-typed line), or plain line-by-line
//! reading when input is piped (each command is carried out before the next is read; at
//! end of input, what was sent is confirmed before leaving).

use std::io::{IsTerminal, Write};

use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Editor, ExternalPrinter};
use tokio::sync::mpsc;

use crate::face::commands::{self, Line};
use crate::face::complete::{PeerNames, TabCompletion};
use crate::face::render::{Palette, Renderer};
use crate::face::script::{self, Unhandled};
use crate::face::{Tally, shutdown_signal};
use crate::node::{Command, Output, Request};

/// Runs the terminal face until the node stops.
pub async fn run(
    ready: Output,
    requests: mpsc::Sender<Request>,
    outputs: mpsc::Receiver<Output>,
) -> std::io::Result<Tally> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let palette = Palette::detect(std::io::stdout().is_terminal());
    let mut renderer = Renderer::new(palette);
    print_lines(&renderer.render(&ready));
    if interactive {
        // A person at the keyboard saw what failed; the exit status is for scripts.
        interactive_face(renderer, requests, outputs)
            .await
            .map(|()| Tally::default())
    } else {
        piped_face(renderer, requests, outputs).await
    }
}

fn print_lines(lines: &[String]) {
    let mut out = std::io::stdout().lock();
    for l in lines {
        // A closed stdout (e.g. `| head`) must not crash the node mid-conversation.
        let _ = writeln!(out, "{l}");
    }
    let _ = out.flush();
}

async fn piped_face(
    mut renderer: Renderer,
    requests: mpsc::Sender<Request>,
    mut outputs: mpsc::Receiver<Output>,
) -> std::io::Result<Tally> {
    // Print everything the node says while input is being read.
    let printer = tokio::spawn(async move {
        let mut tally = Tally::default();
        while let Some(o) = outputs.recv().await {
            let stopped = matches!(o, Output::Stopped);
            tally.count(&o);
            print_lines(&renderer.render(&o));
            if stopped {
                break;
            }
        }
        tally
    });
    let help = Renderer::new(Palette::plain()).help();
    let mut refused = 0;
    script::drive_from_stdin(&requests, |u| match u {
        Unhandled::Hint(_, hint) => {
            refused += 1;
            print_lines(&[format!("[!] {hint}")])
        }
        Unhandled::Help => print_lines(std::slice::from_ref(&help)),
        Unhandled::ReadError(e) => print_lines(&[format!("[!] cannot read input: {e}")]),
    })
    .await;
    let mut tally = printer.await.unwrap_or_default();
    for _ in 0..refused {
        tally.refused_line();
    }
    Ok(tally)
}

async fn interactive_face(
    mut renderer: Renderer,
    requests: mpsc::Sender<Request>,
    mut outputs: mpsc::Receiver<Output>,
) -> std::io::Result<()> {
    let terminal_modes = TerminalModes::save();
    let exit_requests = requests.clone();
    let names = PeerNames::default();
    let mut editor: Editor<TabCompletion, DefaultHistory> =
        Editor::new().map_err(std::io::Error::other)?;
    editor.set_helper(Some(TabCompletion {
        names: names.clone(),
    }));
    let mut printer = editor
        .create_external_printer()
        .map_err(std::io::Error::other)?;
    let help = renderer.help();
    let palette = renderer.palette();
    let prompt = if palette.is_color() {
        "\u{1b}[36m>\u{1b}[0m ".to_string()
    } else {
        "> ".to_string()
    };
    // The editor blocks: it gets its own thread, and talks to the node through the same
    // bounded channel as every other face.
    let editor_thread = std::thread::Builder::new()
        .name("noctua-editor".into())
        .spawn(move || {
            let mut command = Command::Exit;
            loop {
                match editor.readline(&prompt) {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            let _ = editor.add_history_entry(line.as_str());
                        }
                        match commands::parse(&line) {
                            Err(hint) => println!("{}", palette.red(&format!("[!] {hint}"))),
                            Ok(Line::Empty) => {}
                            Ok(Line::Clear) => {
                                let _ = editor.clear_screen();
                            }
                            Ok(Line::Help) => println!("{help}"),
                            Ok(Line::Exit) => break,
                            Ok(Line::Command(command)) => {
                                if requests.blocking_send(Request::new(command)).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    // Ctrl-C and Ctrl-D leave cleanly, like `exit`.
                    Err(ReadlineError::Interrupted) | Err(ReadlineError::Eof) => break,
                    Err(e) => {
                        println!("[!] terminal error: {e}");
                        command = Command::Exit;
                        break;
                    }
                }
            }
            let _ = requests.blocking_send(Request::new(command));
        })?;
    // SIGTERM, SIGHUP (the window was closed) and SIGINT leave as `exit` does: receipts
    // are awaited (briefly) and peers get a goodbye.
    let mut signalled = false;
    let mut signal = std::pin::pin!(shutdown_signal());
    loop {
        let o = tokio::select! {
            o = outputs.recv() => o,
            _ = &mut signal, if !signalled => {
                signalled = true;
                let _ = exit_requests.send(Request::new(Command::Exit)).await;
                continue;
            }
        };
        let Some(o) = o else { break };
        let stopped = matches!(o, Output::Stopped);
        match &o {
            Output::SessionEstablished { name, .. } => names.add(name),
            Output::SessionClosed { name, .. } => names.remove(name),
            _ => {}
        }
        let lines = renderer.render(&o);
        if !lines.is_empty() {
            // Printed above the prompt; the half-typed line is redrawn below.
            let _ = printer.print(lines.join("\n") + "\n");
        }
        if stopped {
            break;
        }
    }
    if signalled {
        // The editor thread is still waiting for a key, with the terminal in raw mode: put
        // the terminal back as it was and leave without it.
        terminal_modes.restore();
        let _ = writeln!(std::io::stdout(), "\u{1b}[?2004l");
    } else {
        let _ = editor_thread.join();
    }
    Ok(())
}

/// The terminal's modes as they were before the line editor changed them.
struct TerminalModes {
    #[cfg(unix)]
    saved: Option<nix::sys::termios::Termios>,
}

impl TerminalModes {
    fn save() -> Self {
        TerminalModes {
            #[cfg(unix)]
            saved: nix::sys::termios::tcgetattr(std::io::stdin()).ok(),
        }
    }

    fn restore(&self) {
        #[cfg(unix)]
        if let Some(t) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}
