//! The terminal at the edge of `init`: questions and notes on stderr, answers from stdin,
//! secrets read with echo off.
//!
//! [`Terminal`] is what the question logic talks to, so it can be driven by a script in tests;
//! [`StdTerminal`] is the real one, used only when stdin is a terminal.
//!
//! Invariants for a secret: echo is off *before* its prompt appears, so nothing typed after the
//! prompt can ever be shown; the terminal is put back exactly as it was on every way out (a
//! guard restores it on drop); Ctrl-C arrives as a byte while the secret is typed (signals are
//! off for that moment, so the process is never killed with echo still off) and comes back as
//! [`io::ErrorKind::Interrupted`].

use std::io::{self, BufRead, IsTerminal, Read, Write};

use rustix::termios::{self, LocalModes, OptionalActions, SpecialCodeIndex, Termios};

/// Where `init` asks its questions.
pub trait Terminal {
    /// Shows `prompt` and reads one line, without its line end; `None` at end of input.
    ///
    /// # Errors
    /// When the terminal cannot be read or written.
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>>;
    /// The same with echo off, for a secret.
    ///
    /// # Errors
    /// As [`Terminal::ask`]; [`io::ErrorKind::Interrupted`] when the user pressed Ctrl-C.
    fn ask_hidden(&mut self, prompt: &str) -> io::Result<Option<String>>;
    /// Shows a line of information.
    fn say(&mut self, text: &str);
}

/// The process's own terminal: stdin for answers, stderr for questions (stdout carries only
/// the final report, so it can be redirected).
pub struct StdTerminal {
    _only_through_open: (),
}

impl StdTerminal {
    /// The terminal, if stdin is one.
    pub fn open() -> Option<StdTerminal> {
        io::stdin().is_terminal().then_some(StdTerminal {
            _only_through_open: (),
        })
    }
}

impl Terminal for StdTerminal {
    fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
        show(prompt)?;
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let answer = line.strip_suffix('\n').unwrap_or(&line);
        Ok(Some(answer.strip_suffix('\r').unwrap_or(answer).to_owned()))
    }

    fn ask_hidden(&mut self, prompt: &str) -> io::Result<Option<String>> {
        let stdin = io::stdin();
        let _restore = Quiet::start(&stdin)?;
        show(prompt)?;
        let line = read_hidden_line(&mut stdin.lock());
        // The Enter typed was not echoed either: end the prompt's line.
        eprintln!();
        line
    }

    fn say(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

fn show(prompt: &str) -> io::Result<()> {
    let mut stderr = io::stderr().lock();
    stderr.write_all(prompt.as_bytes())?;
    stderr.flush()
}

/// Echo, line editing and signals off on stdin until dropped, then the terminal as it was.
struct Quiet {
    original: Termios,
}

impl Quiet {
    fn start(stdin: &io::Stdin) -> io::Result<Quiet> {
        let original = termios::tcgetattr(stdin)?;
        let mut quiet = original.clone();
        quiet
            .local_modes
            .remove(LocalModes::ECHO | LocalModes::ICANON | LocalModes::ISIG);
        // One byte at a time, as it is typed.
        quiet.special_codes[SpecialCodeIndex::VMIN] = 1;
        quiet.special_codes[SpecialCodeIndex::VTIME] = 0;
        termios::tcsetattr(stdin, OptionalActions::Now, &quiet)?;
        Ok(Quiet { original })
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        // Nothing better to do if it fails: the terminal is gone.
        let _ = termios::tcsetattr(io::stdin(), OptionalActions::Now, &self.original);
    }
}

const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const CTRL_U: u8 = 0x15;
const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;

/// Reads a line typed with line editing off: Enter ends it, Backspace removes a character,
/// Ctrl-U the whole line, Ctrl-D on an empty line is the end of input, Ctrl-C interrupts.
fn read_hidden_line(input: &mut impl Read) -> io::Result<Option<String>> {
    let mut typed = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if input.read(&mut byte)? == 0 {
            if typed.is_empty() {
                return Ok(None);
            }
            break;
        }
        match byte[0] {
            b'\r' | b'\n' => break,
            CTRL_C => return Err(io::Error::from(io::ErrorKind::Interrupted)),
            CTRL_D if typed.is_empty() => return Ok(None),
            CTRL_D => {}
            CTRL_U => typed.clear(),
            BACKSPACE | DELETE => {
                // One character, however many UTF-8 bytes it took.
                while let Some(removed) = typed.pop() {
                    if removed & 0b1100_0000 != 0b1000_0000 {
                        break;
                    }
                }
            }
            other => typed.push(other),
        }
    }
    String::from_utf8(typed)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the answer is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden(bytes: &[u8]) -> io::Result<Option<String>> {
        read_hidden_line(&mut &bytes[..])
    }

    #[test]
    fn hidden_line_editing() {
        assert_eq!(hidden(b"abc\r").expect("line"), Some("abc".into()));
        assert_eq!(hidden(b"abx\x7fc\n").expect("line"), Some("abc".into()));
        assert_eq!(
            hidden("é\x7fe\r".as_bytes()).expect("line"),
            Some("e".into()),
            "backspace removes a whole character"
        );
        assert_eq!(
            hidden(b"wrong\x15right\r").expect("line"),
            Some("right".into())
        );
        assert_eq!(hidden(b"\x04").expect("eof"), None);
        assert_eq!(hidden(b"").expect("eof"), None);
        assert_eq!(hidden(b"partial").expect("line"), Some("partial".into()));
        let err = hidden(b"sec\x03ret\r").expect_err("Ctrl-C");
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }
}
