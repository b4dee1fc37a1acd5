//! The terminal face: an interactive line editor when stdin is a terminal (incoming lines
//! are printed above the prompt, never through a half-typed line), or plain line-by-line
//! reading when input is piped (each command is carried out before the next is read; at
//! end of input, what was sent is confirmed before leaving).

use std::io::{IsTerminal, Write};

use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};
use tokio::sync::mpsc;

use crate::face::commands::{self, Line};
use crate::face::render::{Palette, Renderer};
use crate::face::script::{self, Unhandled};
use crate::node::{Command, Output, Request};

/// Runs the terminal face until the node stops.
pub async fn run(
    ready: Output,
    requests: mpsc::Sender<Request>,
    outputs: mpsc::Receiver<Output>,
) -> std::io::Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let palette = Palette::detect(std::io::stdout().is_terminal());
    let mut renderer = Renderer::new(palette);
    print_lines(&renderer.render(&ready));
    if interactive {
        interactive_face(renderer, requests, outputs).await
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
) -> std::io::Result<()> {
    // Print everything the node says while input is being read.
    let printer = tokio::spawn(async move {
        while let Some(o) = outputs.recv().await {
            let stopped = matches!(o, Output::Stopped);
            print_lines(&renderer.render(&o));
            if stopped {
                break;
            }
        }
    });
    let help = Renderer::new(Palette::plain()).help();
    script::drive_from_stdin(&requests, |u| match u {
        Unhandled::Hint(_, hint) => print_lines(&[format!("[!] {hint}")]),
        Unhandled::Help => print_lines(std::slice::from_ref(&help)),
        Unhandled::ReadError(e) => print_lines(&[format!("[!] cannot read input: {e}")]),
    })
    .await;
    let _ = printer.await;
    Ok(())
}

async fn interactive_face(
    mut renderer: Renderer,
    requests: mpsc::Sender<Request>,
    mut outputs: mpsc::Receiver<Output>,
) -> std::io::Result<()> {
    let mut editor = DefaultEditor::new().map_err(std::io::Error::other)?;
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
    while let Some(o) = outputs.recv().await {
        let stopped = matches!(o, Output::Stopped);
        let lines = renderer.render(&o);
        if !lines.is_empty() {
            // Printed above the prompt; the half-typed line is redrawn below.
            let _ = printer.print(lines.join("\n") + "\n");
        }
        if stopped {
            break;
        }
    }
    let _ = editor_thread.join();
    Ok(())
}
