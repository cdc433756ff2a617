//! Port packets and VCPU state, laid out exactly as Zircon's aarch64 ABI
//! (`zircon/syscalls/port.h`, `zircon/syscalls/hypervisor.h`), with compile-time size and
//! offset checks so a VMM written against `zircon/syscalls.h` sees the same bytes.

use core::mem::{offset_of, size_of};

/// `ZX_PKT_TYPE_USER`.
pub const PKT_TYPE_USER: u32 = 0;
/// `ZX_PKT_TYPE_GUEST_BELL`.
pub const PKT_TYPE_GUEST_BELL: u32 = 3;
/// `ZX_PKT_TYPE_GUEST_MEM`.
pub const PKT_TYPE_GUEST_MEM: u32 = 4;
/// `ZX_PKT_TYPE_GUEST_IO`.
pub const PKT_TYPE_GUEST_IO: u32 = 5;
/// `ZX_PKT_TYPE_GUEST_VCPU`.
pub const PKT_TYPE_GUEST_VCPU: u32 = 6;

/// `ZX_PKT_GUEST_VCPU_INTERRUPT`.
pub const PKT_GUEST_VCPU_INTERRUPT: u32 = 0;
/// `ZX_PKT_GUEST_VCPU_STARTUP`.
pub const PKT_GUEST_VCPU_STARTUP: u32 = 1;

/// `zx_port_packet_t`: 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PortPacket {
    pub key: u64,
    pub packet_type: u32,
    pub status: i32,
    /// The type-specific payload (`zx_packet_user_t`, `zx_packet_guest_mem_t`, ...).
    pub payload: [u64; 4],
}

/// `zx_packet_guest_mem_t` on aarch64.
///
/// Belfry extension: `padding1[0]` is 1 when the transfer register is 64 bits wide (the
/// syndrome's SF bit), so a VMM can sign-extend a read exactly; Zircon VMMs ignore padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GuestMemPacket {
    pub addr: u64,
    pub access_size: u8,
    pub sign_extend: bool,
    pub xt: u8,
    pub read: bool,
    pub padding1: [u8; 4],
    pub data: u64,
    pub reserved: u64,
}

/// `zx_packet_guest_bell_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GuestBellPacket {
    pub addr: u64,
    pub reserved: [u64; 3],
}

/// `zx_packet_guest_vcpu_t`: `type` then, at offset 8, INTERRUPT `{mask, vector}` or
/// STARTUP `{target, entry, context}` (DESIGN.md 2).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GuestVcpuPacket {
    pub vcpu_packet_type: u32,
    pub padding1: u32,
    pub body: [u64; 3],
}

/// `zx_vcpu_state_t` on aarch64: 264 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VcpuState {
    pub x: [u64; 31],
    /// SP_EL1.
    pub sp: u64,
    /// Only NZCV (bits 31..28) is user-controllable.
    pub cpsr: u32,
    pub padding1: [u8; 4],
}

impl VcpuState {
    /// General register `index` as an instruction reads it: 31 is XZR (zero), as are indices
    /// beyond the register file.
    pub fn register(&self, index: u8) -> u64 {
        self.x.get(usize::from(index)).copied().unwrap_or(0)
    }
}

/// The NZCV bits of `cpsr`.
pub const CPSR_USER_MASK: u32 = 0xf000_0000;

const _: () = {
    assert!(size_of::<PortPacket>() == 48);
    assert!(offset_of!(PortPacket, key) == 0);
    assert!(offset_of!(PortPacket, packet_type) == 8);
    assert!(offset_of!(PortPacket, status) == 12);
    assert!(offset_of!(PortPacket, payload) == 16);
    assert!(size_of::<GuestMemPacket>() == 32);
    assert!(offset_of!(GuestMemPacket, addr) == 0);
    assert!(offset_of!(GuestMemPacket, access_size) == 8);
    assert!(offset_of!(GuestMemPacket, sign_extend) == 9);
    assert!(offset_of!(GuestMemPacket, xt) == 10);
    assert!(offset_of!(GuestMemPacket, read) == 11);
    assert!(offset_of!(GuestMemPacket, data) == 16);
    assert!(size_of::<GuestBellPacket>() == 32);
    assert!(size_of::<GuestVcpuPacket>() == 32);
    assert!(offset_of!(GuestVcpuPacket, body) == 8);
    assert!(size_of::<VcpuState>() == 264);
    assert!(offset_of!(VcpuState, sp) == 248);
    assert!(offset_of!(VcpuState, cpsr) == 256);
};

/// The decoded view of a packet, for Rust callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packet {
    User { key: u64, status: i32, data: [u64; 4] },
    Bell { key: u64, addr: u64 },
    Mem { key: u64, mem: GuestMemPacket },
    VcpuInterrupt { key: u64, mask: u64, vector: u8 },
    VcpuStartup { key: u64, target: u64, entry: u64, context: u64 },
    Other(PortPacket),
}

/// A MEM packet's bytes 8..16 as one little-endian word ([`GuestMemPacket::control_word`]):
/// `access_size`, `sign_extend`, `xt`, `read`, and `padding1[0]` = 1 for a 64-bit register.
pub const fn mem_control_word(access_size: u8, sign_extend: bool, xt: u8, read: bool, sixty_four_bit: bool) -> u64 {
    access_size as u64
        | (sign_extend as u64) << 8
        | (xt as u64) << 16
        | (read as u64) << 24
        | (sixty_four_bit as u64) << 32
}

/// The register value a load described by the MEM control word `control` leaves from the
/// `data` read: its low `access_size` bytes (1 to 8), shifted to the top and back
/// (arithmetically when the load sign-extends), then a 32-bit register's upper half cleared.
#[inline]
pub fn mem_read_result(control: u64, data: u64) -> u64 {
    let size = (control as u8).clamp(1, 8);
    let shift = 64 - 8 * u32::from(size);
    let top = data << shift;
    let value = if (control >> 8) as u8 != 0 { ((top as i64) >> shift) as u64 } else { top >> shift };
    if (control >> 32) as u8 == 1 {
        value
    } else {
        value & 0xffff_ffff
    }
}

impl GuestMemPacket {
    /// Belfry extension: whether the transfer register is 64 bits wide (`padding1[0]`).
    pub fn sixty_four_bit(&self) -> bool {
        self.padding1[0] == 1
    }

    /// Bytes 8..16 as one little-endian word: `access_size`, `sign_extend`, `xt`, `read`,
    /// then `padding1`.
    pub fn control_word(&self) -> u64 {
        let padding = u64::from(u32::from_le_bytes(self.padding1));
        mem_control_word(self.access_size, self.sign_extend, self.xt, self.read, false) | (padding << 32)
    }

    /// The packet as the payload's four little-endian words (the C layout: `addr`; then
    /// `access_size`, `sign_extend`, `xt`, `read` and `padding1` in bytes 8..16; `data`;
    /// `reserved`), packed word by word.
    fn words(&self) -> [u64; 4] {
        [self.addr, self.control_word(), self.data, self.reserved]
    }

    fn from_words(w: [u64; 4]) -> Self {
        let control = w[1];
        Self {
            addr: w[0],
            access_size: control as u8,
            sign_extend: (control >> 8) as u8 != 0,
            xt: (control >> 16) as u8,
            read: (control >> 24) as u8 != 0,
            padding1: ((control >> 32) as u32).to_le_bytes(),
            data: w[2],
            reserved: w[3],
        }
    }
}

impl PortPacket {
    /// A user packet (`zx_port_queue`).
    pub fn user(key: u64, status: i32, data: [u64; 4]) -> Self {
        Self { key, packet_type: PKT_TYPE_USER, status, payload: data }
    }

    /// A BELL packet for `addr`.
    pub fn bell(key: u64, addr: u64) -> Self {
        Self { key, packet_type: PKT_TYPE_GUEST_BELL, status: 0, payload: [addr, 0, 0, 0] }
    }

    /// A MEM packet with the fields of `control` ([`mem_control_word`]).
    #[inline(always)]
    pub fn mem_words(key: u64, addr: u64, control: u64, data: u64) -> Self {
        Self { key, packet_type: PKT_TYPE_GUEST_MEM, status: 0, payload: [addr, control, data, 0] }
    }

    /// A MEM packet.
    pub fn mem(key: u64, mem: GuestMemPacket) -> Self {
        Self { key, packet_type: PKT_TYPE_GUEST_MEM, status: 0, payload: mem.words() }
    }

    /// A VCPU INTERRUPT packet: the guest sent vector `vector` to the VCPUs in `mask`.
    pub fn vcpu_interrupt(key: u64, mask: u64, vector: u8) -> Self {
        let body = [PKT_GUEST_VCPU_INTERRUPT as u64, mask, vector as u64, 0];
        Self { key, packet_type: PKT_TYPE_GUEST_VCPU, status: 0, payload: body }
    }

    /// A VCPU STARTUP packet: the guest asked to start VCPU `target` at `entry`.
    pub fn vcpu_startup(key: u64, target: u64, entry: u64, context: u64) -> Self {
        let body = [PKT_GUEST_VCPU_STARTUP as u64, target, entry, context];
        Self { key, packet_type: PKT_TYPE_GUEST_VCPU, status: 0, payload: body }
    }

    /// The typed view (inline: a VMM's loop matches on it at once).
    #[inline(always)]
    pub fn decode(&self) -> Packet {
        let key = self.key;
        match self.packet_type {
            PKT_TYPE_USER => Packet::User { key, status: self.status, data: self.payload },
            PKT_TYPE_GUEST_BELL => Packet::Bell { key, addr: self.payload[0] },
            PKT_TYPE_GUEST_MEM => Packet::Mem { key, mem: GuestMemPacket::from_words(self.payload) },
            PKT_TYPE_GUEST_VCPU => match (self.payload[0] & 0xffff_ffff) as u32 {
                PKT_GUEST_VCPU_INTERRUPT => {
                    Packet::VcpuInterrupt { key, mask: self.payload[1], vector: self.payload[2] as u8 }
                }
                PKT_GUEST_VCPU_STARTUP => Packet::VcpuStartup {
                    key,
                    target: self.payload[1],
                    entry: self.payload[2],
                    context: self.payload[3],
                },
                _ => Packet::Other(*self),
            },
            _ => Packet::Other(*self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_packets_round_trip_through_the_payload_bytes() {
        let mem = GuestMemPacket {
            addr: 0xfff000,
            access_size: 4,
            sign_extend: true,
            xt: 7,
            read: true,
            data: 0x1234,
            ..Default::default()
        };
        let packet = PortPacket::mem(0x1234, mem);
        assert_eq!(packet.packet_type, 4);
        // Byte 8 of the payload is access_size, as in the C layout.
        assert_eq!(packet.payload[1] & 0xff, 4);
        assert_eq!((packet.payload[1] >> 16) & 0xff, 7);
        assert_eq!(packet.decode(), Packet::Mem { key: 0x1234, mem });
        // Every byte in its C place: the payload as bytes equals the struct's own bytes.
        let mem = GuestMemPacket {
            addr: 0x0102_0304_0506_0708,
            access_size: 8,
            sign_extend: false,
            xt: 30,
            read: false,
            padding1: [1, 0xaa, 0xbb, 0xcc],
            data: 0x1112_1314_1516_1718,
            reserved: 0x2122_2324_2526_2728,
        };
        let payload: Vec<u8> = PortPacket::mem(1, mem).payload.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut expected = Vec::new();
        expected.extend(mem.addr.to_le_bytes());
        expected.extend([8, 0, 30, 0, 1, 0xaa, 0xbb, 0xcc]);
        expected.extend(mem.data.to_le_bytes());
        expected.extend(mem.reserved.to_le_bytes());
        assert_eq!(payload, expected);
        assert_eq!(PortPacket::mem(1, mem).decode(), Packet::Mem { key: 1, mem });
    }

    #[test]
    fn vcpu_and_bell_packets() {
        assert_eq!(PortPacket::bell(5, 0xffe000).decode(), Packet::Bell { key: 5, addr: 0xffe000 });
        assert_eq!(
            PortPacket::vcpu_interrupt(0, 0b110, 33).decode(),
            Packet::VcpuInterrupt { key: 0, mask: 0b110, vector: 33 }
        );
        assert_eq!(
            PortPacket::vcpu_startup(0, 1, 0x4000_0000, 9).decode(),
            Packet::VcpuStartup { key: 0, target: 1, entry: 0x4000_0000, context: 9 }
        );
        let user = PortPacket::user(1, -2, [1, 2, 3, 4]);
        assert_eq!(user.decode(), Packet::User { key: 1, status: -2, data: [1, 2, 3, 4] });
    }
}
