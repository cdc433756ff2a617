//! Decoding Belfry's defmt stream on the host, in-process, against the ELF that produced it.

use anyhow::{anyhow, Context, Result};
use defmt_decoder::{DecodeError, StreamDecoder, Table};
use std::fmt;

/// One decoded log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The CPU that logged it (from the timestamp, `cpuN`).
    pub cpu: Option<usize>,
    /// Seconds since reset, as printed (`0.001234`).
    pub time: String,
    /// `INFO`, `WARN`, `ERROR`, ...
    pub level: String,
    /// The formatted message.
    pub message: String,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cpu {
            Some(cpu) => write!(f, "[cpu{cpu} {:>10}] {:<5} {}", self.time, self.level, self.message),
            None => write!(f, "[{:>15}] {:<5} {}", self.time, self.level, self.message),
        }
    }
}

/// A defmt table read from one ELF.
pub struct Decoder {
    table: Table,
}

impl Decoder {
    /// Reads the defmt table of `elf`. An ELF without one was linked without `-Tdefmt.x`.
    pub fn new(elf: &[u8]) -> Result<Self> {
        let table = Table::parse(elf)
            .context("reading the defmt table")?
            .ok_or_else(|| anyhow!("the firmware ELF has no defmt data (linked without -Tdefmt.x?)"))?;
        Ok(Self { table })
    }

    /// A decoder for one byte stream.
    pub fn stream(&self) -> Stream<'_> {
        Stream { decoder: self.table.new_stream_decoder(), table: &self.table, early: EarlySplitter::default() }
    }
}

/// What starts one of Belfry's early-console lines (`el2::early::MAGIC`): plain text written
/// before the defmt logger is up, ended by a newline and a zero.
pub const EARLY_MAGIC: &[u8] = b"\0\0\0BELFRY-EARLY ";

/// Separates early-console lines from the defmt byte stream. The first zero of the magic is
/// passed on (a frame terminator is harmless to the decoder); from the second on, bytes are
/// held until they either complete the magic or prove not to be one (two zeros in a row never
/// occur in a defmt stream, so nothing real is delayed).
#[derive(Default)]
pub struct EarlySplitter {
    matched: usize,
    line: Option<Vec<u8>>,
    skip_zero: bool,
}

impl EarlySplitter {
    /// Splits `bytes` into what goes to the defmt decoder and completed early lines.
    pub fn split(&mut self, bytes: &[u8]) -> (Vec<u8>, Vec<String>) {
        let (mut defmt, mut lines) = (Vec::with_capacity(bytes.len()), Vec::new());
        for &byte in bytes {
            if let Some(line) = &mut self.line {
                if byte == b'\n' {
                    lines.push(String::from_utf8_lossy(line).into_owned());
                    self.line = None;
                    self.skip_zero = true;
                } else {
                    line.push(byte);
                }
                continue;
            }
            if std::mem::take(&mut self.skip_zero) && byte == 0 {
                continue;
            }
            loop {
                if EARLY_MAGIC.get(self.matched) == Some(&byte) {
                    if self.matched == 0 {
                        defmt.push(byte);
                    }
                    self.matched += 1;
                    if self.matched == EARLY_MAGIC.len() {
                        self.matched = 0;
                        self.line = Some(Vec::new());
                    }
                    break;
                }
                if self.matched == 0 {
                    defmt.push(byte);
                    break;
                }
                // A fourth zero after three: the magic may start one byte later (it begins with
                // exactly three zeros); the oldest held zero goes to the decoder.
                if byte == 0 && self.matched == 3 {
                    defmt.push(0);
                    break;
                }
                // Not the magic after all: what was held goes to the decoder; look at `byte` anew.
                defmt.extend_from_slice(&EARLY_MAGIC[1..self.matched]);
                self.matched = 0;
            }
        }
        (defmt, lines)
    }
}

/// Decodes bytes as they arrive.
pub struct Stream<'t> {
    decoder: Box<dyn StreamDecoder + Send + Sync + 't>,
    table: &'t Table,
    early: EarlySplitter,
}

impl Stream<'_> {
    /// Feeds received bytes and returns every line completed by them. A malformed frame is
    /// reported as a line of its own and decoding resynchronises at the next frame.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        let (defmt, early) = self.early.split(bytes);
        self.decoder.received(&defmt);
        let mut lines: Vec<LogLine> = early
            .into_iter()
            .map(|message| LogLine { cpu: None, time: String::new(), level: "EARLY".into(), message })
            .collect();
        loop {
            match self.decoder.decode() {
                Ok(frame) => {
                    let timestamp = frame.display_timestamp().map(|t| t.to_string()).unwrap_or_default();
                    let (cpu, time) = split_timestamp(&timestamp);
                    lines.push(LogLine {
                        cpu,
                        time,
                        level: frame.level().map(|l| l.as_str().to_uppercase()).unwrap_or_else(|| "PRINT".into()),
                        message: frame.display_message().to_string(),
                    });
                }
                Err(DecodeError::UnexpectedEof) => break,
                Err(DecodeError::Malformed) => {
                    lines.push(LogLine {
                        cpu: None,
                        time: String::new(),
                        level: "ERROR".into(),
                        message: "(malformed defmt frame skipped)".into(),
                    });
                    if !self.table.encoding().can_recover() {
                        break;
                    }
                }
            }
        }
        lines
    }
}

/// Splits `cpu2 1.234567` into the CPU index and the time.
fn split_timestamp(timestamp: &str) -> (Option<usize>, String) {
    match timestamp.split_once(' ') {
        Some((cpu, time)) => (cpu.strip_prefix("cpu").and_then(|n| n.parse().ok()), time.to_string()),
        None => (None, timestamp.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_into_cpu_and_time() {
        assert_eq!(split_timestamp("cpu3 0.001234"), (Some(3), "0.001234".to_string()));
        assert_eq!(split_timestamp("0.5"), (None, "0.5".to_string()));
        let line = LogLine { cpu: Some(1), time: "0.000010".into(), level: "INFO".into(), message: "hi".into() };
        assert_eq!(line.to_string(), "[cpu1   0.000010] INFO  hi");
    }

    #[test]
    fn early_lines_are_split_from_the_defmt_stream() {
        let mut splitter = EarlySplitter::default();
        let mut stream = vec![7, 8, 0, 9, 0];
        stream.extend_from_slice(EARLY_MAGIC);
        stream.extend_from_slice(b"boot failed before the log\n\0");
        stream.extend_from_slice(&[5, 6, 0]);
        // Fed in small pieces, as a serial line delivers it.
        let (mut defmt, mut lines) = (Vec::new(), Vec::new());
        for chunk in stream.chunks(3) {
            let (d, l) = splitter.split(chunk);
            defmt.extend(d);
            lines.extend(l);
        }
        assert_eq!(lines, ["boot failed before the log"]);
        assert_eq!(defmt, [7, 8, 0, 9, 0, 0, 5, 6, 0]);
        // Zeros that are not the magic reach the decoder.
        let (d, l) = EarlySplitter::default().split(&[1, 0, 0, 2, 0]);
        assert_eq!((d, l.len()), (vec![1, 0, 0, 2, 0], 0));
    }

    #[test]
    fn an_elf_without_defmt_is_refused() {
        assert!(Decoder::new(b"not an elf").is_err());
    }
}

/// Shows a decoded log on a terminal: Belfry's lines as they are, a VM's console output as the
/// text it printed, after the VM's name (`linux| ~ # `), text without a newline left open so a
/// shell's prompt and echo appear as the guest wrote them.
#[derive(Default)]
pub struct ConsoleView {
    /// The VM whose unfinished line is on the terminal.
    open: Option<String>,
}

impl ConsoleView {
    /// Prints `line`.
    pub fn show(&mut self, line: &LogLine) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        match console_text(&line.message) {
            Some((vm, text, complete)) => {
                if self.open.as_deref() != Some(vm) {
                    if self.open.is_some() {
                        let _ = writeln!(out);
                    }
                    let _ = write!(out, "{vm}| ");
                }
                let _ = write!(out, "{text}");
                if complete {
                    let _ = writeln!(out);
                    self.open = None;
                } else {
                    self.open = Some(vm.to_string());
                }
            }
            None => {
                if self.open.take().is_some() {
                    let _ = writeln!(out);
                }
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = out.flush();
    }
}

/// A console line's VM, text, and whether it ended with a newline: `console NAME: TEXT` (a
/// line) or `console NAME~ TEXT` (text without a newline).
pub fn console_text(message: &str) -> Option<(&str, &str, bool)> {
    let rest = message.strip_prefix("console ")?;
    let end = rest.find([':', '~'])?;
    let (vm, tail) = rest.split_at(end);
    if vm.is_empty() || vm.contains(' ') {
        return None;
    }
    let complete = tail.starts_with(':');
    let text = tail[1..].strip_prefix(' ').unwrap_or(&tail[1..]);
    Some((vm, text, complete))
}

/// The console output of VM `vm` in `lines`, as the lines it printed: pieces without a newline
/// joined to what follows them.
pub fn console_lines(lines: &[LogLine], vm: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut open = String::new();
    for line in lines {
        if let Some((name, text, complete)) = console_text(&line.message) {
            if name != vm {
                continue;
            }
            open.push_str(text);
            if complete {
                out.push(std::mem::take(&mut open));
            }
        }
    }
    if !open.is_empty() {
        out.push(open);
    }
    out
}
