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
        Stream { decoder: self.table.new_stream_decoder(), table: &self.table }
    }
}

/// Decodes bytes as they arrive.
pub struct Stream<'t> {
    decoder: Box<dyn StreamDecoder + Send + Sync + 't>,
    table: &'t Table,
}

impl Stream<'_> {
    /// Feeds received bytes and returns every line completed by them. A malformed frame is
    /// reported as a line of its own and decoding resynchronises at the next frame.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        self.decoder.received(bytes);
        let mut lines = Vec::new();
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
    fn an_elf_without_defmt_is_refused() {
        assert!(Decoder::new(b"not an elf").is_err());
    }
}
