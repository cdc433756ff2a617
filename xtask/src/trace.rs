//! `cargo xtask bench --trace`: where each exit path's EL2 instructions go.
//!
//! The `guest:bench` scenario runs once more on `virt`, under the same `-icount`, with QEMU
//! logging every instruction it executes in Belfry's code (`-accel tcg,one-insn-per-tb=on -d
//! exec,nochain -dfilter TEXT`: one line per executed instruction of the firmware's executable
//! sections). The log streams through a FIFO, never touching the disk. The test kit calls
//! `belfry_bench_mark` at each of a path's three marks (see `testkit::bench`); the instructions
//! the mark's CPU executes between marks form two windows per path, and, as in the bench
//! itself, (second window - first window) / operations is one operation's cost, here by
//! function and with the system-register accesses (`MRS`/`MSR`) counted from the ELF's own
//! instruction words. The totals equal the bench's figures; under `-icount` an `MRS` or `MSR`
//! counts as one instruction, but on silicon each costs many cycles.

use crate::build::Firmware;
use crate::qemu::{self, RunOptions};
use crate::Board;
use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSymbol, SectionFlags};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// One path's trace.
#[derive(Debug, Default)]
pub struct PathTrace {
    pub name: String,
    pub operations: u64,
    /// EL2 instructions per operation.
    pub el2: f64,
    /// `MRS`/`MSR` per operation.
    pub sysreg: f64,
    /// (function, instructions per operation), most first.
    pub functions: Vec<(String, f64)>,
    /// (PC, executions per operation), by PC: what `--trace` writes to `trace-pcs.txt` for a
    /// source-line view (`llvm-symbolizer --inlining` on the test firmware).
    pub pcs: Vec<(u64, f64)>,
}

/// Whether a 32-bit A64 instruction is a system-register access: `MRS`, `MSR` (register) or
/// `MSR` (immediate, PSTATE fields).
pub fn is_sysreg_access(word: u32) -> bool {
    let mrs_msr = word & 0xffd0_0000 == 0xd510_0000;
    let msr_immediate = word & 0xfff8_f01f == 0xd500_401f;
    mrs_msr || msr_immediate
}

/// Demangles a legacy Rust symbol (`_ZN3el25traps13system_action17h0123456789abcdefE` ->
/// `el2::traps::system_action`); other names are returned as they are.
pub fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else { return name.to_string() };
    let mut parts = Vec::new();
    while let Some(first) = rest.chars().next() {
        if first == 'E' {
            break;
        }
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        let Ok(length) = rest[..digits].parse::<usize>() else { return name.to_string() };
        let Some(part) = rest.get(digits..digits + length) else { return name.to_string() };
        parts.push(part);
        rest = &rest[digits + length..];
    }
    if parts.last().is_some_and(|p| p.len() == 17 && p.starts_with('h')) {
        parts.pop();
    }
    parts.join("::").replace("$LT$", "<").replace("$GT$", ">").replace("$u20$", " ").replace("..", "::")
}

/// The firmware's code: executable sections' words and function symbols.
struct Code {
    /// (start, bytes) of each executable section.
    sections: Vec<(u64, Vec<u8>)>,
    /// (address, size, name), by address.
    functions: Vec<(u64, u64, String)>,
    range: (u64, u64),
    mark: u64,
}

impl Code {
    fn read(elf: &[u8]) -> Result<Self> {
        let file = object::File::parse(elf).context("parsing the firmware ELF")?;
        let mut sections = Vec::new();
        for section in file.sections() {
            let executable = matches!(section.flags(), SectionFlags::Elf { sh_flags } if sh_flags & 4 != 0);
            if executable && section.size() > 0 {
                sections.push((section.address(), section.data()?.to_vec()));
            }
        }
        let start = sections.iter().map(|(a, _)| *a).min().context("no executable section")?;
        let end = sections.iter().map(|(a, d)| a + d.len() as u64).max().unwrap_or(start);
        let mut functions: Vec<(u64, u64, String)> = file
            .symbols()
            .filter(|s| s.kind() == object::SymbolKind::Text && s.address() >= start && s.address() < end)
            .filter_map(|s| Some((s.address(), s.size(), demangle(s.name().ok()?))))
            .collect();
        functions.sort();
        let mark = functions
            .iter()
            .find(|(_, _, name)| name == "belfry_bench_mark")
            .map(|(a, _, _)| *a)
            .context("the firmware has no belfry_bench_mark (not the test firmware?)")?;
        Ok(Self { sections, functions, range: (start, end), mark })
    }

    fn word(&self, address: u64) -> Option<u32> {
        let (start, data) = self.sections.iter().find(|(a, d)| address >= *a && address < a + d.len() as u64)?;
        let at = (address - start) as usize;
        Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
    }

    fn function(&self, address: u64) -> String {
        let index = self.functions.partition_point(|(a, _, _)| *a <= address);
        match index.checked_sub(1).and_then(|i| self.functions.get(i)) {
            // Assembly labels have no size: they run to the next symbol.
            Some((a, size, name)) if *size == 0 || address < a + size => name.clone(),
            _ => format!("{address:#x}"),
        }
    }
}

/// A `Trace N: HOST [FLAGS/PC/...] ...` line of QEMU's exec log: (CPU, PC).
pub fn parse_exec_line(line: &str) -> Option<(u32, u64)> {
    let rest = line.strip_prefix("Trace ")?;
    let (cpu, rest) = rest.split_once(':')?;
    let inside = rest.split_once('[')?.1.split_once(']')?.0;
    let pc = inside.split('/').nth(1)?;
    Some((cpu.trim().parse().ok()?, u64::from_str_radix(pc, 16).ok()?))
}

/// Runs the traced bench on `virt` and returns each path's trace.
pub fn trace(firmware: &Firmware) -> Result<Vec<PathTrace>> {
    let elf = std::fs::read(&firmware.elf).with_context(|| format!("reading {}", firmware.elf.display()))?;
    let code = std::sync::Arc::new(Code::read(&elf)?);
    let fifo = std::env::temp_dir().join(format!("belfry-trace-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
    // SAFETY: a NUL-terminated path; mkfifo only creates the file.
    if unsafe { libc::mkfifo(path.as_ptr(), 0o600) } != 0 {
        bail!("mkfifo {}: {}", fifo.display(), std::io::Error::last_os_error());
    }
    let reader_code = code.clone();
    let reader_fifo = fifo.clone();
    // Windows: the PC histogram of the mark CPU's instructions between consecutive marks.
    let reader = std::thread::spawn(move || -> Result<Vec<HashMap<u64, u64>>> {
        let file = std::fs::File::open(&reader_fifo)?;
        let mut windows: Vec<HashMap<u64, u64>> = Vec::new();
        let mut current: HashMap<u64, u64> = HashMap::new();
        let mut mark_cpu = None;
        let mut line = String::new();
        let mut input = BufReader::with_capacity(1 << 20, file);
        loop {
            line.clear();
            if input.read_line(&mut line)? == 0 {
                break;
            }
            let Some((cpu, pc)) = parse_exec_line(&line) else { continue };
            if pc == reader_code.mark {
                if mark_cpu.is_some() {
                    windows.push(std::mem::take(&mut current));
                }
                mark_cpu = Some(cpu);
                continue;
            }
            if mark_cpu == Some(cpu) {
                *current.entry(pc).or_default() += 1;
            }
        }
        Ok(windows)
    });
    let range = format!("{:#x}..{:#x}", code.range.0, code.range.1);
    let options = RunOptions {
        scenario: Some("guest:bench".into()),
        icount: true,
        timeout: Duration::from_secs(3600),
        qemu_args: [
            "-accel",
            "tcg,one-insn-per-tb=on",
            "-d",
            "exec,nochain",
            "-dfilter",
            &range,
            "-D",
            fifo.to_str().context("a temporary path that is not UTF-8")?,
        ]
        .map(String::from)
        .to_vec(),
        ..RunOptions::new(Board::Virt)
    };
    let outcome = qemu::run(firmware, &options, |_| {});
    let windows = reader.join().map_err(|_| anyhow::anyhow!("the trace reader panicked"))??;
    let _ = std::fs::remove_file(&fifo);
    let outcome = outcome?;
    if outcome.exit_code != Some(0) {
        bail!("the traced benchmark failed:\n{}", outcome.transcript());
    }
    let operations: Vec<(String, u64)> = outcome
        .lines
        .iter()
        .filter_map(|l| {
            let words: Vec<&str> = l.message.split_whitespace().collect();
            match words.as_slice() {
                ["bench-trace:", name, "operations", n] => Some((name.to_string(), n.parse().ok()?)),
                _ => None,
            }
        })
        .collect();
    // Marks 3p, 3p + 1, 3p + 2 are path p's: windows 3p (first) and 3p + 1 (second).
    let mut traces = Vec::new();
    for (index, (name, n)) in operations.into_iter().enumerate() {
        let (Some(first), Some(second)) = (windows.get(3 * index), windows.get(3 * index + 1)) else {
            bail!("the trace has no windows for {name}");
        };
        let mut by_function: HashMap<String, i64> = HashMap::new();
        let mut by_pc: HashMap<u64, i64> = HashMap::new();
        let mut total = 0i64;
        let mut sysreg = 0i64;
        for (window, sign) in [(first, -1i64), (second, 1)] {
            for (&pc, &count) in window {
                let count = sign * count as i64;
                total += count;
                if code.word(pc).is_some_and(is_sysreg_access) {
                    sysreg += count;
                }
                *by_function.entry(code.function(pc)).or_default() += count;
                *by_pc.entry(pc).or_default() += count;
            }
        }
        let per = |x: i64| x as f64 / n.max(1) as f64;
        let mut functions: Vec<(String, f64)> =
            by_function.into_iter().map(|(f, c)| (f, per(c))).filter(|(_, c)| c.abs() >= 0.5).collect();
        functions.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut pcs: Vec<(u64, f64)> =
            by_pc.into_iter().map(|(pc, c)| (pc, per(c))).filter(|(_, c)| c.abs() >= 0.5).collect();
        pcs.sort_by_key(|&(pc, _)| pc);
        traces.push(PathTrace { name, operations: n, el2: per(total), sysreg: per(sysreg), functions, pcs });
    }
    Ok(traces)
}

/// The per-PC listing `--trace` writes to `target/bench/trace-pcs.txt`: one line per path and
/// PC, `path pc executions-per-operation`.
pub fn pc_listing(traces: &[PathTrace]) -> String {
    let mut out = String::new();
    for t in traces {
        for (pc, count) in &t.pcs {
            out.push_str(&format!("{} {pc:#x} {count:.1}\n", t.name));
        }
    }
    out
}

/// The report `--trace` prints (and writes to `target/bench/trace.txt`).
pub fn report(traces: &[PathTrace]) -> String {
    let mut out = String::new();
    out.push_str(&format!("{:<18} {:>10} {:>10}\n", "path (virt)", "EL2/op", "MRS+MSR/op"));
    for t in traces {
        out.push_str(&format!("{:<18} {:>10.1} {:>10.1}\n", t.name, t.el2, t.sysreg));
    }
    for t in traces {
        out.push_str(&format!("\n{} ({} operations per window difference):\n", t.name, t.operations));
        for (function, count) in t.functions.iter().take(16) {
            out.push_str(&format!("  {count:>8.1}  {function}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_register_accesses_are_recognised() {
        assert!(is_sysreg_access(0xd53c_5200), "mrs x0, esr_el2");
        assert!(is_sysreg_access(0xd51c_4020), "msr elr_el2, x0");
        assert!(is_sysreg_access(0xd503_4fdf), "msr daifset, #0xf");
        assert!(!is_sysreg_access(0xd503_201f), "nop");
        assert!(!is_sysreg_access(0xd508_871f), "tlbi vmalle1is (a system instruction)");
        assert!(!is_sysreg_access(0xd69f_03e0), "eret");
        assert!(!is_sysreg_access(0xf940_0000), "ldr");
    }

    #[test]
    fn symbols_and_log_lines() {
        assert_eq!(demangle("_ZN3el25traps13system_action17hf143fb0c2f71da60E"), "el2::traps::system_action");
        assert_eq!(demangle("belfry_short_exit"), "belfry_short_exit");
        assert_eq!(
            parse_exec_line("Trace 1: 0x7f2c4c000100 [00000000/0000000040219074/00000000/ff020000] belfry_short_exit"),
            Some((1, 0x4021_9074))
        );
        assert_eq!(parse_exec_line("Linking TBs"), None);
    }
}
