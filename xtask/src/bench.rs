//! `cargo xtask bench`: boots the `guest:bench` scenario on every board under
//! `-icount shift=0,sleep=off -cpu max`, collects each path's EL2 instruction count and
//! guest-observed nanoseconds from the decoded log, prints a table, writes
//! `target/bench/bench.json` and `target/bench/bench.svg`, and compares the EL2 counts with the
//! committed baseline `bench/baseline.json` (a rise of more than 2 % fails). The figures are
//! deterministic, so the comparison is exact.

use crate::build::{self, Firmware};
use crate::qemu::{self, RunOptions};
use crate::{workspace_root, Board};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// One path's figures on one board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figure {
    pub board: String,
    pub path: String,
    pub el2: u64,
    pub guest_ns: u64,
}

/// The allowed rise over the baseline, in percent.
const TOLERANCE_PERCENT: u64 = 2;

/// Paths measured across two CPUs. Under `-icount` QEMU runs the CPUs round-robin, so their
/// figures repeat exactly run after run, but where in the other CPU's time slice each event
/// lands moves with any change to the firmware's code: a count can swing by 10 % with no change
/// to the path. They are reported, not checked.
pub const CROSS_CPU: [&str; 2] = ["interrupt", "guest-ipi"];

/// Parses `bench: NAME el2 X guest_ns Y` lines.
pub fn parse(board: Board, messages: impl IntoIterator<Item = String>) -> Vec<Figure> {
    messages
        .into_iter()
        .filter_map(|message| {
            let words: Vec<&str> = message.split_whitespace().collect();
            match words.as_slice() {
                ["bench:", path, "el2", el2, "guest_ns", ns] => Some(Figure {
                    board: board.name().to_string(),
                    path: path.to_string(),
                    el2: el2.parse().ok()?,
                    guest_ns: ns.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Runs the benchmark guest on `board`.
pub fn measure(firmware: &Firmware, board: Board) -> Result<Vec<Figure>> {
    let options = RunOptions {
        scenario: Some("guest:bench".into()),
        icount: true,
        timeout: Duration::from_secs(300),
        ..RunOptions::new(board)
    };
    let outcome = qemu::run(firmware, &options, |_| {})?;
    if outcome.exit_code != Some(0) || !outcome.has("guest scenario bench: passed") {
        bail!("the benchmark guest failed on {}:\n{}", board.name(), outcome.transcript());
    }
    let figures = parse(board, outcome.lines.iter().map(|l| l.message.clone()));
    if figures.is_empty() {
        bail!("no figures in the log of {}", board.name());
    }
    Ok(figures)
}

/// JSON for the figures (and the image sections), written by hand: flat and stable.
pub fn to_json(figures: &[Figure], sections: &BTreeMap<String, BTreeMap<String, u64>>) -> String {
    let mut json = String::from("{\n  \"figures\": [\n");
    for (index, f) in figures.iter().enumerate() {
        let comma = if index + 1 < figures.len() { "," } else { "" };
        let _ = writeln!(
            json,
            "    {{\"board\": \"{}\", \"path\": \"{}\", \"el2_instructions\": {}, \"guest_ns\": {}}}{comma}",
            f.board, f.path, f.el2, f.guest_ns
        );
    }
    json.push_str("  ],\n  \"sections\": {");
    for (index, (board, map)) in sections.iter().enumerate() {
        let comma = if index + 1 < sections.len() { "," } else { "" };
        let fields: Vec<String> = map.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        let _ = write!(json, "\n    \"{board}\": {{{}}}{comma}", fields.join(", "));
    }
    json.push_str("\n  }\n}\n");
    json
}

/// Reads the figures back from `to_json`'s output (the baseline).
pub fn from_json(text: &str) -> Vec<Figure> {
    text.lines()
        .filter_map(|line| {
            let field = |name: &str| -> Option<String> {
                let start = line.find(&format!("\"{name}\": "))? + name.len() + 4;
                let rest = &line[start..];
                let end = rest.find([',', '}']).unwrap_or(rest.len());
                Some(rest[..end].trim().trim_matches('"').to_string())
            };
            Some(Figure {
                board: field("board")?,
                path: field("path")?,
                el2: field("el2_instructions")?.parse().ok()?,
                guest_ns: field("guest_ns")?.parse().ok()?,
            })
        })
        .collect()
}

/// The regressions of `current` against `baseline`: paths whose EL2 count rose by more than
/// the tolerance, or that disappeared.
pub fn regressions(baseline: &[Figure], current: &[Figure]) -> Vec<String> {
    let mut found = Vec::new();
    for base in baseline.iter().filter(|f| !CROSS_CPU.contains(&f.path.as_str())) {
        match current.iter().find(|f| f.board == base.board && f.path == base.path) {
            None => found.push(format!("{} {}: missing", base.board, base.path)),
            Some(now) if now.el2 * 100 > base.el2 * (100 + TOLERANCE_PERCENT) => found.push(format!(
                "{} {}: {} EL2 instructions, baseline {} (+{:.1} %)",
                base.board,
                base.path,
                now.el2,
                base.el2,
                (now.el2 as f64 / base.el2.max(1) as f64 - 1.0) * 100.0
            )),
            Some(_) => {}
        }
    }
    found
}

/// A horizontal bar chart of the EL2 instruction counts, one group per path.
pub fn to_svg(figures: &[Figure]) -> String {
    let max = figures.iter().map(|f| f.el2).max().unwrap_or(1).max(1);
    let (bar, gap, left, width) = (14, 6, 230, 520);
    let height = figures.len() * (bar + gap) + 40;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n",
        left + width + 80
    );
    let _ = writeln!(svg, "<text x=\"4\" y=\"14\">EL2 instructions per operation (cargo xtask bench, -icount)</text>");
    for (index, f) in figures.iter().enumerate() {
        let y = 28 + index * (bar + gap);
        let length = (f.el2 * width as u64 / max) as usize;
        let _ = writeln!(svg, "<text x=\"4\" y=\"{}\">{} {}</text>", y + 11, f.board, f.path);
        let _ = writeln!(svg, "<rect x=\"{left}\" y=\"{y}\" width=\"{length}\" height=\"{bar}\" fill=\"#4a7ab5\"/>");
        let _ = writeln!(svg, "<text x=\"{}\" y=\"{}\">{}</text>", left + length + 4, y + 11, f.el2);
    }
    svg.push_str("</svg>\n");
    svg
}

/// `.text`, `.rodata`, `.data` and `.bss` sizes of a firmware ELF, and its flat image's size.
pub fn sections(firmware: &Firmware) -> Result<BTreeMap<String, u64>> {
    use object::{Object, ObjectSection};
    let bytes = std::fs::read(&firmware.elf).with_context(|| format!("reading {}", firmware.elf.display()))?;
    let file = object::File::parse(&*bytes)?;
    let mut sizes = BTreeMap::new();
    for name in [".text", ".rodata", ".data", ".bss"] {
        let size = file
            .sections()
            .filter(|s| s.name().is_ok_and(|n| n == name || n.starts_with(&format!("{name}."))))
            .map(|s| s.size())
            .sum();
        sizes.insert(name.trim_start_matches('.').to_string(), size);
    }
    let image = std::fs::metadata(&firmware.image).with_context(|| format!("reading {}", firmware.image.display()))?;
    sizes.insert("image".to_string(), image.len());
    Ok(sizes)
}

/// The baseline's path in the repository.
pub fn baseline_path() -> std::path::PathBuf {
    workspace_root().join("bench").join("baseline.json")
}

/// Runs every board; prints the table; writes the outputs; checks or updates the baseline.
/// Returns the regressions found (empty when the check passes or the baseline was updated).
pub fn bench(update_baseline: bool) -> Result<Vec<String>> {
    let firmwares = build::build(&Board::ALL)?;
    let mut figures = Vec::new();
    let mut sizes = BTreeMap::new();
    for (board, firmware) in Board::ALL.iter().zip(&firmwares) {
        // The paths are measured by the test kit's `bench` scenario; the sizes are the product's.
        figures.extend(measure(&build::test_firmware(*board)?, *board)?);
        sizes.insert(board.name().to_string(), sections(firmware)?);
    }
    println!("{:<12} {:<14} {:>16} {:>12}", "board", "path", "EL2 instructions", "guest ns");
    for f in &figures {
        let note = if CROSS_CPU.contains(&f.path.as_str()) { "  (two CPUs: not checked)" } else { "" };
        println!("{:<12} {:<14} {:>16} {:>12}{note}", f.board, f.path, f.el2, f.guest_ns);
    }
    for (board, map) in &sizes {
        let fields: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("{board}: product image (bytes): {}", fields.join(", "));
    }
    let out = workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&out)?;
    let json = to_json(&figures, &sizes);
    std::fs::write(out.join("bench.json"), &json)?;
    std::fs::write(out.join("bench.svg"), to_svg(&figures))?;
    println!("xtask: wrote {} and bench.svg", out.join("bench.json").display());
    let baseline = baseline_path();
    if update_baseline {
        std::fs::create_dir_all(baseline.parent().unwrap_or(&out))?;
        std::fs::write(&baseline, json)?;
        println!("xtask: baseline updated: {}", baseline.display());
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(&baseline)
        .with_context(|| format!("reading {} (create it with --update-baseline)", baseline.display()))?;
    let found = regressions(&from_json(&text), &figures);
    if found.is_empty() {
        println!("xtask: every path within {TOLERANCE_PERCENT} % of the baseline");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(path: &str, el2: u64) -> Figure {
        Figure { board: "virt".into(), path: path.into(), el2, guest_ns: el2 + 4 }
    }

    #[test]
    fn parses_bench_lines_only() {
        let lines = ["bench: null-hvc el2 691 guest_ns 695", "bench: loop ratio 100/100", "other"];
        assert_eq!(parse(Board::Virt, lines.map(String::from)), [figure("null-hvc", 691)]);
    }

    #[test]
    fn json_round_trips() {
        let figures = [figure("null-hvc", 691), figure("bell", 1150)];
        let mut sections = BTreeMap::new();
        sections.insert("virt".to_string(), BTreeMap::from([("text".to_string(), 1u64)]));
        assert_eq!(from_json(&to_json(&figures, &sections)), figures);
    }

    #[test]
    fn a_rise_over_two_percent_is_a_regression() {
        let baseline = [figure("null-hvc", 1000), figure("bell", 1000), figure("interrupt", 10)];
        assert!(regressions(&baseline, &[figure("null-hvc", 1020), figure("bell", 900)]).is_empty());
        let found = regressions(&baseline, &[figure("null-hvc", 1021)]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("virt null-hvc: 1021 EL2 instructions, baseline 1000"));
        assert_eq!(found[1], "virt bell: missing");
    }
}
