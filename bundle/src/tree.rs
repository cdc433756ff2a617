//! A checked, read-only flattened-device-tree reader for bundles.
//!
//! Every offset, length and name is checked against the blob before it is used; a blob that
//! breaks any rule of the devicetree specification this reader relies on is refused with a
//! [`TreeError`], never a panic. NOP tokens are skipped wherever they appear. The tree is read
//! once into a flat list of nodes (parent index, name, properties as sub-slices of the blob),
//! bounded in depth and node count so a hostile blob cannot make it allocate without limit.

use alloc::vec::Vec;

/// Why a blob is not a device tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// Shorter than its header, or the magic is wrong.
    NotADeviceTree,
    /// A header field is out of range.
    BadHeader,
    /// A token, name or property runs past its block or is malformed.
    BadStructure,
    /// Deeper than [`MAX_DEPTH`] or more than [`MAX_NODES`] nodes.
    TooLarge,
}

/// Deepest nesting accepted (a FIT is three levels deep).
pub const MAX_DEPTH: usize = 16;
/// Most nodes accepted.
pub const MAX_NODES: usize = 4096;

const MAGIC: u32 = 0xd00d_feed;
const HEADER: usize = 40;
const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;
const NOP: u32 = 4;
const END: u32 = 9;

/// One node: its parent (none for the root), its name and its properties.
#[derive(Clone, Debug)]
pub struct Node<'a> {
    pub parent: Option<usize>,
    pub name: &'a str,
    pub properties: Vec<(&'a str, &'a [u8])>,
}

/// A parsed tree; node 0 is the root.
#[derive(Clone, Debug)]
pub struct Tree<'a> {
    pub nodes: Vec<Node<'a>>,
    /// `totalsize` from the header: where external FIT data starts counting from.
    pub total_size: usize,
}

pub(crate) fn be32(blob: &[u8], at: usize) -> Option<u32> {
    let bytes = blob.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

fn c_str(blob: &[u8], at: usize) -> Result<(&str, usize), TreeError> {
    let bytes = blob.get(at..).ok_or(TreeError::BadStructure)?;
    let len = bytes.iter().position(|&b| b == 0).ok_or(TreeError::BadStructure)?;
    let text = core::str::from_utf8(&bytes[..len]).map_err(|_| TreeError::BadStructure)?;
    Ok((text, len))
}

impl<'a> Tree<'a> {
    /// Reads `blob`, which may be followed by more bytes (a FIT's external data).
    pub fn parse(blob: &'a [u8]) -> Result<Self, TreeError> {
        if blob.len() < HEADER || be32(blob, 0) != Some(MAGIC) {
            return Err(TreeError::NotADeviceTree);
        }
        let field = |index: usize| be32(blob, 4 * index).map(|v| v as usize).ok_or(TreeError::BadHeader);
        let (total_size, struct_offset, strings_offset) = (field(1)?, field(2)?, field(3)?);
        let (version, strings_size, struct_size) = (field(5)?, field(8)?, field(9)?);
        if total_size > blob.len() || total_size < HEADER || version < 17 || struct_offset % 4 != 0 {
            return Err(TreeError::BadHeader);
        }
        let structure = struct_offset
            .checked_add(struct_size)
            .filter(|&end| end <= total_size)
            .map(|end| &blob[struct_offset..end])
            .ok_or(TreeError::BadHeader)?;
        let strings = strings_offset
            .checked_add(strings_size)
            .filter(|&end| end <= total_size)
            .map(|end| &blob[strings_offset..end])
            .ok_or(TreeError::BadHeader)?;

        let mut nodes: Vec<Node<'a>> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut at = 0usize;
        loop {
            let token = be32(structure, at).ok_or(TreeError::BadStructure)?;
            at += 4;
            match token {
                BEGIN_NODE => {
                    let (name, len) = c_str(structure, at)?;
                    at = (at + len + 1).next_multiple_of(4);
                    if stack.len() >= MAX_DEPTH || nodes.len() >= MAX_NODES || (stack.is_empty() && !nodes.is_empty()) {
                        return Err(if stack.is_empty() { TreeError::BadStructure } else { TreeError::TooLarge });
                    }
                    nodes.push(Node { parent: stack.last().copied(), name, properties: Vec::new() });
                    stack.push(nodes.len() - 1);
                }
                END_NODE => {
                    stack.pop().ok_or(TreeError::BadStructure)?;
                }
                PROP => {
                    let len = be32(structure, at).ok_or(TreeError::BadStructure)? as usize;
                    let name_offset = be32(structure, at + 4).ok_or(TreeError::BadStructure)? as usize;
                    at += 8;
                    let value =
                        at.checked_add(len).and_then(|end| structure.get(at..end)).ok_or(TreeError::BadStructure)?;
                    at = (at + len).next_multiple_of(4);
                    let (name, _) = c_str(strings, name_offset)?;
                    let node = *stack.last().ok_or(TreeError::BadStructure)?;
                    if nodes[node].properties.len() >= MAX_NODES {
                        return Err(TreeError::TooLarge);
                    }
                    nodes[node].properties.push((name, value));
                }
                NOP => {}
                END => break,
                _ => return Err(TreeError::BadStructure),
            }
        }
        if !stack.is_empty() || nodes.is_empty() {
            return Err(TreeError::BadStructure);
        }
        Ok(Self { nodes, total_size })
    }

    /// The children of node `parent`, in order.
    pub fn children(&self, parent: usize) -> impl Iterator<Item = (usize, &Node<'a>)> + '_ {
        self.nodes.iter().enumerate().filter(move |(_, n)| n.parent == Some(parent))
    }

    /// The child of `parent` called `name`.
    pub fn child(&self, parent: usize, name: &str) -> Option<usize> {
        self.children(parent).find(|(_, n)| n.name == name).map(|(i, _)| i)
    }

    /// The value of property `name` of node `node`.
    pub fn property(&self, node: usize, name: &str) -> Option<&'a [u8]> {
        self.nodes.get(node)?.properties.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// A string property's text: NUL-terminated UTF-8 (the first string of a list).
pub fn string(value: &[u8]) -> Option<&str> {
    let len = value.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&value[..len]).ok()
}

/// A one- or two-cell number.
pub fn number(value: &[u8]) -> Option<u64> {
    match value.len() {
        4 => be32(value, 0).map(u64::from),
        8 => Some((u64::from(be32(value, 0)?) << 32) | u64::from(be32(value, 4)?)),
        _ => None,
    }
}
