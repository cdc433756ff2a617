//! Checking a flattened device tree before the `fdt` crate reads it.
//!
//! A device tree is untrusted input: it comes from the board's firmware, which edits it (a real
//! Pi's firmware, QEMU's `raspi4b`), or from a guest bundle. The `fdt` crate, on which Belfry
//! reads trees, trusts its input: it asserts on a property after a child node, on NOP tokens
//! inside a node it skips, on a name that is not UTF-8 or not terminated, on a short
//! `#address-cells`. So [`sanitize`] walks the whole structure first, refuses anything the
//! crate could trip on with a [`FdtError`], and removes the NOP tokens in place (the device
//! tree specification says to ignore them; libfdt leaves them where it deleted nodes, which is
//! how QEMU edits the Pi 4's tree). A tree that passes can be handed to `fdt` without panics;
//! the fuzz target `device_tree` checks that claim.

/// Why a blob is not a device tree Belfry will read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum FdtError {
    /// Bad magic, or shorter than its header.
    NotADeviceTree,
    /// A header field is out of range (sizes, offsets, alignment, version).
    BadHeader,
    /// The memory reservation block runs past the blob.
    BadReservations,
    /// A token, name or property runs past the structure block, or is malformed.
    BadStructure,
    /// A name (node or property) is not NUL-terminated UTF-8 where it must be.
    BadName,
    /// Nodes are nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// Deepest node nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Largest tree accepted (the biggest real trees are a few hundred KiB; QEMU pads to 1 MiB).
pub const MAX_SIZE: usize = 4 << 20;

const MAGIC: u32 = 0xd00d_feed;
const HEADER_SIZE: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

fn be32(blob: &[u8], at: usize) -> Option<u32> {
    let bytes = blob.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn align4(value: usize) -> Option<usize> {
    value.checked_add(3).map(|v| v & !3)
}

/// A NUL-terminated UTF-8 string starting at `at` and ending before `end`: its length.
fn c_string(blob: &[u8], at: usize, end: usize) -> Result<usize, FdtError> {
    let bytes = blob.get(at..end).ok_or(FdtError::BadStructure)?;
    let len = bytes.iter().position(|&b| b == 0).ok_or(FdtError::BadName)?;
    core::str::from_utf8(&bytes[..len]).map_err(|_| FdtError::BadName)?;
    Ok(len)
}

/// Checks `blob` (exactly the tree's `totalsize` bytes or more) and removes its NOP tokens in
/// place, updating the header's structure size. Returns the tree's total size.
pub fn sanitize(blob: &mut [u8]) -> Result<usize, FdtError> {
    if blob.len() < HEADER_SIZE || be32(blob, 0) != Some(MAGIC) {
        return Err(FdtError::NotADeviceTree);
    }
    let field = |index: usize| be32(blob, 4 * index).map(|v| v as usize).ok_or(FdtError::BadHeader);
    let total = field(1)?;
    let (off_struct, off_strings, off_reservations) = (field(2)?, field(3)?, field(4)?);
    let (version, last_compatible) = (field(5)?, field(6)?);
    let (size_strings, size_struct) = (field(8)?, field(9)?);
    if total < HEADER_SIZE || total > blob.len() || total > MAX_SIZE || version < 17 || last_compatible > 17 {
        return Err(FdtError::BadHeader);
    }
    let struct_end = off_struct.checked_add(size_struct).ok_or(FdtError::BadHeader)?;
    let strings_end = off_strings.checked_add(size_strings).ok_or(FdtError::BadHeader)?;
    if off_struct % 4 != 0
        || off_reservations % 8 != 0
        || off_struct < HEADER_SIZE
        || off_strings < HEADER_SIZE
        || off_reservations < HEADER_SIZE
        || struct_end > total
        || strings_end > total
    {
        return Err(FdtError::BadHeader);
    }
    // The reservation block: (address, size) pairs up to an all-zero one.
    let mut at = off_reservations;
    loop {
        let entry = blob.get(at..at.checked_add(16).ok_or(FdtError::BadReservations)?);
        let entry = entry.filter(|_| at + 16 <= total).ok_or(FdtError::BadReservations)?;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
        at += 16;
    }

    let mut read = off_struct;
    let mut write = off_struct;
    let mut depth = 0usize;
    let mut seen_root = false;
    // Per depth: the node already has a child (properties must come before children).
    let mut has_child = [false; MAX_DEPTH + 1];
    loop {
        let token = be32(blob, read).filter(|_| read + 4 <= struct_end).ok_or(FdtError::BadStructure)?;
        let length = match token {
            NOP => {
                read += 4;
                continue;
            }
            BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return Err(FdtError::BadStructure);
                }
                if depth > 0 {
                    has_child[depth] = true;
                }
                let name = c_string(blob, read + 4, struct_end)?;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(FdtError::TooDeep);
                }
                has_child[depth] = false;
                seen_root = true;
                align4(4 + name + 1).ok_or(FdtError::BadStructure)?
            }
            END_NODE => {
                depth = depth.checked_sub(1).ok_or(FdtError::BadStructure)?;
                4
            }
            PROP => {
                if depth == 0 || has_child[depth] {
                    return Err(FdtError::BadStructure);
                }
                let len = be32(blob, read + 4).ok_or(FdtError::BadStructure)? as usize;
                let name_offset = be32(blob, read + 8).ok_or(FdtError::BadStructure)? as usize;
                let value_end = (read + 12).checked_add(len).ok_or(FdtError::BadStructure)?;
                if value_end > struct_end || name_offset >= size_strings {
                    return Err(FdtError::BadStructure);
                }
                let name_at = off_strings + name_offset;
                let name_len = c_string(blob, name_at, strings_end)?;
                let name = &blob[name_at..name_at + name_len];
                if (name == b"#address-cells" || name == b"#size-cells") && len != 4 {
                    return Err(FdtError::BadStructure);
                }
                align4(12 + len).ok_or(FdtError::BadStructure)?
            }
            END => {
                if depth != 0 || !seen_root {
                    return Err(FdtError::BadStructure);
                }
                4
            }
            _ => return Err(FdtError::BadStructure),
        };
        let end = read.checked_add(length).filter(|&end| end <= struct_end).ok_or(FdtError::BadStructure)?;
        blob.copy_within(read..end, write);
        write += length;
        read = end;
        if token == END {
            break;
        }
    }
    let new_size = (write - off_struct) as u32;
    blob[36..40].copy_from_slice(&new_size.to_be_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT_GICV3: &[u8] = include_bytes!("../tests/fixtures/virt-gicv3.dtb");
    const RESERVED: &[u8] = include_bytes!("../tests/fixtures/reserved.dtb");

    /// Replaces the node that starts at structure offset `node` with NOP tokens, as libfdt's
    /// `fdt_nop_node` does.
    pub(crate) fn nop_node(blob: &mut [u8], path_part: &str) {
        let off_struct = be32(blob, 8).unwrap() as usize;
        let mut at = off_struct;
        let name = path_part.as_bytes();
        // Find BEGIN_NODE with this name.
        loop {
            if be32(blob, at) == Some(BEGIN_NODE) && blob[at + 4..].starts_with(name) && blob[at + 4 + name.len()] == 0
            {
                break;
            }
            at += 4;
        }
        let start = at;
        let mut depth = 0;
        let mut end = start;
        loop {
            let token = be32(blob, end).unwrap();
            let length = match token {
                BEGIN_NODE => {
                    depth += 1;
                    align4(4 + c_string(blob, end + 4, blob.len()).unwrap() + 1).unwrap()
                }
                END_NODE => {
                    depth -= 1;
                    4
                }
                PROP => align4(12 + be32(blob, end + 4).unwrap() as usize).unwrap(),
                _ => 4,
            };
            end += length;
            if depth == 0 {
                break;
            }
        }
        for word in (start..end).step_by(4) {
            blob[word..word + 4].copy_from_slice(&NOP.to_be_bytes());
        }
    }

    #[test]
    fn real_trees_pass_unchanged() {
        for fixture in [VIRT_GICV3, RESERVED] {
            let mut blob = fixture.to_vec();
            assert_eq!(sanitize(&mut blob), Ok(be32(fixture, 4).unwrap() as usize));
            assert_eq!(blob, fixture);
        }
    }

    /// F11: a tree edited the way QEMU edits the Pi 4's (nodes replaced by NOPs) makes the
    /// `fdt` crate assert; sanitized, it parses, and the removed node is gone.
    #[test]
    fn nop_tokens_are_removed() {
        let mut blob = VIRT_GICV3.to_vec();
        nop_node(&mut blob, "cpu@1");
        let edited = blob.clone();
        // Looking for a node skips /cpus, whose NOPs make `fdt` assert "bad node".
        assert!(
            std::panic::catch_unwind(|| fdt::Fdt::new(&edited).unwrap().find_node("/no-such-node").is_some()).is_err()
        );
        sanitize(&mut blob).unwrap();
        let tree = fdt::Fdt::new(&blob).unwrap();
        assert!(tree.find_node("/psci").is_some());
        let machine = crate::machine::Machine::from_device_tree(&blob, stage2::PhysAddr::new(0x4800_0000)).unwrap();
        assert_eq!(machine.cpus(), &[0, 2, 3]);
        assert_eq!(sanitize(&mut blob.clone()), Ok(blob.len()));
    }

    #[test]
    fn malformed_trees_are_refused() {
        let mut short = VIRT_GICV3[..39].to_vec();
        assert_eq!(sanitize(&mut short), Err(FdtError::NotADeviceTree));
        let mut truncated = VIRT_GICV3[..4096].to_vec();
        assert_eq!(sanitize(&mut truncated), Err(FdtError::BadHeader));
        // A property after a child node (fdt's "bad node" assertion).
        let mut blob = RESERVED.to_vec();
        let off_struct = be32(&blob, 8).unwrap() as usize;
        let size_struct = be32(&blob, 36).unwrap() as usize;
        // The last END_NODE before END closes the root: turn the root's last child's
        // END_NODE region into garbage tokens.
        blob[off_struct + size_struct - 4..off_struct + size_struct].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(sanitize(&mut blob), Err(FdtError::BadStructure));
    }

    /// Random byte mutations of real trees: whatever `sanitize` accepts, the machine
    /// description reads without a panic (the fuzz target `device_tree` runs the same longer).
    #[test]
    fn mutated_trees_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        // Miri runs every unit test too: a few rounds there, the fuzz target runs the rest.
        let rounds = if cfg!(miri) { 40 } else { 20_000 };
        for _ in 0..rounds {
            let mut blob = RESERVED.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % blob.len() as u64) as usize;
                blob[at] = match next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    2 => next() as u8,
                    _ => 4,
                };
            }
            if sanitize(&mut blob).is_ok() {
                accepted += 1;
                let _ = crate::machine::Machine::from_device_tree(&blob, stage2::PhysAddr::new(0));
            }
        }
        assert!(cfg!(miri) || accepted > 1000, "{accepted} of {rounds}");
    }
}
