//! What a run is asked to do, read from the command line (`/chosen/bootargs`: `scenario=NAME`).
//!
//! The system tests use this to drive one test firmware image through several scenarios; with
//! none, test firmware boots as the product does ([`Scenario::Boot`]: the bundle, if any).

/// One run's job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum Scenario {
    /// Bring every CPU up, report, and end the run with success.
    Boot,
    /// After boot, the boot CPU loads from an unmapped address: the fatal report path.
    FaultOnBootCpu,
    /// After boot, the given secondary CPU loads from an unmapped address.
    FaultOnCpu(usize),
    /// After boot, Belfry panics (a broken invariant): the panic report path.
    Panic,
    /// After boot, threads on every CPU send packets through one port and drain it.
    PortStress,
    /// After boot, a thread on cpu1 recurses until its stack overflows into its guard page.
    StackOverflow,
    /// Before the MMU and the log, Belfry panics: the early console's path.
    EarlyPanic,
    /// A guest scenario (`scenario=guest:NAME`), run by the board's VMM.
    Guest(GuestScenario),
}

/// The name of a guest scenario, owned (the command line buffer does not outlive parsing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestScenario {
    bytes: [u8; 40],
    len: usize,
}

impl GuestScenario {
    /// The name, if it fits.
    pub fn new(name: &str) -> Option<Self> {
        let mut bytes = [0; 40];
        bytes.get_mut(..name.len())?.copy_from_slice(name.as_bytes());
        Some(Self { bytes, len: name.len() })
    }

    /// The name.
    pub fn name(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

#[cfg(target_os = "none")]
impl defmt::Format for GuestScenario {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "guest:{=str}", self.name())
    }
}

/// Why a command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum ScenarioError {
    UnknownScenario,
    BadCpuIndex,
}

/// Parses a command line such as `belfry scenario=fault-cpu:2`; words other than
/// `scenario=...` are ignored, and no `scenario=` means [`Scenario::Boot`].
pub fn parse(command_line: &str) -> Result<Scenario, ScenarioError> {
    let Some(name) = command_line.split_ascii_whitespace().find_map(|word| word.strip_prefix("scenario=")) else {
        return Ok(Scenario::Boot);
    };
    match name {
        "boot" => Ok(Scenario::Boot),
        "fault" => Ok(Scenario::FaultOnBootCpu),
        "panic" => Ok(Scenario::Panic),
        "port-stress" => Ok(Scenario::PortStress),
        "stack-overflow" => Ok(Scenario::StackOverflow),
        "early-panic" => Ok(Scenario::EarlyPanic),
        other if other.starts_with("guest:") => {
            let name = other.trim_start_matches("guest:");
            GuestScenario::new(name).map(Scenario::Guest).ok_or(ScenarioError::UnknownScenario)
        }
        other => {
            let cpu = other.strip_prefix("fault-cpu:").ok_or(ScenarioError::UnknownScenario)?;
            match cpu.parse::<usize>() {
                Ok(cpu) if cpu > 0 && cpu < el2::machine::MAX_CPUS => Ok(Scenario::FaultOnCpu(cpu)),
                _ => Err(ScenarioError::BadCpuIndex),
            }
        }
    }
}

/// An address inside the 39-bit EL2 address space that no board maps (508 GiB): a load from it
/// takes a translation fault at level 1.
pub const UNMAPPED_ADDRESS: u64 = 0x7f_dead_0000;

const _: () = assert!(UNMAPPED_ADDRESS < 1 << el2::pagetable::VA_BITS, "inside the EL2 address space");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(parse(""), Ok(Scenario::Boot));
        assert_eq!(parse("belfry"), Ok(Scenario::Boot));
        assert_eq!(parse("belfry scenario=boot"), Ok(Scenario::Boot));
        assert_eq!(parse("belfry scenario=fault"), Ok(Scenario::FaultOnBootCpu));
        assert_eq!(parse("x scenario=panic y"), Ok(Scenario::Panic));
        assert_eq!(parse("scenario=port-stress"), Ok(Scenario::PortStress));
        assert_eq!(parse("scenario=stack-overflow"), Ok(Scenario::StackOverflow));
        let Ok(Scenario::Guest(guest)) = parse("scenario=guest:vcpu-enter") else { panic!() };
        assert_eq!(guest.name(), "vcpu-enter");
        assert_eq!(parse(&format!("scenario=guest:{}", "x".repeat(41))), Err(ScenarioError::UnknownScenario));
        assert_eq!(parse("scenario=fault-cpu:2"), Ok(Scenario::FaultOnCpu(2)));
        assert_eq!(parse("scenario=fault-cpu:0"), Err(ScenarioError::BadCpuIndex));
        assert_eq!(parse("scenario=fault-cpu:99"), Err(ScenarioError::BadCpuIndex));
        assert_eq!(parse("scenario=fault-cpu:x"), Err(ScenarioError::BadCpuIndex));
        assert_eq!(parse("scenario=dance"), Err(ScenarioError::UnknownScenario));
    }
}
