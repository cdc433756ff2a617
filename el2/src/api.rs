//! The safe Rust face of the hypervisor API, for the in-firmware VMM.
//!
//! Each type owns one handle in a [`Process`] and closes it when dropped; methods call the
//! raw, status-returning syscalls of [`Process`] underneath and return typed results
//! (`Vcpu::enter` returns a decoded [`Packet`]).

use crate::object::packet::{Packet, PortPacket, VcpuState};
use crate::object::process::Process;
use crate::object::trap::{BELFRY_GUEST_TRAP_BELL_WORDS, GUEST_TRAP_BELL, GUEST_TRAP_MEM};
use crate::object::vcpu::{VcpuControl, BELFRY_VCPU_CONTROL, VCPU_STATE};
use crate::object::{Rights, ZxResult};
use crate::sync::Deadline;

/// An owned handle value; closed on drop.
#[derive(Debug)]
pub struct OwnedHandle<'p> {
    process: &'p Process,
    value: u32,
}

impl<'p> OwnedHandle<'p> {
    /// Takes ownership of `value`.
    pub fn new(process: &'p Process, value: u32) -> Self {
        Self { process, value }
    }

    /// The raw handle value.
    pub fn raw(&self) -> u32 {
        self.value
    }

    /// A duplicate with `rights`.
    pub fn duplicate(&self, rights: Rights) -> ZxResult<OwnedHandle<'p>> {
        Ok(OwnedHandle::new(self.process, self.process.handle_duplicate(self.value, rights)?))
    }
}

impl Drop for OwnedHandle<'_> {
    fn drop(&mut self) {
        // A handle we own is valid; closing it cannot fail.
        let _ = self.process.handle_close(self.value);
    }
}

/// A port.
#[derive(Debug)]
pub struct Port<'p>(pub OwnedHandle<'p>);

impl<'p> Port<'p> {
    pub fn create(process: &'p Process) -> ZxResult<Self> {
        Ok(Self(OwnedHandle::new(process, process.port_create(0)?)))
    }

    /// Queues a user packet.
    pub fn queue(&self, key: u64, data: [u64; 4]) -> ZxResult {
        self.0.process.port_queue(self.0.value, &PortPacket::user(key, 0, data))
    }

    /// Waits for the next packet until `deadline`.
    pub fn wait(&self, deadline: Deadline) -> ZxResult<Packet> {
        Ok(self.0.process.port_wait(self.0.value, deadline)?.decode())
    }
}

/// A VMO.
#[derive(Debug)]
pub struct Vmo<'p>(pub OwnedHandle<'p>);

impl<'p> Vmo<'p> {
    pub fn create(process: &'p Process, size: u64) -> ZxResult<Self> {
        Ok(Self(OwnedHandle::new(process, process.vmo_create(size, 0)?)))
    }

    pub fn write(&self, offset: u64, data: &[u8]) -> ZxResult {
        self.0.process.vmo_write(self.0.value, data, offset)
    }

    pub fn read(&self, offset: u64, buffer: &mut [u8]) -> ZxResult {
        self.0.process.vmo_read(self.0.value, buffer, offset)
    }

    /// Belfry's `vmo_transfer`: `len` bytes of `source` at `source_offset` copied here at
    /// `offset`, page to page.
    pub fn copy_from(&self, offset: u64, source: &Vmo<'_>, source_offset: u64, len: u64) -> ZxResult {
        self.0.process.vmo_transfer(self.0.value, offset, source.0.value, source_offset, len)
    }
}

/// A guest and its guest-physical address space.
#[derive(Debug)]
pub struct Guest<'p> {
    pub handle: OwnedHandle<'p>,
    pub vmar: OwnedHandle<'p>,
}

impl<'p> Guest<'p> {
    /// `zx_guest_create` with the hypervisor resource handle.
    pub fn create(process: &'p Process, resource: u32) -> ZxResult<Self> {
        let (guest, vmar) = process.guest_create(resource, 0)?;
        Ok(Self { handle: OwnedHandle::new(process, guest), vmar: OwnedHandle::new(process, vmar) })
    }

    /// Maps `vmo` at guest-physical `address` with `VM_PERM_*` `permissions`.
    pub fn map(&self, address: u64, vmo: &Vmo<'_>, permissions: u32, len: u64) -> ZxResult<u64> {
        let options = permissions | crate::object::vmar::VM_SPECIFIC;
        self.handle.process.vmar_map(self.vmar.value, options, address, vmo.0.value, 0, len)
    }

    /// A synchronous MEM trap on `[address, address + size)`.
    pub fn set_mem_trap(&self, address: u64, size: u64, key: u64) -> ZxResult {
        self.handle.process.guest_set_trap(self.handle.value, GUEST_TRAP_MEM, address, size, 0, key)
    }

    /// An asynchronous BELL trap delivering to `port`.
    pub fn set_bell_trap(&self, address: u64, size: u64, port: &Port<'_>, key: u64) -> ZxResult {
        self.handle.process.guest_set_trap(self.handle.value, GUEST_TRAP_BELL, address, size, port.0.value, key)
    }

    /// Belfry extension: doorbell words inside a MEM trap, delivering to `port`
    /// ([`BELFRY_GUEST_TRAP_BELL_WORDS`]).
    pub fn set_bell_words(&self, address: u64, size: u64, port: &Port<'_>, key: u64) -> ZxResult {
        let kind = BELFRY_GUEST_TRAP_BELL_WORDS;
        self.handle.process.guest_set_trap(self.handle.value, kind, address, size, port.0.value, key)
    }
}

/// A VCPU, bound to the thread that created it.
#[derive(Debug)]
pub struct Vcpu<'p>(pub OwnedHandle<'p>);

impl<'p> Vcpu<'p> {
    /// `zx_vcpu_create` starting at guest-physical `entry`.
    pub fn create(guest: &Guest<'p>, entry: u64) -> ZxResult<Self> {
        let process = guest.handle.process;
        Ok(Self(OwnedHandle::new(process, process.vcpu_create(guest.handle.value, 0, entry)?)))
    }

    /// Runs the guest until it needs the VMM.
    #[inline(always)]
    pub fn enter(&self) -> ZxResult<Packet> {
        Ok(self.enter_packet()?.decode())
    }

    /// [`Vcpu::enter`]'s packet as `zx_vcpu_enter` writes it (`zx_port_packet_t`), undecoded.
    #[inline(always)]
    pub fn enter_packet(&self) -> ZxResult<PortPacket> {
        let mut packet = PortPacket::default();
        self.0.process.vcpu_enter_into(self.0.value, &mut packet)?;
        Ok(packet)
    }

    /// Belfry extension: sets general-purpose register `index` (0..=30) to `value` and runs
    /// the guest, in one call (an emulated load's completion and the next entry).
    #[inline(always)]
    pub fn enter_with_register(&self, index: u8, value: u64) -> ZxResult<Packet> {
        Ok(self.enter_with_register_packet(index, value)?.decode())
    }

    /// [`Vcpu::enter_with_register`]'s packet undecoded ([`Vcpu::enter_packet`]).
    #[inline(always)]
    pub fn enter_with_register_packet(&self, index: u8, value: u64) -> ZxResult<PortPacket> {
        let mut packet = PortPacket::default();
        self.0.process.vcpu_enter_with_register_into(self.0.value, index, value, &mut packet)?;
        Ok(packet)
    }

    pub fn kick(&self) -> ZxResult {
        self.0.process.vcpu_kick(self.0.value)
    }

    pub fn interrupt(&self, vector: u32) -> ZxResult {
        self.0.process.vcpu_interrupt(self.0.value, vector)
    }

    /// Belfry extension: the priority `vector` is delivered with (see
    /// `Process::vcpu_set_interrupt_priority`).
    pub fn set_interrupt_priority(&self, vector: u32, priority: u8) -> ZxResult {
        self.0.process.vcpu_set_interrupt_priority(self.0.value, vector, priority)
    }

    pub fn read_state(&self) -> ZxResult<VcpuState> {
        let mut bytes = [0u8; size_of::<VcpuState>()];
        self.0.process.vcpu_read_state(self.0.value, VCPU_STATE, &mut bytes)?;
        let mut state = VcpuState::default();
        // SAFETY: `VcpuState` is `repr(C)` plain data of exactly this size.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), (&raw mut state).cast::<u8>(), bytes.len()) };
        Ok(state)
    }

    /// Belfry extension: the guest PC and skip flag (`BELFRY_VCPU_CONTROL`).
    pub fn read_control(&self) -> ZxResult<VcpuControl> {
        let mut bytes = [0u8; 16];
        self.0.process.vcpu_read_state(self.0.value, BELFRY_VCPU_CONTROL, &mut bytes)?;
        let word = |at: usize| u64::from_le_bytes(core::array::from_fn(|i| bytes[at + i]));
        Ok(VcpuControl { pc: word(0), flags: word(8) })
    }

    /// Belfry extension: the VCPU's exits by kind (`BELFRY_VCPU_EXITS`), in
    /// [`crate::object::exit::EXIT_KIND_NAMES`]' order.
    pub fn read_exits(&self) -> ZxResult<crate::object::exit::ExitCounts> {
        use crate::object::exit::{ExitCounts, EXIT_KINDS};
        let mut bytes = [0u8; EXIT_KINDS * 8];
        self.0.process.vcpu_read_state(self.0.value, crate::object::vcpu::BELFRY_VCPU_EXITS, &mut bytes)?;
        let mut counts = ExitCounts::default();
        for (count, chunk) in counts.0.iter_mut().zip(bytes.chunks_exact(8)) {
            *count = u64::from_le_bytes(core::array::from_fn(|i| chunk[i]));
        }
        Ok(counts)
    }

    /// Belfry extension: sets general-purpose register `index` (0..=30) to `value`
    /// (`BELFRY_VCPU_REGISTER`).
    pub fn write_register(&self, index: u8, value: u64) -> ZxResult {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&u64::from(index).to_le_bytes());
        bytes[8..].copy_from_slice(&value.to_le_bytes());
        self.0.process.vcpu_write_state(self.0.value, crate::object::vcpu::BELFRY_VCPU_REGISTER, &bytes)
    }

    /// Belfry extension: sets the guest PC and skip flag.
    pub fn write_control(&self, control: &VcpuControl) -> ZxResult {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&control.pc.to_le_bytes());
        bytes[8..].copy_from_slice(&control.flags.to_le_bytes());
        self.0.process.vcpu_write_state(self.0.value, BELFRY_VCPU_CONTROL, &bytes)
    }

    pub fn write_state(&self, state: &VcpuState) -> ZxResult {
        // SAFETY: `VcpuState` is `repr(C)` plain data with explicit padding.
        let bytes =
            unsafe { core::slice::from_raw_parts((state as *const VcpuState).cast::<u8>(), size_of::<VcpuState>()) };
        self.0.process.vcpu_write_state(self.0.value, VCPU_STATE, bytes)
    }
}
