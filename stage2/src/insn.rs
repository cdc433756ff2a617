//! Decoding the guest loads and stores the hardware reports without an instruction syndrome
//! (ISV = 0): load/store pair and the pre-/post-indexed (writeback) forms of single-register
//! loads and stores. Belfry reads such an instruction from guest memory and emulates it, which
//! is what seL4's `emulate_vcpu_fault` is for (DESIGN.md 2.3), where Zircon gives up with
//! IO_DATA_INTEGRITY.
//!
//! Only general-purpose register forms are decoded (SIMD&FP ones are refused): those are what
//! a guest uses on device memory. Decoding is total: any 32-bit value gives `Some` or `None`.

/// One decoded memory instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryInstruction {
    /// Bytes moved per register.
    pub size: u8,
    /// The transfer registers (31 = XZR); `count` of them are used.
    pub registers: [u8; 2],
    pub count: u8,
    pub load: bool,
    /// The load sign-extends.
    pub sign_extend: bool,
    /// The transfer registers are 64 bits wide.
    pub sixty_four_bit: bool,
    /// The base register (31 = SP).
    pub base: u8,
    /// Written back to the base register after the access, in bytes.
    pub writeback: Option<i64>,
    /// Added to the base register to form the first access's address (0 for post-indexed
    /// forms, the offset for pre-indexed and offset forms).
    pub address_offset: i64,
}

fn bits(value: u32, low: u32, count: u32) -> u32 {
    (value >> low) & ((1 << count) - 1)
}

fn signed(value: u32, width: u32) -> i64 {
    let shift = 64 - width;
    ((u64::from(value) << shift) as i64) >> shift
}

/// Decodes `instruction`, or `None` if it is not a general-register load/store pair or
/// writeback form.
pub fn decode(instruction: u32) -> Option<MemoryInstruction> {
    let rt = bits(instruction, 0, 5) as u8;
    let rn = bits(instruction, 5, 5) as u8;
    // Load/store pair: opc 101 V 0 type L imm7 Rt2 Rn Rt.
    if bits(instruction, 27, 3) == 0b101 && bits(instruction, 26, 1) == 0 {
        let opc = bits(instruction, 30, 2);
        let form = bits(instruction, 23, 2);
        let load = bits(instruction, 22, 1) == 1;
        let (size, sign_extend, sixty_four_bit) = match (opc, load) {
            (0b00, _) => (4, false, false),
            (0b01, true) => (4, true, true),
            (0b10, _) => (8, false, true),
            _ => return None,
        };
        let offset = signed(bits(instruction, 15, 7), 7) * i64::from(size);
        let writeback = match form {
            0b01 | 0b11 => Some(offset),
            _ => None,
        };
        let rt2 = bits(instruction, 10, 5) as u8;
        return Some(MemoryInstruction {
            size,
            registers: [rt, rt2],
            count: 2,
            load,
            sign_extend,
            sixty_four_bit,
            base: rn,
            writeback,
            address_offset: if form == 0b01 { 0 } else { offset },
        });
    }
    // Load/store register, immediate pre- or post-indexed: size 111 V 00 opc 0 imm9 (01|11) Rn Rt.
    if bits(instruction, 27, 3) == 0b111
        && bits(instruction, 26, 1) == 0
        && bits(instruction, 24, 2) == 0b00
        && bits(instruction, 21, 1) == 0
        && bits(instruction, 10, 1) == 1
    {
        let size_log2 = bits(instruction, 30, 2);
        let opc = bits(instruction, 22, 2);
        let (load, sign_extend, sixty_four_bit) = match (opc, size_log2) {
            (0b00, 3) => (false, false, true),
            (0b00, _) => (false, false, false),
            (0b01, 3) => (true, false, true),
            (0b01, _) => (true, false, false),
            (0b10, 0..=2) => (true, true, true),
            (0b11, 0..=1) => (true, true, false),
            _ => return None,
        };
        let offset = signed(bits(instruction, 12, 9), 9);
        let pre_indexed = bits(instruction, 11, 1) == 1;
        return Some(MemoryInstruction {
            size: 1 << size_log2,
            registers: [rt, rt],
            count: 1,
            load,
            sign_extend,
            sixty_four_bit,
            base: rn,
            writeback: Some(offset),
            address_offset: if pre_indexed { offset } else { 0 },
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Encodings from the Arm ARM (checked against an assembler).
    #[test]
    fn pairs() {
        // stp x1, x2, [x0]
        assert_eq!(
            decode(0xa900_0801),
            Some(MemoryInstruction {
                size: 8,
                registers: [1, 2],
                count: 2,
                load: false,
                sign_extend: false,
                sixty_four_bit: true,
                base: 0,
                writeback: None,
                address_offset: 0,
            })
        );
        // ldp w3, w4, [x0, #8]
        let ldp = decode(0x2941_1003).unwrap();
        assert_eq!(
            (ldp.size, ldp.registers, ldp.load, ldp.sixty_four_bit, ldp.writeback),
            (4, [3, 4], true, false, None)
        );
        // ldp x5, x6, [x0], #16 (post-index)
        let post = decode(0xa8c1_1805).unwrap();
        assert_eq!((post.registers, post.load, post.writeback, post.address_offset), ([5, 6], true, Some(16), 0));
        // stp x7, x8, [sp, #-16]! (pre-index)
        let pre = decode(0xa9bf_23e7).unwrap();
        assert_eq!(
            (pre.registers, pre.base, pre.load, pre.writeback, pre.address_offset),
            ([7, 8], 31, false, Some(-16), -16)
        );
        assert_eq!(ldp.address_offset, 8);
        // ldpsw x1, x2, [x0]
        let ldpsw = decode(0x6940_0801).unwrap();
        assert_eq!((ldpsw.size, ldpsw.sign_extend, ldpsw.sixty_four_bit), (4, true, true));
    }

    #[test]
    fn writeback_singles() {
        // ldr x1, [x0], #8
        let ldr = decode(0xf840_8401).unwrap();
        assert_eq!((ldr.size, ldr.registers[0], ldr.count, ldr.load, ldr.writeback), (8, 1, 1, true, Some(8)));
        // str w2, [x0, #4]!
        let str_pre = decode(0xb800_4c02).unwrap();
        assert_eq!((str_pre.size, str_pre.load, str_pre.sixty_four_bit, str_pre.writeback), (4, false, false, Some(4)));
        assert_eq!((ldr.address_offset, str_pre.address_offset), (0, 4));
        // ldrsb x3, [x0], #-1
        let ldrsb = decode(0x389f_f403).unwrap();
        assert_eq!((ldrsb.size, ldrsb.sign_extend, ldrsb.sixty_four_bit, ldrsb.writeback), (1, true, true, Some(-1)));
        // ldrsh w4, [x0, #2]!
        let ldrsh = decode(0x78c0_2c04).unwrap();
        assert_eq!((ldrsh.size, ldrsh.sign_extend, ldrsh.sixty_four_bit, ldrsh.writeback), (2, true, false, Some(2)));
    }

    #[test]
    fn everything_else_is_refused_without_panicking() {
        assert_eq!(decode(0xf940_0001), None, "ldr x1, [x0] has a syndrome; not a writeback form");
        assert_eq!(decode(0xd503_201f), None, "nop");
        assert_eq!(decode(0xad00_0801), None, "stp q1, q2, [x0]: SIMD");
        assert_eq!(decode(0xe940_0801), None, "opc 11 pair");
        for word in (0..=u32::MAX).step_by(65_537) {
            let _ = decode(word);
        }
    }
}
