//! The seL4 view of a faulting access (libsel4vm `guest_vcpu_fault.h`), over a MEM packet.
//!
//! A VMM serving a MEM trap asks the view for the fault address, the faulting instruction's
//! address, the data written (or supplies the data read), the data mask and access size, and
//! whether it was a read; `emulate` applies a partial write to a register value through the
//! mask; then the access is either advanced past (the default: the instruction was emulated)
//! or restarted (re-executed, e.g. after the VMM mapped memory there).
//!
//! Reads are completed exactly: the value is truncated to the access size, sign-extended when
//! the load asks (SSE) to 32 or 64 bits (SF), a 32-bit register's upper half is cleared, and
//! register 31 (XZR) drops the value.

use el2::object::packet::{GuestMemPacket, PortPacket, PKT_TYPE_GUEST_MEM};
use el2::object::ZxResult;

/// What happens to the faulting instruction when the VCPU resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Skip it: it was emulated (seL4 `advance_vcpu_fault`).
    Advance,
    /// Execute it again (seL4 `restart_vcpu_fault`).
    Restart,
}

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultView {
    /// The packet's words a VMM asks about, as EL2 wrote them (not a decoded copy: the view is
    /// built at every MEM exit and kept from one entry to the next): the address, the data,
    /// and the control word (size, sign extension, register, read and 64-bit flags in bytes
    /// 0..5, [`RESTART`] in bit 63, which a packet never sets).
    addr: u64,
    ip: u64,
    data: u64,
    control: u64,
}

/// [`FaultView::restart`]'s mark in the control word (a packet's reserved padding).
const RESTART: u64 = 1 << 63;

impl FaultView {
    /// The view of `packet`, for an instruction at guest address `ip`.
    pub fn new(packet: GuestMemPacket, ip: u64) -> Self {
        Self { addr: packet.addr, ip, data: packet.data, control: packet.control_word() & !RESTART }
    }

    /// The view of a MEM packet as `zx_vcpu_enter` wrote it (`None`: another type): read
    /// straight from its words, so a VMM's serving loop need not decode every exit.
    #[inline(always)]
    pub fn of(packet: &PortPacket, ip: u64) -> Option<Self> {
        (packet.packet_type == PKT_TYPE_GUEST_MEM).then_some(Self {
            addr: packet.payload[0],
            ip,
            data: packet.payload[2],
            control: packet.payload[1] & !RESTART,
        })
    }

    /// `get_vcpu_fault_address`.
    pub fn address(&self) -> u64 {
        self.addr
    }

    /// `get_vcpu_fault_ip`.
    pub fn ip(&self) -> u64 {
        self.ip
    }

    /// `get_vcpu_fault_data`: the value written, or the value the read will return.
    pub fn data(&self) -> u64 {
        self.data
    }

    /// `get_vcpu_fault_size`, in bytes.
    pub fn size(&self) -> u8 {
        self.control as u8
    }

    /// `is_vcpu_read_fault`.
    pub fn is_read(&self) -> bool {
        (self.control >> 24) as u8 != 0
    }

    /// The load's destination register (31: XZR).
    fn register(&self) -> u8 {
        (self.control >> 16) as u8
    }

    /// `get_vcpu_fault_data_mask`: the bytes of the aligned 64-bit word the access covers.
    pub fn data_mask(&self) -> u64 {
        let bits = 8 * u32::from(self.size().clamp(1, 8));
        let value_mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        value_mask.checked_shl(8 * (self.address() & 7) as u32).unwrap_or(0)
    }

    /// `set_vcpu_fault_data`: the value a read returns.
    pub fn set_data(&mut self, data: u64) {
        self.data = data;
    }

    /// `emulate_vcpu_fault`: for a write, `old` with the written bytes replaced (through the data
    /// mask); for a read, `old` unchanged.
    pub fn emulate(&self, old: u64) -> u64 {
        if self.is_read() {
            return old;
        }
        let shift = 8 * (self.address() & 7) as u32;
        (old & !self.data_mask()) | (self.data.checked_shl(shift).unwrap_or(0) & self.data_mask())
    }

    /// `advance_vcpu_fault`: skip the instruction (the default).
    pub fn advance(&mut self) {
        self.control &= !RESTART;
    }

    /// `restart_vcpu_fault`: execute the instruction again.
    pub fn restart(&mut self) {
        self.control |= RESTART;
    }

    /// How the VCPU resumes.
    pub fn resume(&self) -> Resume {
        if self.control & RESTART != 0 {
            Resume::Restart
        } else {
            Resume::Advance
        }
    }

    /// The register value a read leaves in `x[xt]` (`mem_read_result`, as EL2 computes it
    /// for a load it performs itself).
    pub fn read_result(&self) -> u64 {
        el2::object::packet::mem_read_result(self.control, self.data)
    }

    /// What completing the access takes. EL2 leaves an emulated access to be skipped, so a
    /// store that advances needs nothing, a load that advances its register (nothing for XZR),
    /// and only a restart (the instruction runs again) changes the control state.
    pub fn completion(&self) -> Completion {
        match self.resume() {
            Resume::Advance if !self.is_read() || self.register() >= 31 => Completion::Nothing,
            Resume::Advance => Completion::Register { index: self.register(), value: self.read_result() },
            Resume::Restart => Completion::Restart,
        }
    }

    /// Carries [`FaultView::completion`] out on `vcpu` and runs the guest again: one call (a
    /// load's register written with the entry, `enter_with_register`; three for a restart).
    #[inline(always)]
    pub fn finish_and_enter(&self, vcpu: &el2::api::Vcpu<'_>) -> ZxResult<PortPacket> {
        match self.completion() {
            Completion::Register { index, value } => vcpu.enter_with_register_packet(index, value),
            Completion::Nothing => vcpu.enter_packet(),
            Completion::Restart => {
                self.finish(vcpu)?;
                vcpu.enter_packet()
            }
        }
    }

    /// Carries [`FaultView::completion`] out on `vcpu`: at most one call (two for a restart).
    pub fn finish(&self, vcpu: &el2::api::Vcpu<'_>) -> el2::object::ZxResult {
        match self.completion() {
            Completion::Nothing => Ok(()),
            Completion::Register { index, value } => vcpu.write_register(index, value),
            Completion::Restart => {
                let mut control = vcpu.read_control()?;
                control.flags = 0;
                vcpu.write_control(&control)
            }
        }
    }
}

/// Runs the guest again, completing with the entry the access served last, if any
/// ([`FaultView::finish_and_enter`]); with none, a plain `enter`. A VMM's serving loop keeps
/// the view of the access it served and hands it here. The packet is returned as EL2 wrote
/// it: a MEM packet is looked at with [`FaultView::of`], any other with `decode`.
#[inline]
pub fn enter_after(served: Option<FaultView>, vcpu: &el2::api::Vcpu<'_>) -> ZxResult<PortPacket> {
    match served {
        Some(view) => view.finish_and_enter(vcpu),
        None => vcpu.enter_packet(),
    }
}

/// What finishing an emulated access asks of the VCPU ([`FaultView::completion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// The access is skipped as EL2 left it.
    Nothing,
    /// A load: general-purpose register `index` gets `value`.
    Register { index: u8, value: u64 },
    /// The instruction runs again: the skip is cleared.
    Restart,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(addr: u64, size: u8, sign_extend: bool, xt: u8, sixty_four: bool) -> FaultView {
        let packet = GuestMemPacket {
            addr,
            access_size: size,
            sign_extend,
            xt,
            read: true,
            padding1: [u8::from(sixty_four), 0, 0, 0],
            ..Default::default()
        };
        FaultView::new(packet, 0x1000)
    }

    #[test]
    fn reads_are_truncated_and_sign_extended_exactly() {
        let mut view = read(0xffe001, 1, false, 1, false);
        view.set_data(0xffff_ff81);
        assert_eq!(view.read_result(), 0x81, "LDRB Wt");
        let mut view = read(0xffe001, 1, true, 2, false);
        view.set_data(0x81);
        assert_eq!(view.read_result(), 0xffff_ff81, "LDRSB Wt: 32-bit result, upper half clear");
        let mut view = read(0xffe001, 1, true, 3, true);
        view.set_data(0x81);
        assert_eq!(view.read_result(), 0xffff_ffff_ffff_ff81, "LDRSB Xt");
        let mut view = read(0xffe002, 2, true, 5, true);
        view.set_data(0x8382);
        assert_eq!(view.read_result(), 0xffff_ffff_ffff_8382, "LDRSH Xt");
        let mut view = read(0xffe004, 4, true, 7, true);
        view.set_data(0x8786_8584);
        assert_eq!(view.read_result(), 0xffff_ffff_8786_8584, "LDRSW Xt");
        let mut view = read(0xffe004, 4, false, 6, false);
        view.set_data(0x1_8786_8584);
        assert_eq!(view.read_result(), 0x8786_8584, "LDR Wt");
        let mut view = read(0xffe008, 8, false, 8, true);
        view.set_data(0x8f8e_8d8c_8b8a_8988);
        assert_eq!(view.read_result(), 0x8f8e_8d8c_8b8a_8988, "LDR Xt");
    }

    #[test]
    fn completion_writes_the_register_or_drops_xzr() {
        let mut view = read(0xffe000, 8, false, 4, true);
        view.set_data(42);
        assert_eq!(view.completion(), Completion::Register { index: 4, value: 42 });
        let mut xzr = read(0xffe000, 8, false, 31, true);
        xzr.set_data(7);
        assert_eq!(xzr.completion(), Completion::Nothing, "XZR: the value is dropped");
        let mut restart = read(0xffe000, 8, false, 4, true);
        restart.set_data(99);
        restart.restart();
        assert_eq!(restart.completion(), Completion::Restart, "restart re-executes; nothing written");
        let store = FaultView::new(GuestMemPacket { addr: 0xffe000, access_size: 4, data: 5, ..Default::default() }, 0);
        assert_eq!(store.completion(), Completion::Nothing, "a store is already done");
    }

    #[test]
    fn a_view_of_the_packet_words_equals_the_decoded_one() {
        let mem = GuestMemPacket {
            addr: 0xffe006,
            access_size: 2,
            sign_extend: true,
            xt: 9,
            read: true,
            padding1: [1, 0, 0, 0x80],
            data: 0x8182,
            reserved: 0,
        };
        let packet = PortPacket::mem(0x55, mem);
        let view = FaultView::of(&packet, 0x1000).expect("a MEM packet");
        assert_eq!(view, FaultView::new(mem, 0x1000));
        assert_eq!((view.address(), view.ip(), view.size(), view.is_read()), (0xffe006, 0x1000, 2, true));
        assert_eq!(view.resume(), Resume::Advance, "the packet's padding does not restart the access");
        assert_eq!(view.completion(), Completion::Register { index: 9, value: 0xffff_ffff_ffff_8182 });
        assert_eq!(FaultView::of(&PortPacket::bell(0x55, 0xffe000), 0), None, "a BELL packet has no view");
    }

    #[test]
    fn masks_and_partial_writes() {
        let packet = GuestMemPacket { addr: 0x1002, access_size: 2, data: 0xbeef, ..Default::default() };
        let view = FaultView::new(packet, 0x400);
        assert_eq!(view.data_mask(), 0xffff_0000);
        assert_eq!(view.emulate(0x1111_2222_3333_4444), 0x1111_2222_beef_4444);
        assert_eq!(
            (view.address(), view.ip(), view.size(), view.is_read(), view.data()),
            (0x1002, 0x400, 2, false, 0xbeef)
        );
        let whole = FaultView::new(GuestMemPacket { addr: 0x1000, access_size: 8, data: 5, ..Default::default() }, 0);
        assert_eq!(whole.data_mask(), u64::MAX);
        assert_eq!(whole.emulate(9), 5);
        assert_eq!(read(0x1000, 8, false, 0, true).emulate(9), 9, "reads leave the value");
    }
}
